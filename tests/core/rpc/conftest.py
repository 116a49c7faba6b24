"""A test service with one method per kind of rule (credentials: tests/support/credentials)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from core.config.schema import Config
from core.exceptions import JobNotFoundError
from core.rpc.service import Call, Reply, Service, rpc_method
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer

__all__ = ["Creds", "ProbeService"]


class ProbeService(Service):
    system = "Test"
    name = "Probe"

    @rpc_method("open", rights="all")
    def open_(self, call: Call) -> str:
        return "open"

    @rpc_method("users", rights="authenticated")
    def users(self, call: Call) -> str:
        return call.identity.username or ""

    @rpc_method("admins", rights="JobAdministrator")
    def admins(self, call: Call) -> str:
        return "admin"

    @rpc_method("pilots", rights="GenericPilot")
    def pilots(self, call: Call) -> str:
        return "pilot"

    @rpc_method("userGroup", rights="group:demo_user")
    def user_group(self, call: Call) -> str:
        return "group"

    @rpc_method("demoVO", rights="vo:demo")
    def demo_vo(self, call: Call) -> str:
        return "vo"

    @rpc_method("hosts", rights="TrustedHost")
    def hosts(self, call: Call) -> dict[str, Any]:
        return call.identity.whoami()

    @rpc_method("typed", rights="all")
    def typed(self, call: Call, job_id: int, names: list[str], note: str | None = None) -> Any:
        return Reply({"job_id": job_id, "names": names, "note": note}, {"JobID": job_id})

    @rpc_method("missing", rights="all")
    def missing(self, call: Call, job_id: int) -> None:
        raise JobNotFoundError(f"Job {job_id} not found", InvalidJobIDs=[job_id])

    @rpc_method("bug", rights="all")
    def bug(self, call: Call) -> None:
        raise RuntimeError("this is a bug")

    @rpc_method("conflict", rights="all")
    def conflict(self, call: Call, code: int) -> None:
        import pymysql
        import sqlalchemy as sa

        raise sa.exc.OperationalError("COMMIT", {}, pymysql.err.OperationalError(code, "lost"))

    @rpc_method("slow", rights="all")
    def slow(self, call: Call, seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    #: ``hold`` blocks its pool thread until the test sets RELEASE (ENTERED says it began)
    ENTERED = threading.Event()
    RELEASE = threading.Event()

    @rpc_method("hold", rights="all")
    def hold(self, call: Call) -> bool:
        ProbeService.ENTERED.set()
        return ProbeService.RELEASE.wait(60)

    @rpc_method("download", rights="all", raw=True)
    def download(self, call: Call, size: int) -> bytes:
        return b"\x01" * size


@pytest.fixture
def probe_server(config: Config) -> Iterator[ThreadedServer]:
    with ThreadedServer(config, [ProbeService]) as server:
        yield server
