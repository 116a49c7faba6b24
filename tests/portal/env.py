"""A pilotwms server hosting every installed service (the portal among them) for browser
tests: SQLite, the real login server with the test OpenID Connect provider, a disk SE served
by the same server, and local pilots (the pilot zipapp under the system Python).

Users: alice (IdP alice; groups demo_user and demo_admin), bob (IdP bob; demo_user).
demo_user also holds ProductionUser (users create and change their own transformations),
demo_admin ProductionManagement (any transformation) and FileCatalogManagement; the
agents (transformation, accounting) run in the test's process, one cycle at a time
(:meth:`PortalEnv.run_agent`).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from core.agent import Agent
from core.cli.instance import Instance
from core.config.loader import load_config
from core.config.schema import Config
from core.db import init_schema, make_engine
from core.rpc.runner import available_services
from core.security.tokens import TokenIssuer
from tests.support.oidc_idp import CONFIDENTIAL_CLIENT, USERS, OIDCProvider
from tests.support.servers import ThreadedServer

SYSTEM_PYTHON = "/usr/bin/python3"
SITE = "LCG.Portal.test"
SE = "PORTAL-DISK"
PORTAL_CLIENT = "pilotwms-portal"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def portal_config(instance: Instance, base: Path, idp: OIDCProvider, port: int) -> Config:
    data = load_config(instance.config, environ={}).model_dump(by_alias=True, exclude_none=True)
    key = base / "jwk.json"
    shutil.copy(data["Auth"]["Signing"]["KeyFile"], key)
    url = f"https://127.0.0.1:{port}"
    data["Database"] = f"sqlite:///{base / 'pilotwms.db'}"
    data["Server"]["Port"] = port
    data["Server"]["ExecutorThreads"] = 8
    data["Auth"]["Signing"].update({"Issuer": url, "KeyFile": str(key)})
    data["Auth"]["Server"] = {
        "PollInterval": 0,
        "Clients": {PORTAL_CLIENT: {"RedirectURIs": [f"{url}/portal/login/callback"]}},
        "IdPs": {"demo": {"Issuer": idp.issuer, "ClientID": CONFIDENTIAL_CLIENT[0],
                          "ClientSecret": CONFIDENTIAL_CLIENT[1],
                          "Scopes": ["openid", "profile", "groups"], "GroupsClaim": "groups"}},
    }
    reg = data["Registry"]
    for name in ("alice", "bob"):
        user = reg["Users"].setdefault(name, {"DNs": []})
        user["TokenSubjects"] = [{"Issuer": idp.issuer, "Subject": USERS[name]["sub"]}]
    reg["Groups"]["demo_user"]["Users"] = ["alice", "bob", "admin"]
    reg["Groups"]["demo_admin"]["Users"] = ["alice", "admin"]
    reg["Groups"]["demo_user"]["Properties"] = sorted(
        {*reg["Groups"]["demo_user"]["Properties"], "ProductionUser"})
    reg["Groups"]["demo_admin"]["Properties"] = sorted(
        {*reg["Groups"]["demo_admin"]["Properties"], "FileCatalogManagement",
         "ProductionManagement"})
    data["Resources"] = {
        "Sites": {SITE: {"SEs": [SE]}},
        "StorageElements": {SE: {"Protocols": [{"Plugin": "HTTPS", "Host": "127.0.0.1",
                                                 "Port": port, "Path": str(base / "se")}]}},
    }
    data["Systems"] = {
        "WorkloadManagement": {"Services": {"SandboxStore": {"Options": {
            "BasePath": str(base / "sandboxes")}}}},
        "DataManagement": {},
    }
    data["Operations"]["Pilot"] = {"User": "pilot", "Group": "demo_pilot"}
    return Config.model_validate(data)


@dataclass
class PortalEnv:
    server: ThreadedServer
    config: Config
    instance: Instance
    idp: OIDCProvider
    base: Path
    pyz: Path
    pilots: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def portal(self) -> str:
        return f"{self.server.url}/portal/"

    @property
    def ca(self) -> str:
        return str(self.instance.ca_dir)

    def token(self, user: str, group: str) -> str:
        assert self.config.auth.signing is not None
        return TokenIssuer(self.config.auth.signing).issue(user, group=group, vo="demo")

    def call(self, user: str, group: str, service: str, method: str, *args: Any) -> Any:
        """A plain RPC call with a token of ``user`` (test set-up and checks)."""
        reply = requests.post(f"{self.url}/{service}",
                              data={"method": method, "args": json.dumps(list(args))},
                              headers={"Authorization": f"Bearer {self.token(user, group)}"},
                              verify=self.ca, timeout=60)
        body = reply.json()
        assert body["OK"], body
        return body["Value"]

    def pilot(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        """A local pilot that runs jobs until none is left (then exits)."""
        workdir = self.base / "pilots" / name
        workdir.mkdir(parents=True, exist_ok=True)
        token = workdir / "token"
        token.write_text(self.token("pilot", "demo_pilot"))
        out = (workdir / "stderr.txt").open("wb")
        cmd = [SYSTEM_PYTHON, "-S", "-I", str(self.pyz), "--url", self.url,
               "--token-file", str(token), "--ca-dir", self.ca, "--site", SITE,
               "--ce", "ce.portal.test", "--queue", "short", "--workdir", str(workdir),
               "--poll", "0.2", "--max-sleep", "0.5", "--heartbeat", "1",
               "--watchdog-check", "0.2", "--retries", "1", *extra]
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
        out.close()
        self.pilots.append(proc)
        return proc

    def run_agent(self, cls: type[Agent]) -> Agent:
        """One cycle of an agent in this process, on the server's database (as ``--once``)."""
        agent = cls(self.config, instance=f"portal-{cls.__name__}", period=0.1)
        agent.run(once=True)
        return agent

    def stop_pilots(self) -> None:
        for proc in self.pilots:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)
        self.pilots.clear()


def start_env(instance: Instance, base: Path, idp: OIDCProvider, pyz: Path) -> PortalEnv:
    port = free_port()
    cfg = portal_config(instance, base, idp, port)
    assert cfg.database
    engine = make_engine(cfg.database)
    from importlib.metadata import entry_points

    for ep in entry_points(group="pilotwms.schemas"):
        init_schema(engine, ep.load())
    engine.dispose()
    server = ThreadedServer(cfg, available_services().values(), port=port).start()
    return PortalEnv(server, cfg, instance, idp, base, pyz)


def wait_for(check: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.2)
