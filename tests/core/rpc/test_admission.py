"""Admission control: a server process serving ``Server.MaxCallsInFlight`` calls refuses the
next ones with HTTP 503 and ``Retry-After`` (nothing done), answers ``ping`` anyway, and the
Python client waits and repeats the call until it is admitted."""

from __future__ import annotations

import threading
import time
from typing import Any

import pydantic
import pytest
import requests

from core.config.schema import Config
from core.exceptions import ServerBusyError
from core.metrics import metrics
from core.rpc.client import Credentials, RPCClient
from tests.core.rpc.conftest import Creds, ProbeService
from tests.support.servers import ThreadedServer


def limited(config: Config, limit: int) -> Config:
    data = config.model_dump(by_alias=True)
    data["Server"]["MaxCallsInFlight"] = limit
    return Config.model_validate(data)


def post(server: ThreadedServer, creds: Creds, method: str) -> requests.Response:
    return requests.post(f"{server.url}/Test/Probe", data={"method": method},
                         verify=str(creds.ca_dir), timeout=30)


def refused(method: str) -> float:
    return metrics().rpc_requests.labels("Test/Probe", method, "503")._value.get()


class Held:
    """One ``hold`` call in progress on ``server`` until the block ends."""

    def __init__(self, server: ThreadedServer, creds: Creds) -> None:
        self.server, self.creds = server, creds
        self.replies: list[requests.Response] = []
        self.thread = threading.Thread(
            target=lambda: self.replies.append(post(server, creds, "hold")))

    def __enter__(self) -> Held:
        ProbeService.ENTERED.clear()
        ProbeService.RELEASE.clear()
        self.thread.start()
        assert ProbeService.ENTERED.wait(30), "hold never started"
        return self

    def __exit__(self, *exc: Any) -> None:
        ProbeService.RELEASE.set()
        self.thread.join(60)
        assert self.replies and self.replies[0].json()["Value"] is True


def test_a_call_over_the_limit_is_refused_with_503_and_nothing_done(config: Config,
                                                                    creds: Creds) -> None:
    with ThreadedServer(limited(config, 1), [ProbeService]) as server:
        with Held(server, creds):
            busy = post(server, creds, "typed")  # would fail its argument check if run
            assert busy.status_code == 503, busy.text
            assert busy.headers["Retry-After"] == "1"
            body = busy.json()
            assert body["OK"] is False and body["ExceptionClass"] == "ServerBusyError"
            assert "1 calls in progress, at most 1" in body["Message"]
            assert body["Errno"] == ServerBusyError.errno
            # a balancer's health check still gets its answer
            assert post(server, creds, "ping").json()["OK"] is True
        # the held call has finished: calls are admitted again
        assert post(server, creds, "open").json() == {"OK": True, "Value": "open"}


def test_the_client_waits_and_repeats_a_refused_call(config: Config, creds: Creds) -> None:
    with ThreadedServer(limited(config, 1), [ProbeService]) as server:
        rpc = RPCClient("Test/Probe", urls=[server.url], ca_dir=creds.ca_dir,
                        credentials=Credentials(cert=creds.alice[0], key=creds.alice[1]))
        answers: list[Any] = []
        before = refused("users")
        with Held(server, creds):
            caller = threading.Thread(target=lambda: answers.append(rpc.call("users")))
            caller.start()
            deadline = time.monotonic() + 30
            while refused("users") == before and time.monotonic() < deadline:
                time.sleep(0.05)
            assert refused("users") > before, "the call was never refused"
            assert not answers  # still waiting while the server is busy
        caller.join(60)
        assert answers == ["alice"]
        rpc.close()


def test_no_limit_and_bad_limits(config: Config, creds: Creds) -> None:
    assert Config().server.max_calls_in_flight == 2000
    with ThreadedServer(limited(config, 0), [ProbeService]) as server, Held(server, creds):
        assert post(server, creds, "open").json()["OK"] is True
    with pytest.raises(pydantic.ValidationError, match="MaxCallsInFlight"):
        limited(config, -1)
