"""The Python RPC client: failover, re-raised exception classes, extra keys, raw content."""

from __future__ import annotations

import pytest

from core.exceptions import (
    InvalidArgumentError,
    JobNotFoundError,
    NotAuthenticatedError,
    ServiceUnavailableError,
)
from core.rpc.client import Credentials, RPCClient
from tests.core.rpc.conftest import Creds
from tests.support.mariadb import free_port
from tests.support.servers import ThreadedServer


def client(server: ThreadedServer, creds: Creds, **kw: object) -> RPCClient:
    urls = kw.pop("urls", [server.url])
    return RPCClient("Test/Probe", urls=urls, ca_dir=creds.ca_dir,  # type: ignore[arg-type]
                     credentials=Credentials(cert=creds.alice[0], key=creds.alice[1]), **kw)


def test_call_and_extra_keys(probe_server: ThreadedServer, creds: Creds) -> None:
    with client(probe_server, creds) as rpc:
        assert rpc.call("users") == "alice"
        value, extra = rpc.call_with_extra("typed", 3, ("x",))
        assert value == {"job_id": 3, "names": ["x"], "note": None}
        assert extra == {"JobID": 3}


def test_exception_class_and_extras_cross_the_wire(probe_server: ThreadedServer,
                                                   creds: Creds) -> None:
    with client(probe_server, creds) as rpc:
        with pytest.raises(JobNotFoundError) as info:
            rpc.call("missing", 42)
        assert info.value.message == "Job 42 not found"
        assert info.value.extra == {"InvalidJobIDs": [42]}
        with pytest.raises(InvalidArgumentError, match="must be int"):
            rpc.call("typed", "x", [])
        envelope = rpc.envelope("missing", 1)
        assert envelope["OK"] is False and envelope["Errno"] == 2


def test_token_credentials(probe_server: ThreadedServer, creds: Creds) -> None:
    rpc = RPCClient("Test/Probe", urls=[probe_server.url], ca_dir=creds.ca_dir,
                    credentials=Credentials(token=creds.token("pilot", "demo_pilot")))
    assert rpc.call("pilots") == "pilot"
    anonymous = RPCClient("Test/Probe", urls=[probe_server.url], ca_dir=creds.ca_dir)
    with pytest.raises(NotAuthenticatedError):
        anonymous.call("users")


def test_failover_to_the_next_url(probe_server: ThreadedServer, creds: Creds) -> None:
    dead = f"https://127.0.0.1:{free_port()}"
    wrong_path = f"{probe_server.url}/Test/Elsewhere"
    for _ in range(5):  # the start index is random: every order must work
        with client(probe_server, creds, urls=[dead, wrong_path, probe_server.url]) as rpc:
            assert rpc.call("users") == "alice"


def test_all_servers_down(creds: Creds) -> None:
    rpc = RPCClient("Test/Probe", urls=[f"https://127.0.0.1:{free_port()}"],
                    ca_dir=creds.ca_dir, timeout=(2, 5))
    with pytest.raises(ServiceUnavailableError, match="no server answered"):
        rpc.call("ping")


def test_read_timeout_does_not_fail_over(probe_server: ThreadedServer, creds: Creds) -> None:
    with client(probe_server, creds, timeout=(5, 0.5),
                urls=[probe_server.url, probe_server.url]) as rpc:
        with pytest.raises(ServiceUnavailableError, match="may have been executed"):
            rpc.call("slow", 2.0)


def test_raw_download(probe_server: ThreadedServer, creds: Creds) -> None:
    with client(probe_server, creds) as rpc:
        assert rpc.call_raw("download", 5) == b"\x01" * 5
        assert rpc.call("download", 2) == b"\x01\x01"


def test_bad_construction() -> None:
    with pytest.raises(ValueError, match="at least one"):
        RPCClient("A/B", urls=[])
    with pytest.raises(ValueError, match="System/Service"):
        RPCClient("nosystem", urls=["https://x"])
