"""Fault tests: a real ``pilotwms serve`` (killed with SIGKILL and restarted), real MariaDB
(crashed and restarted), real file systems (a tmpfs filled up), real pilots cut off.

:class:`Served` runs ``pilotwms serve`` as a subprocess on a fixed free port (so a restart
comes back at the same URL); :class:`Load` drives it with a few client threads doing what
users and pilots do, recording every answer, so that a test can check afterwards that nothing
a client was told had been accepted got lost.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
import yaml

from core.cli.dbcmd import init_all
from core.cli.instance import Instance
from core.config.loader import load_config
from core.config.schema import Config
from tests.support.credentials import Creds
from tests.support.mariadb import free_port
from wms.db.sandbox_tables import sandboxes
from wms.db.tables import job_heartbeats, job_logging, jobs
from wms.db.tq_tables import tq_jobs

PY = sys.executable
JM = "WorkloadManagement/JobManager"
MATCHER = "WorkloadManagement/Matcher"
STATE = "WorkloadManagement/JobStateUpdate"
MONITOR = "WorkloadManagement/JobMonitoring"
SITE = "LCG.Faults.test"


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def server_config(instance: Instance, database: str, base: Path, **options: Any) -> Path:
    """A config file for ``pilotwms serve``: the session instance's PKI and registry, a
    database and a sandbox store of the test's own; ``options`` set ``Server`` keys."""
    data = load_config(instance.config, environ={}).model_dump(
        by_alias=True, exclude_none=True, mode="json")
    data["Database"] = database
    data.setdefault("Server", {}).update(options)
    systems = data.setdefault("Systems", {})
    systems["WorkloadManagement"] = {"Services": {"SandboxStore": {"Options": {
        "BasePath": str(base / "sandboxes"), "MaxSizeMiB": 4}}}}
    path = base / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    init_all(Config.model_validate(data))
    return path


