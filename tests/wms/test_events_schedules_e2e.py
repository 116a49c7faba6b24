"""Events, schedules, capacity refusal and restart end to end, on SQLite and MariaDB: a real
server over HTTPS, the typed clients, real pilots (the zipapp, subprocesses) running the jobs,
and two copies of the ScheduleAgent.

* 3 jobs subscribed to an event, the event notified twice with different variables: 6 jobs
  run with the right variables in their output, 3 standby copies remain (never matched).
* a schedule every 2 s with the ``skip`` overlap policy and ``MaxRuns`` 3, whose runs last
  longer than 2 s: exactly 3 runs, one after the other, skipped slots recorded, no slot run
  twice although two scheduler copies run.
* a job no queue can run is refused with the reason; bad input is refused and creates
  nothing; a finished job restarts as a new job linked to it.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer

from core.client_config import ClientConfig
from core.config.schema import Config
from core.db import init_schema, make_engine
from core.exceptions import (
    InvalidArgumentError,
    InvalidJDLError,
    JobSubmissionError,
    NotAuthorizedError,
    NotFoundError,
)
from core.rpc.client import Credentials
from core.rpc.runner import available_services
from core.tables import FRAMEWORK_SCHEMA
from dms.db.schema import DMS_SCHEMA
from pilot.build import build
from wms.agents.schedules import ScheduleAgent
from wms.client import WMSClient
from wms.db.schema import WMS_SCHEMA
from wms.db.tables import jobs
from wms.scheduling_client import EventClient, ScheduleClient

SITE = "LCG.Test.org"
SYSTEM_PYTHON = "/usr/bin/python3"


@dataclass
class Stack:
    server: ThreadedServer
    config: Config
    creds: Creds
    base: Path
    pyz: Path
    db_url: str

    def client(self, who: str = "alice") -> WMSClient:
        cfg = ClientConfig(urls=[self.server.url], ca_dir=self.creds.ca_dir)
        if who == "alice":
            return WMSClient(cfg, Credentials(cert=self.creds.alice[0], key=self.creds.alice[1]))
        return WMSClient(cfg, Credentials(token=self.creds.token("admin", "demo_ops")))

    def pilot(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        work = self.base / name
        work.mkdir(parents=True)
        token = work / "token"
        token.write_text(self.creds.token("pilot", "demo_pilot"))
        cmd = [SYSTEM_PYTHON, "-S", "-I", str(self.pyz), "--url", self.server.url,
               "--token-file", str(token), "--ca-dir", str(self.creds.ca_dir), "--site", SITE,
               "--ce", "ce.test", "--queue", "q", "--workdir", str(work), "--poll", "0.2",
               "--max-sleep", "0.5", "--heartbeat", "1", "--retries", "1",
               "--max-failed-matches", "10000", *args]
        with (work / "pilot.log").open("wb") as log:
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603

    def job_count(self) -> int:
        engine = make_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return int(conn.execute(sa.select(sa.func.count()).select_from(jobs))
                           .scalar_one())
        finally:
            engine.dispose()


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)
    return value


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("pilot") / "pilot.pyz")


def stack_config(config: Config, db_url: str, base: Path) -> Config:
    data = config.model_dump(by_alias=True, exclude_none=True)
    data["Database"] = db_url
    groups = data["Registry"]["Groups"]
    groups["demo_ops"] = {"VO": "demo", "Users": ["admin"],
                          "Properties": ["NormalUser", "EventManager"]}
    data["Resources"]["Sites"] = {SITE: {"CEs": {"ce.test": {
        "CEType": "Local", "Settings": {"WorkDir": str(base / "ce")},
        "Queues": {"q": {"MaxCPUTime": 172800, "NumberOfProcessors": 4,
                         "MaxRAM": 4000}}}}}}
    data.setdefault("Systems", {})["WorkloadManagement"] = {"Services": {"SandboxStore": {
        "Options": {"BasePath": str(base / "sandboxes")}}}}
    return Config.model_validate(data)


@pytest.fixture
def stack(config: Config, db_url: str, creds: Creds, tmp_path: Path, pyz: Path
          ) -> Iterator[Stack]:
    cfg = stack_config(config, db_url, tmp_path)
    engine = make_engine(db_url)
    init_schema(engine, WMS_SCHEMA)
    init_schema(engine, DMS_SCHEMA)
    init_schema(engine, FRAMEWORK_SCHEMA)  # agent copies starting together would race for it
    engine.dispose()
    with ThreadedServer(cfg, available_services().values()) as server:
        yield Stack(server, cfg, creds, tmp_path, pyz, db_url)


def output_of(wms: WMSClient, job: int, dest: Path) -> str:
    wms.download_job_sandbox(job, "Output", dest / str(job))
    return (dest / str(job) / "std.out").read_text()


PAYLOAD = ('[Executable = "/bin/sh"; Arguments = "-c \'echo RUN=$RUN_DATE STEP=$STEP '
           'KEEP=$KEEP\'"; ExecutionEnvironment = "KEEP=yes"; CPUTime = 600; '
           'OutputSandbox = {"std.out"}; Event = "an00h000";]')


def test_event_releases_subscribed_jobs_with_their_variables(stack: Stack,
                                                             tmp_path: Path) -> None:
    alice, ops = stack.client(), stack.client("ops")
    events = EventClient(ops)
    events.create("an00h000", "the analysis at 00UTC is complete")
    subscribed = [alice.submit(PAYLOAD)[0] for _ in range(3)]
    assert set(alice.status(subscribed).values()) == {"Standby"}
    assert alice.summary(subscribed)[subscribed[0]]["MinorStatus"] == \
        "Waiting for event an00h000"
    pilot = stack.pilot("p1", "--processors", "3")
    try:
        time.sleep(2)  # a hungry pilot is there: standby jobs are never matched
        assert set(alice.status(subscribed).values()) == {"Standby"}
        with pytest.raises(NotAuthorizedError, match="only admin may notify"):
            EventClient(alice).notify("an00h000", {"RUN_DATE": "x"})
        first = events.notify("an00h000", {"RUN_DATE": "20261203", "STEP": "240"})
        assert first["Released"] == 3
        second = events.notify("an00h000", {"RUN_DATE": "20261204", "STEP": "0"})
        assert second["Released"] == 3
        history = events.history("an00h000")
        assert [h["Environment"] for h in history] == [
            {"RUN_DATE": "20261204", "STEP": "0"}, {"RUN_DATE": "20261203", "STEP": "240"}]
        released = sorted(history[1]["JobIDs"]) + sorted(history[0]["JobIDs"])
        assert sorted(history[1]["JobIDs"]) == subscribed
        wait_for(lambda: all(s in ("Done", "Failed") for s in alice.status(released).values()),
                 150, "the 6 released jobs to end")
    finally:
        pilot.kill()
        pilot.wait(30)
    assert set(alice.status(released).values()) == {"Done"}
    outputs = {job: output_of(alice, job, tmp_path) for job in released}
    for job in released[:3]:
        assert outputs[job].strip() == "RUN=20261203 STEP=240 KEEP=yes"
    for job in released[3:]:
        assert outputs[job].strip() == "RUN=20261204 STEP=0 KEEP=yes"
    [event] = events.all()
    assert (event["Name"], event["Subscribers"], event["Notifications"]) == ("an00h000", 3, 2)
    standby = [s["JobID"] for s in events.subscriptions("an00h000") if s["Active"]]
    assert len(standby) == 3 and set(alice.status(standby).values()) == {"Standby"}
    # the chain ends with dkill of the standby job (or devent unsubscribe)
    alice.kill(standby[0])
    assert EventClient(alice).unsubscribe(standby[1])["StandbyJob"] == standby[1]
    assert events.notify("an00h000")["Released"] == 1
    # restart: a new job like a finished one, linked to it
    new = alice.restart(released[0])
    assert alice.parameters([new])[new]["RestartOf"] == str(released[0])
    assert alice.parameters([released[0]])[released[0]]["RestartedAs"] == str(new)
    assert alice.status([new])[new] == "Waiting"
    with pytest.raises(Exception, match="only finished jobs"):
        alice.restart(new)


def test_impossible_jobs_and_bad_input_create_nothing(stack: Stack) -> None:
    alice, ops = stack.client(), stack.client("ops")
    before = stack.job_count()
    with pytest.raises(JobSubmissionError, match="no queue offers 2 GPUs with 16000 MB"):
        alice.submit('[Executable = "x"; NumberOfGPUs = 2; MinRAM = 16000;]')
    with pytest.raises(NotFoundError, match="unknown event 'nosuch'"):
        alice.submit('[Executable = "x"; Event = "nosuch";]')
    with pytest.raises(NotFoundError, match="unknown event"):
        EventClient(ops).notify("nosuch")
    with pytest.raises(InvalidJDLError, match="parametric"):
        alice.submit('[Executable = "x"; Event = "e"; Parameters = 3;]')
    with pytest.raises(NotAuthorizedError):
        EventClient(alice).create("mine")
    schedules = ScheduleClient(alice)
    with pytest.raises(InvalidArgumentError, match="does not parse"):
        schedules.add("bad", '[Executable = "x";]', cron="0 6 * * FOO")
    with pytest.raises(InvalidArgumentError, match="at least 1 second"):
        schedules.add("bad", '[Executable = "x";]', every="0")
    with pytest.raises(JobSubmissionError, match="no queue offers 4 GPUs"):
        schedules.add("bad", '[Executable = "x"; NumberOfGPUs = 4;]', every="1h")
    with pytest.raises(NotFoundError, match="dataset /demo/user/a/alice/nosuch"):
        alice.submit_dataset('[Executable = "x";]', 5, dataset="/demo/user/a/alice/nosuch")
    assert stack.job_count() == before
    assert schedules.all() == [] and EventClient(alice).all() == []
    # kept Waiting when asked to
    [job] = alice.submit('[Executable = "x"; NumberOfGPUs = 2; WaitForResources = true;]')
    assert alice.status([job])[job] == "Waiting"


def test_schedule_skip_runs_one_at_a_time_with_two_schedulers(stack: Stack) -> None:
    alice = stack.client()
    schedules = ScheduleClient(alice)
    script = stack.base / "run.sh"
    script.write_text("sleep 3\necho ran\n")
    jdl = alice.with_sandbox(f'[Executable = "/bin/sh"; Arguments = "run.sh"; CPUTime = 600; '
                             f'InputSandbox = {{"{script}"}}; OutputSandbox = {{"std.out"}};]')
    sid = schedules.add("every2", jdl.to_text(), every="2s", overlap="skip", max_runs=3)
    agents = [ScheduleAgent(stack.config, instance=f"sched-{i}", period=0.3) for i in range(2)]
    threads = [threading.Thread(target=a.run, daemon=True) for a in agents]
    for t in threads:
        t.start()
    pilot = stack.pilot("p2")
    try:
        wait_for(lambda: schedules.show(sid)["Status"] == "Finished", 150,
                 "the schedule to make its 3 runs")
        runs = [r for r in schedules.show(sid)["History"] if r["State"] == "Submitted"]
        job_ids = sorted(r["JobID"] for r in runs)
        wait_for(lambda: all(s in ("Done", "Failed") for s in alice.status(job_ids).values()),
                 150, "the runs to end")
    finally:
        for a in agents:
            a.stop()
        for t in threads:
            t.join(30)
        pilot.kill()
        pilot.wait(30)
    info = schedules.show(sid)
    slots = [r["Slot"] for r in info["History"]]
    assert len(slots) == len(set(slots))  # never two runs for one slot
    assert len(job_ids) == 3 and info["Runs"] == 3
    assert set(alice.status(job_ids).values()) == {"Done"}, alice.summary(job_ids)
    assert any(r["State"] == "Skipped" for r in info["History"])
    # every run got the schedule's input sandbox, kept for the schedule itself
    assert "ran" in output_of(alice, job_ids[-1], stack.base)
    assert alice.sandboxes(job_ids[0])["Input"] == alice.sandboxes(job_ids[-1])["Input"]
    schedules.remove(sid)
    attrs = [alice.attributes(j) for j in job_ids]
    assert {a["JobGroup"] for a in attrs} == {"every2"}
    for earlier, later in zip(attrs, attrs[1:], strict=False):  # one after the other
        assert later["SubmissionTime"] >= earlier["EndExecTime"], (earlier, later)
