"""The world of the authorisation matrix: one server hosting every service, users in several
groups and VOs, and alice's objects (two jobs, a sandbox, a private and a public file on the
SE, registered in the catalog) that the others try to reach.

Registry additions to the instance: bob (``demo_user``, alice's group), carol (``demo_other``,
same VO), dave (``vo2_user`` of VO ``vo2``).
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from core.config.loader import load_config
from core.config.schema import Config
from core.security.tokens import TokenIssuer
from tests.support.credentials import Creds
from tests.support.fullserver import full_config, serve_everything
from tests.support.servers import ThreadedServer

SE = "DIRAC-USER"
#: tables the server's background tasks write on their own: the job counts JobMonitoring
#: folds (triggers on ``jobs`` feed them), and the monitoring cycles' leases and watermarks
#: (the accounting shipper takes its lease at its first cycle: on a slow machine, while the
#: refused calls run)
DERIVED_TABLES = ("job_counters", "job_count_deltas", "mon_watermarks")
HOME = "/demo/user/a/alice"
JDL = '[ Executable = "/bin/echo"; Arguments = "hi"; InputSandbox = {"%s"}; ]'


def matrix_config(instance: Any, base: Path) -> Config:
    cfg = full_config(load_config(instance.config, environ={}), base)
    data = cfg.model_dump(by_alias=True, exclude_none=True)
    reg = data["Registry"]
    reg["VOs"]["vo2"] = {"DefaultGroup": "vo2_user"}
    for name in ("bob", "carol", "dave"):
        reg["Users"][name] = {"DNs": [f"/O=pilotwms/OU=Users/CN={name}"]}
    reg["Groups"]["demo_user"]["Users"].append("bob")
    reg["Groups"]["demo_other"] = {"VO": "demo", "Users": ["carol"],
                                   "Properties": ["NormalUser"]}
    reg["Groups"]["vo2_user"] = {"VO": "vo2", "Users": ["dave"], "Properties": ["NormalUser"]}
    return Config.model_validate(data)


@dataclass
class Who:
    """One caller of the matrix: a name, its credential, and what the registry grants it."""

    name: str
    cert: Any = None
    token: str | None = None
    #: None: no valid identity at all (anonymous, expired, revoked)
    properties: frozenset[str] | None = None
    group: str | None = None
    vo: str | None = None
    session: requests.Session = field(default_factory=requests.Session)

    def post(self, world: World, path: str, method: str, *args: Any,
             raw: bool = False) -> requests.Response:
        form = {"method": method, "args": json.dumps(list(args))}
        if raw:
            form["rawContent"] = "true"
        return self.session.post(f"{world.server.url}/{path}", data=form, timeout=120,
                                 verify=world.verify, **self.kwargs())

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.cert is not None:
            out["cert"] = tuple(map(str, self.cert)) if isinstance(self.cert, tuple) \
                else str(self.cert)
        if self.token is not None:
            out["headers"] = {"Authorization": f"Bearer {self.token}"}
        return out


@dataclass
class World:
    cfg: Config
    server: ThreadedServer
    base: Path
    verify: str
    callers: dict[str, Who]
    job: int = 0
    other_job: int = 0
    job_sandbox: str = ""
    other_sandbox: str = ""
    private_lfn: str = f"{HOME}/private.dat"
    public_lfn: str = f"{HOME}/public.dat"

    def state(self) -> set[str]:
        """Every row of every table, and every file of the state directory (with its size):
        compare two of them to see what changed. Tables that background tasks rewrite on
        their own (:data:`DERIVED_TABLES`) are left out."""
        path = self.cfg.database_url("WorkloadManagement").removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            lines = {line for line in conn.iterdump()
                     if not any(f'INTO "{name}"' in line for name in DERIVED_TABLES)}
        for item in sorted(self.base.rglob("*")):
            if item.is_file() and not item.name.startswith("pilotwms.db"):
                lines.add(f"file {item}:{item.stat().st_size}")
        return lines


def _upload_sandbox(world: World, alice: Who, content: bytes) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:bz2") as tar:
        info = tarfile.TarInfo("input.txt")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    data = buf.getvalue()
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    reply = alice.session.put(
        f"{world.server.url}/WorkloadManagement/SandboxStore/upload/{md5}.tar.bz2",
        data=data, timeout=60, verify=world.verify, **alice.kwargs())
    body = reply.json()
    assert body["OK"], body
    return str(body["Value"])


def _put_file(world: World, who: Who, lfn: str, data: bytes, mode: int) -> None:
    import zlib

    checksum = f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    reply = who.session.put(f"{world.server.url}/DataManagement/StorageElement/file/{SE}{lfn}",
                            data=data, timeout=60, verify=world.verify,
                            headers={"X-Checksum-Adler32": checksum,
                                     **who.kwargs().get("headers", {})},
                            **{k: v for k, v in who.kwargs().items() if k != "headers"})
    assert reply.json()["OK"], reply.text
    added = who.post(world, "DataManagement/FileCatalog", "addFile", {lfn: {
        "PFN": lfn, "SE": SE, "Size": len(data), "GUID": hashlib.md5(
            lfn.encode(), usedforsecurity=False).hexdigest(), "Checksum": checksum}}).json()
    assert added["OK"] and lfn in added["Value"]["Successful"], added
    changed = who.post(world, "DataManagement/FileCatalog", "changePathMode",
                       {lfn: mode}).json()
    assert changed["OK"] and lfn in changed["Value"]["Successful"], changed


@pytest.fixture(scope="module")
def world(instance: Any, creds: Creds, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[World]:
    base = tmp_path_factory.mktemp("matrix")
    cfg = matrix_config(instance, base)
    issuer: TokenIssuer = creds.issuer_for(cfg)
    normal = frozenset({"NormalUser"})
    callers = {
        "anonymous": Who("anonymous"),
        "alice": Who("alice", cert=creds.alice, properties=normal, group="demo_user",
                     vo="demo"),
        "bob (same group)": Who("bob", cert=creds.user("bob"), properties=normal,
                                group="demo_user", vo="demo"),
        "carol (other group)": Who("carol", cert=creds.user("carol"), properties=normal,
                                   group="demo_other", vo="demo"),
        "dave (other VO)": Who("dave", cert=creds.user("dave"), properties=normal,
                               group="vo2_user", vo="vo2"),
        "pilot": Who("pilot", token=issuer.issue("pilot", group="demo_pilot", vo="demo"),
                     properties=frozenset({"GenericPilot", "LimitedDelegation"}),
                     group="demo_pilot", vo="demo"),
        "expired token": Who("expired", token=creds.expired_token(issuer, "alice",
                                                                  "demo_user")),
        "revoked token": Who("revoked", token=issuer.issue("alice", group="demo_user",
                                                           vo="demo")),
        "limited proxy (alice)": Who("limited", cert=creds.proxy(creds.alice, limited=True),
                                     properties=normal, group="demo_user", vo="demo"),
        "admin": Who("admin", cert=creds.proxy(creds.admin, group="demo_admin"),
                     properties=frozenset({"NormalUser", "JobAdministrator", "Operator"}),
                     group="demo_admin", vo="demo"),
        "host": Who("host", cert=creds.host, properties=frozenset({"TrustedHost"})),
    }
    with serve_everything(cfg) as server:
        world = World(cfg, server, base, str(creds.ca_dir), callers)
        alice = callers["alice"]
        world.job_sandbox = _upload_sandbox(world, alice, b"secret of the job")
        world.other_sandbox = _upload_sandbox(world, alice, b"secret of the other job")
        for attr, sandbox in (("job", world.job_sandbox), ("other_job", world.other_sandbox)):
            reply = alice.post(world, "WorkloadManagement/JobManager", "submitJob",
                               JDL % sandbox).json()
            assert reply["OK"], reply
            setattr(world, attr, int(reply["Value"]))
        # the other job's own credential, as the Matcher would give it to its pilot
        callers["job token (other job)"] = Who(
            "job-token", token=creds.job_token(issuer, world.other_job, "alice", "demo_user"),
            properties=normal, group="demo_user", vo="demo")
        _put_file(world, alice, world.private_lfn, b"private data", 0o600)
        _put_file(world, alice, world.public_lfn, b"public data", 0o644)
        revoked = requests.post(f"{server.url}/auth/revoke", timeout=30, verify=world.verify,
                                data={"client_id": "pilotwms-cli",
                                      "token": callers["revoked token"].token})
        assert revoked.status_code == 200, revoked.text
        yield world
        for who in callers.values():
            who.session.close()