class Served:
    """``pilotwms serve`` in its own session on a fixed port; ``kill()`` is SIGKILL."""

    def __init__(self, config: Path, *, processes: int = 1, port: int | None = None,
                 base: Path) -> None:
        self.config = config
        self.processes = processes
        self.port = port or free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.base = base
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log(self) -> Path:
        return self.base / f"serve-{self.starts}.log"

    def start(self, *, wait: bool = True) -> Served:
        self.starts += 1
        out = self.log.open("wb")
        self.proc = subprocess.Popen(
            [PY, "-m", "core.cli.admin", "serve", "--config", str(self.config),
             "--port", str(self.port), "--processes", str(self.processes)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        if wait:
            self.wait_serving()
        return self

    def wait_serving(self, timeout: float = 180.0) -> None:
        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited:\n{self.log.read_text()}")
            try:
                requests.post(f"{self.url}/Framework/Registry", data={"method": "ping"},
                              verify=False, timeout=5)  # noqa: S501 - liveness only
                return True
            except requests.RequestException:
                return False
        wait_for(up, timeout, f"pilotwms serve at {self.url}")

    def workers(self) -> list[int]:
        """PIDs of the worker processes (children of the supervisor)."""
        assert self.proc is not None
        found = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    stat = Path(f"/proc/{name}/stat").read_text()
                except OSError:
                    continue
                if int(stat[stat.rfind(")") + 2:].split()[1]) == self.proc.pid:
                    found.append(int(name))
        return found

    def kill(self) -> None:
        """SIGKILL the supervisor and every worker at once (a crash, a power cut)."""
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def archive(payload: bytes) -> tuple[bytes, str]:
    """A tar.bz2 sandbox holding ``payload``, and its md5."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:bz2") as tar:
        info = tarfile.TarInfo("data.bin")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    data = buf.getvalue()
    return data, hashlib.md5(data).hexdigest()  # noqa: S324 - DIRAC's sandbox name


@dataclass
class Load:
    """Client threads against a server: submitters (single and bulk), pilots (match, report,
    heartbeats), sandbox uploaders. Every answer is recorded."""

    url: Callable[[], str]
    creds: Creds
    stop: threading.Event = field(default_factory=threading.Event)
    accepted: list[int] = field(default_factory=list)
    matched: list[int] = field(default_factory=list)
    beats: Counter[int] = field(default_factory=Counter)
    uploads: dict[str, str] = field(default_factory=dict)  # SB URL -> md5
    statuses: Counter[int] = field(default_factory=Counter)  # HTTP statuses seen
    refused: Counter[str] = field(default_factory=Counter)  # error replies by class
    errors: Counter[str] = field(default_factory=Counter)  # connection errors by kind
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def session(self) -> requests.Session:
        """One kept-alive session per thread (dropped after a connection error)."""
        if getattr(self.local, "session", None) is None:
            self.local.session = requests.Session()
        return self.local.session  # type: ignore[no-any-return]

    def __post_init__(self) -> None:
        self.local = threading.local()
        self.pilot_token = self.creds.token("pilot", "demo_pilot")
        self.alice = (str(self.creds.alice[0]), str(self.creds.alice[1]))

    def call(self, service: str, method: str, *args: Any, token: str | None = None,
             user: bool = False) -> Any:
        """The reply's Value; None when the call failed (connection error, error reply)."""
        kwargs: dict[str, Any] = {}
        if user:
            kwargs["cert"] = self.alice
        else:
            kwargs["headers"] = {"Authorization": f"Bearer {token or self.pilot_token}"}
        try:
            reply = self.session().post(
                f"{self.url()}/{service}", data={"method": method, "args": json.dumps(list(args))},
                verify=str(self.creds.ca_dir), timeout=60, **kwargs)
        except requests.RequestException as exc:
            with self.lock:
                self.errors[type(exc).__name__] += 1
            self.local.session = None
            time.sleep(0.1)  # the server is down: do not spin
            return None
        with self.lock:
            self.statuses[reply.status_code] += 1
        try:
            body = reply.json()
        except ValueError:
            return None
        if not body.get("OK"):
            with self.lock:
                self.refused[str(body.get("ExceptionClass") or body.get("Message"))[:60]] += 1
            return None
        return body if method in ("submitJob",) else body["Value"]

    def _loop(self, step: Callable[[], None]) -> None:
        while not self.stop.is_set():
            step()

    def submitter(self) -> None:
        body = self.call(JM, "submitJob", '[Executable = "/bin/true"; CPUTime = 100;]',
                         user=True)
        if body is not None:
            with self.lock:
                self.accepted.append(int(body["Value"]))

    def bulk(self) -> None:
        jdl = '[Executable = "/bin/echo"; Arguments = "%s"; Parameters = {"a","b","c","d"};]'
        ids = self.call(JM, "submitJob", jdl, user=True)
        if ids is None:
            return
        ids = [int(x) for x in ids["Value"]]
        if self.call(JM, "confirmBulkSubmission", ids, user=True) is not None:
            with self.lock:
                self.accepted.extend(ids)

    def pilot(self) -> None:
        match = self.call(MATCHER, "requestJob", {"Site": SITE, "CPUTime": 1000})
        if not isinstance(match, dict) or "JobID" not in match:
            time.sleep(0.05)
            return
        job = int(match["JobID"])
        with self.lock:
            self.matched.append(job)
        token = match["JobToken"]
        self.call(STATE, "setJobStatus", job, "Running", "Application", "JobWrapper",
                  token=token)
        for _ in range(3):
            if self.call(STATE, "sendHeartBeat", job, {"CPUConsumed": 1.0}, {},
                         token=token) is not None:
                with self.lock:
                    self.beats[job] += 1

    def uploader(self) -> None:
        data, md5 = archive(os.urandom(64 * 1024) + uuid.uuid4().bytes)
        try:
            reply = requests.put(f"{self.url()}/WorkloadManagement/SandboxStore/upload/"
                                 f"{md5}.tar.bz2", data=data, cert=self.alice,
                                 verify=str(self.creds.ca_dir), timeout=60)
        except requests.RequestException as exc:
            with self.lock:
                self.errors[type(exc).__name__] += 1
            time.sleep(0.1)
            return
        with self.lock:
            self.statuses[reply.status_code] += 1
        if reply.status_code == 200 and reply.json().get("OK"):
            with self.lock:
                self.uploads[reply.json()["Value"]] = md5

    def start(self, *, submitters: int = 2, bulk: int = 1, pilots: int = 2,
              uploaders: int = 1) -> Load:
        plan = ([self.submitter] * submitters + [self.bulk] * bulk + [self.pilot] * pilots
                + [self.uploader] * uploaders)
        for step in plan:
            thread = threading.Thread(target=self._loop, args=(step,), daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(90)
            assert not thread.is_alive(), "a load thread did not stop"


# -- what must hold after faults -------------------------------------------------------------

PENDING = ("Received", "Checking")


def pending_jobs(engine: sa.engine.Engine) -> list[int]:
    with engine.connect() as conn:
        return [int(x) for x in conn.execute(
            sa.select(jobs.c.job_id).where(jobs.c.status.in_(PENDING))).scalars()]


def check_consistency(engine: sa.engine.Engine, load: Load, sandbox_base: Path) -> dict[str, int]:
    """Everything a client was told had been accepted is there, in a coherent state."""
    with engine.connect() as conn:
        status = dict(conn.execute(sa.select(jobs.c.job_id, jobs.c.status)).all())
        logged: dict[int, list[str]] = {}
        for job_id, st in conn.execute(sa.select(job_logging.c.job_id, job_logging.c.status)
                                       .order_by(job_logging.c.status_time,
                                                 job_logging.c.id)):
            logged.setdefault(int(job_id), []).append(st)
        queued = Counter(int(x) for x in conn.execute(sa.select(tq_jobs.c.job_id)).scalars())
        beats = {int(j): int(n) for j, n in conn.execute(
            sa.select(job_heartbeats.c.job_id, sa.func.count())
            .where(job_heartbeats.c.data.like('%"CPUConsumed":%'))
            .group_by(job_heartbeats.c.job_id)).all()}
        stored = conn.execute(sa.select(sandboxes.c.pfn, sandboxes.c.checksum,
                                        sandboxes.c.size)).all()
    # every accepted job exists, has gone past Received/Checking
    missing = [j for j in load.accepted if j not in status]
    assert not missing, f"accepted jobs lost: {missing[:10]}"
    stuck = [j for j in load.accepted if status[j] in PENDING]
    assert not stuck, f"accepted jobs still pending: {stuck[:10]}"
    # no job matched twice
    twice = [j for j, n in Counter(load.matched).items() if n > 1]
    assert not twice, f"jobs matched twice: {twice}"
    for job in load.matched:
        assert status[job] in ("Matched", "Running"), (job, status[job])
    # the logging tells the same story as the job rows: no row lost
    for job_id, st in status.items():
        history = logged.get(job_id, [])
        assert history, f"job {job_id} has no logging"
        assert history[-1] == st, f"job {job_id} is {st}, its logging ends {history}"
        assert history[0] in ("Received", "Submitting"), (job_id, history)
        if st == "Waiting":
            assert "Checking" in history, (job_id, history)
            assert queued[job_id] == 1, f"waiting job {job_id} queued {queued[job_id]} times"
        else:
            assert queued[job_id] == 0, f"{st} job {job_id} still queued"
    # acknowledged heartbeats are stored
    short = {j: (n, beats.get(j, 0)) for j, n in load.beats.items() if beats.get(j, 0) < n}
    assert not short, f"acknowledged heartbeats lost (sent, stored): {short}"
    # registered sandboxes are whole; acknowledged ones are registered
    by_pfn = {pfn: (md5, size) for pfn, md5, size in stored}
    for pfn, (md5, size) in by_pfn.items():
        path = sandbox_base / pfn.lstrip("/")
        assert path.is_file(), f"registered sandbox {pfn} has no file"
        data = path.read_bytes()
        assert len(data) == size and hashlib.md5(data).hexdigest() == md5, (  # noqa: S324
            f"registered sandbox {pfn} is not whole")
    for url, md5 in load.uploads.items():
        pfn = url.split("|", 1)[1]
        assert pfn in by_pfn, f"acknowledged upload {url} not registered"
        assert by_pfn[pfn][0] == md5, f"acknowledged upload {url} registered with another md5"
    return {"jobs": len(status), "accepted": len(load.accepted), "matched": len(load.matched),
            "heartbeats": sum(load.beats.values()), "sandboxes": len(by_pfn)}


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
