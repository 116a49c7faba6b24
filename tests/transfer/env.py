"""A transfer server for tests: TransferManager, DataPush, a disk SE and the file catalog in a
thread on a free port, and the TransferAgent started on demand in a thread.

Example::

    env = TransferEnv(config, tmp_path, creds, smtp_port=smtp.port).start()
    env.client.put_association(...)
    env.start_agent()
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import yaml

from core.config.schema import Config
from core.db import init_schema, make_engine
from core.rpc.client import Credentials, RPCClient
from dms.db.schema import DMS_SCHEMA
from dms.service.file_catalog import FileCatalogService
from dms.service.storage_element import StorageElementService
from tests.support.credentials import Creds
from tests.support.mariadb import free_port
from tests.support.servers import ThreadedServer
from transfer.agents.transfer_agent import TransferAgent
from transfer.client import DataPushClient, TransferClient
from transfer.db.tables import TRANSFER_SCHEMA
from transfer.service.data_push import DataPushService
from transfer.service.transfer_manager import TransferManagerService

SE = "XFER-DISK"


def transfer_config(config: Config, base: Path, port: int, *, smtp_port: int | None = None,
                    manager: dict[str, Any] | None = None, push: dict[str, Any] | None = None
                    ) -> Config:
    data = config.model_dump(by_alias=True, exclude_none=True)
    data["Database"] = f"sqlite:///{base / 'pilotwms.db'}"
    data["Registry"]["Users"]["alice"]["Email"] = "alice@example.org"
    data["Server"]["Port"] = port
    data["Resources"]["StorageElements"] = {SE: {"Protocols": [{
        "Plugin": "HTTPS", "Host": "127.0.0.1", "Port": port, "Path": str(base / "se")}]}}
    options: dict[str, Any] = {"SpoolDir": str(base / "spool"),
                               "SecretKeyFile": str(base / "keys" / "transfer.keys"),
                               "SpoolReserveMiB": 0, "ConnectTimeout": 5,
                               "DefaultRetryFrequency": 1}
    if smtp_port:
        options["SMTP"] = {"Host": "127.0.0.1", "Port": smtp_port,
                           "From": "pilotwms@example.org"}
    options.update(manager or {})
    push_options: dict[str, Any] = {"MoverDeadAfterSeconds": 4, "RetryDelaySeconds": 0.5,
                                    "MaxAttempts": 2, "Staging": f"{SE}:/demo/staging"}
    push_options.update(push or {})
    data.setdefault("Systems", {})["Transfer"] = {"Services": {
        "TransferManager": {"Options": options}, "DataPush": {"Options": push_options}}}
    cfg = Config.model_validate(data)
    engine = make_engine(cfg.database_url("Transfer"))
    for schema in (TRANSFER_SCHEMA, DMS_SCHEMA):
        init_schema(engine, schema)
    engine.dispose()
    return cfg


class Recorder:
    """Keeps the body of every HTTP reply a client received (to grep them for secrets)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def __call__(self, response: requests.Response, *args: Any, **kw: Any) -> None:
        if not response.headers.get("Content-Type", "").startswith("application/octet"):
            self.bodies.append(response.content)

    def attach(self, rpc: RPCClient) -> RPCClient:
        rpc.session.hooks["response"].append(self)
        return rpc


class TransferEnv:
    def __init__(self, config: Config, base: Path, creds: Creds, **kw: Any) -> None:
        self.port = free_port()
        self.base = base
        self.creds = creds
        self.config = transfer_config(config, base, self.port, **kw)
        self.server = ThreadedServer(self.config, [
            TransferManagerService, DataPushService, StorageElementService,
            FileCatalogService], port=self.port)
        self.replies = Recorder()
        self.agent: TransferAgent | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> TransferEnv:
        self.server.start()
        return self

    def rpc(self, service: str, who: str = "alice") -> RPCClient:
        cert = self.creds.alice if who == "alice" else self.creds.host
        return self.replies.attach(RPCClient(
            service, urls=[self.server.url], credentials=Credentials(cert=cert[0], key=cert[1]),
            ca_dir=self.creds.ca_dir))

    @property
    def client(self) -> TransferClient:
        return TransferClient(self.rpc("Transfer/TransferManager"))

    @property
    def push(self) -> DataPushClient:
        return DataPushClient(self.rpc("Transfer/DataPush"))

    def start_agent(self, period: float = 0.2) -> TransferAgent:
        self.agent = TransferAgent(self.config, instance="test-agent", period=period)
        self._thread = threading.Thread(target=self.agent.run, daemon=True)
        self._thread.start()
        return self.agent

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.stop()
        if self._thread is not None:
            self._thread.join(30)
        self.server.stop()

    def db_bytes(self) -> bytes:
        return b"".join(p.read_bytes() for p in self.base.glob("pilotwms.db*"))


