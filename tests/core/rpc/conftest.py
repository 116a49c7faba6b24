"""A test service with one method per kind of rule, and credentials of every kind."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.cli.instance import Instance
from core.config.schema import Config
from core.exceptions import JobNotFoundError
from core.rpc.service import Call, Reply, Service, rpc_method
from core.security.ca import CertificateAuthority, write_pem
from core.security.proxy import create_proxy
from core.security.tokens import TokenIssuer
from tests.support.servers import ThreadedServer


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

    @rpc_method("slow", rights="all")
    def slow(self, call: Call, seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    @rpc_method("download", rights="all", raw=True)
    def download(self, call: Call, size: int) -> bytes:
        return b"\x01" * size


class Creds:
    """Paths of every kind of credential, made from the session's instance."""

    def __init__(self, instance: Instance, base: Path, config: Config) -> None:
        self.instance = instance
        self.ca_dir = instance.ca_dir
        self.alice = instance.user_cert("alice")
        self.admin = instance.user_cert("admin")
        ca = CertificateAuthority.load(instance.directory / "ca")
        cert, key = ca.issue("stranger", kind="user")
        self.stranger = (write_pem(base / "stranger.pem", cert), write_pem(base / "sk.pem", key))
        cert, key = ca.issue("localhost", kind="host")
        self.host = (write_pem(base / "host.pem", cert), write_pem(base / "hk.pem", key))
        other = CertificateAuthority.create(base / "other-ca", name="other CA")
        cert, key = other.issue("alice", kind="user")
        self.foreign = (write_pem(base / "foreign.pem", cert), write_pem(base / "fk.pem", key))
        self.base = base
        assert config.auth.signing is not None
        self.issuer = TokenIssuer(config.auth.signing)

    def proxy(self, who: tuple[Path, Path], group: str | None = None,
              limited: bool = False, name: str = "proxy") -> Path:
        pem = create_proxy(who[0].read_bytes(), who[1].read_bytes(), group=group,
                           limited=limited)
        return write_pem(self.base / f"{name}-{uuid.uuid4().hex}.pem", pem, 0o600)

    def token(self, user: str, group: str, **kw: Any) -> str:
        return self.issuer.issue(user, group=group, vo="demo", **kw)


@pytest.fixture(scope="module")
def creds(instance: Instance, tmp_path_factory: pytest.TempPathFactory) -> Creds:
    from core.config.loader import load_config

    return Creds(instance, tmp_path_factory.mktemp("creds"), load_config(instance.config))


@pytest.fixture
def probe_server(config: Config) -> Iterator[ThreadedServer]:
    with ThreadedServer(config, [ProbeService]) as server:
        yield server