def max_overlap(intervals: list[tuple[int, int]]) -> int:
    """The highest number of intervals open at the same time (measured concurrency)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = current = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


def until(what: Callable[[], Any], timeout: float = 60, poll: float = 0.2,
          message: str = "condition") -> Any:
    """Poll ``what()`` until it returns something true (returned) or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"{message} not reached within {timeout} s")


def wait_final(client: TransferClient, tid: int, timeout: float = 60) -> dict[str, Any]:
    return until(lambda: (lambda r: r if r["Status"] in ("Done", "Failed") else None)(
        client.get_transfer(tid)), timeout, message=f"transfer {tid} final")


def capture_all_logs() -> logging.Handler:
    """A handler on the root logger keeping every record's text (DEBUG and up)."""
    class Keep(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.DEBUG)
            self.lines: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(self.format(record))

    handler = Keep()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


# -- data movers and commands as real subprocesses ------------------------------------------

PY = sys.executable


class Movers:
    """``pilotwms mover`` processes for a :class:`TransferEnv`; stopped by :meth:`stop`."""

    def __init__(self, env: TransferEnv, sources: dict[str, dict[str, Any]]) -> None:
        self.env = env
        self.sources = sources
        self.procs: dict[str, subprocess.Popen[str]] = {}

    def start(self, name: str, *, capacity: int = 2, listen: bool = False) -> Path:
        host = self.env.base / "host-cert"
        inst = self.env.creds.instance.directory
        workdir = self.env.base / f"mover-{name}"
        cfg = {"Name": name, "URLs": [self.env.server.url],
               "CADir": str(self.env.creds.ca_dir),
               "HostCert": str(inst / "host" / "hostcert.pem"),
               "HostKey": str(inst / "host" / "hostkey.pem"), "Capacity": capacity,
               "WorkDir": str(workdir), "HeartbeatSeconds": 1, "PollSeconds": 0.3,
               "ConnectTimeout": 10, "SourceHosts": self.sources}
        if listen:
            cfg["Listen"] = {"Host": "127.0.0.1", "Port": 0}
        host.mkdir(exist_ok=True)
        path = self.env.base / f"mover-{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        log = open(self.env.base / f"mover-{name}.log", "w")  # noqa: SIM115 - the process's
        proc = subprocess.Popen([PY, "-m", "core.cli.admin", "mover", "--config", str(path)],
                                stdout=subprocess.PIPE, stderr=log, text=True,
                                start_new_session=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "ready" in line, (self.env.base / f"mover-{name}.log").read_text()
        self.procs[name] = proc
        return workdir

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()

    def logs(self) -> str:
        return "".join(p.read_text() for p in self.env.base.glob("mover-*.log"))


def command_env(env: TransferEnv) -> dict[str, str]:
    """The environment a user's command needs to talk to ``env`` as alice."""
    inst = env.creds.instance.directory
    client = env.base / "client.yaml"
    client.write_text(
        f"URLs: [{env.server.url}]\nCADir: {env.creds.ca_dir}\n"
        f"Cert: {inst}/users/alice/usercert.pem\nKey: {inst}/users/alice/userkey.pem\n"
        "Group: demo_user\nVO: demo\n")
    return {**os.environ, "PILOTWMS_CLIENT_CONFIG": str(client), "X509_USER_PROXY": "",
            "BEARER_TOKEN": "", "BEARER_TOKEN_FILE": str(env.base / "no-token"),
            "PILOTWMS_SESSION_DIR": str(env.base / "sessions")}


def command(env: TransferEnv, name: str, *args: str, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
    module = {"dassoc": "transfer.cli.dassoc", "dtransfer": "transfer.cli.dtransfer",
              "dpush": "transfer.cli.dpush"}[name]
    proc = subprocess.run([PY, "-m", module, *args], capture_output=True, text=True,
                          env=command_env(env), timeout=120, cwd=env.base)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc
