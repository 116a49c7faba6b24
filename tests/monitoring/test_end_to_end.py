"""Real jobs through a local pilot, then accounting, history and ``dacct`` on both backends
(the Monitoring database on SQLite, and the ``osmem-server`` OpenSearch stand-in)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.config.schema import Config
from core.db import init_schema, make_engine
from core.rpc.client import Credentials, RPCClient
from core.rpc.runner import available_services
from monitoring.client import MonitoringClient
from monitoring.db.tables import MONITORING_SCHEMA
from monitoring.logic import plots
from monitoring.logic.cycles import Cycles
from monitoring.types import TYPES
from tests.pilot.conftest import Env, pyz, wait_for  # noqa: F401 - pyz is a fixture
from tests.support.credentials import Creds
from tests.support.osmem import OsmemServer
from tests.support.servers import ThreadedServer
from wms.db import outbox
from wms.db.schema import WMS_SCHEMA
from wms.logic import pilots

pytestmark = pytest.mark.slow

BUSY = ('[Executable = "/usr/bin/python3"; JobName = "busy"; CPUTime = 600; '
        # burns 0.6 s of CPU on any machine (a fixed amount of work took 0.29 s on a fast one)
        'Arguments = "-c \\"import time; '
        '[0 for _ in iter(lambda: time.process_time() < 0.6, False)]\\"";]')
FAILS = '[Executable = "/bin/false"; JobName = "fails"; CPUTime = 600;]'
ECHO = '[Executable = "/bin/echo"; Arguments = "hi"; JobName = "echo"; CPUTime = 600;]'


def monitoring_config(config: Config, kind: str, osmem: OsmemServer | None) -> Config:
    data = config.model_dump(by_alias=True, exclude_none=True)
    section: dict = {"RunInServer": False, "HistoryPeriod": 60}
    if kind == "opensearch":
        assert osmem is not None
        section.update(Backend="OpenSearch", OpenSearch={
            "Hosts": [osmem.url], "IndexPrefix": f"e2e{uuid.uuid4().hex[:8]}", "Timeout": 5})
    data["Monitoring"] = section
    return Config.model_validate(data)


@pytest.fixture
def served(config: Config, backend_kind: str, request: pytest.FixtureRequest,
           tmp_path: Path) -> Iterator[tuple[ThreadedServer, Config]]:
    osmem = request.getfixturevalue("osmem") if backend_kind == "opensearch" else None
    cfg = monitoring_config(config, backend_kind, osmem)
    assert cfg.database
    engine = make_engine(cfg.database)
    init_schema(engine, WMS_SCHEMA)
    init_schema(engine, MONITORING_SCHEMA)
    engine.dispose()
    with ThreadedServer(cfg, available_services().values()) as server:
        yield server, cfg


@pytest.mark.parametrize("backend_kind", ["sql", "opensearch"])
def test_jobs_through_a_pilot_make_records_history_and_plots(
        served: tuple[ThreadedServer, Config], creds: Creds, pyz: Path,  # noqa: F811
        tmp_path: Path) -> None:
    server, cfg = served
    env = Env(server, creds, pyz, tmp_path / "pilots")
    jobs = {name: env.submit(jdl) for name, jdl in
            (("busy", BUSY), ("fails", FAILS), ("echo", ECHO))}
    pilot = env.pilot("--max-failed-matches", "2")
    assert pilot.wait(120) == 0, pilot.log()
    states = {name: env.status(job)["Status"] for name, job in jobs.items()}
    assert states == {"busy": "Done", "fails": "Failed", "echo": "Done"}, pilot.log()

    wms = make_engine(cfg.database_url("WorkloadManagement"))
    state = make_engine(cfg.database_url("Monitoring"))
    with wms.connect() as conn:
        assert sorted(r.ref for r in outbox.pending(conn, 100)) == sorted(jobs.values())
    cycles = Cycles(cfg, wms, state)
    try:
        shipped = cycles.ship()
        assert shipped is not None and shipped.jobs == 3
        with wms.connect() as conn:
            assert outbox.count(conn) == 0
        backend = cycles.backend
        assert backend is not None
        records = backend.get(TYPES["Job"], [str(j) for j in jobs.values()])
        busy = records[str(jobs["busy"])]
        assert busy["FinalMajorStatus"] == "Done" and busy["User"] == "alice"
        assert busy["Site"] == "LCG.Pilot.test" and busy["GridCE"] == "ce.pilot.test"
        assert busy["CPUTime"] >= 0.5, busy
        assert busy["WallClockTime"] >= busy["CPUTime"] * 0.5
        assert busy["ExecTime"] == busy["WallClockTime"] * busy["Processors"]
        assert busy["MemoryPeak"] > 1000  # kB: a Python process
        factor = busy["CPUNormalizationFactor"]
        assert factor and factor > 0  # the pilot's DB12
        assert busy["NormCPUTime"] == pytest.approx(busy["CPUTime"] * factor, rel=0.02)
        fails = records[str(jobs["fails"])]
        assert (fails["FinalMajorStatus"], fails["FinalMinorStatus"]) == (
            "Failed", "Application Finished With Errors")
        assert busy["EndTime"] >= busy["StartTime"] >= busy["SubmissionTime"]

        # the pilot ends: one pilot record with the jobs it ran
        ref = _pilot_ref(wms)
        pilots.set_status(wms, [ref], "Done")
        shipped = cycles.ship()
        assert shipped is not None and shipped.pilots == 1
        [precord] = backend.get(TYPES["Pilot"], [ref]).values()
        assert (precord["Jobs"], precord["GridStatus"]) == (3.0, "Done")

        # history: a snapshot of the jobs by status
        history = cycles.history()
        assert history is not None and len(history.written) == 1
        counts = env.call("alice", "Monitoring/Monitoring", "getLatestSnapshot", "WMSHistory",
                          ["Status"])
        assert counts["counts"] == {"Done": 2, "Failed": 1}
    finally:
        cycles.close()

    # the report services as the portal will use them (DIRAC's method names)
    alice = Credentials(cert=creds.alice[0], key=creds.alice[1])
    rpc = {name: RPCClient(name, urls=[server.url], credentials=alice, ca_dir=creds.ca_dir)
           for name in ("Accounting/ReportGenerator", "Monitoring/Monitoring")}
    with MonitoringClient(monitoring=rpc["Monitoring/Monitoring"],
                          accounting=rpc["Accounting/ReportGenerator"]) as mon:
        assert "CPUEfficiency" in mon.reports("Job")
        assert mon.key_values("Job")["User"] == ["alice"]
        now = datetime.now(timezone.utc)
        drawn = mon.plot("Job", "TotalNumberOfJobs", now - timedelta(days=1), now, "svg",
                         grouping="FinalMajorStatus")
        assert drawn["plot"].startswith(b"<?xml") and drawn["format"] == "svg"
        assert drawn["series"] == pytest.approx({"Done": 2 / 3, "Failed": 1 / 3}, abs=1e-5)
        assert drawn["reportData"]["data"] == {"Done": 2.0, "Failed": 1.0}
        history_report = mon.report("WMSHistory", "NumberOfJobs", now - timedelta(hours=2),
                                    now + timedelta(minutes=5), grouping="Status")
        assert {g: max(v.values()) for g, v in history_report["data"].items()} == {
            "Done": 2.0, "Failed": 1.0}

    # dacct as alice: the table, the JSON and a plot whose drawn data are checked
    client = tmp_path / "client.yaml"
    client.write_text(f"URLs: [{server.url}]\nCADir: {creds.ca_dir}\n"
                      f"Cert: {creds.alice[0]}\nKey: {creds.alice[1]}\nGroup: demo_user\n"
                      f"VO: demo\n")
    run_env = {"PILOTWMS_CLIENT_CONFIG": str(client), "X509_USER_PROXY": "",
               "BEARER_TOKEN_FILE": str(tmp_path / "no-token"), "PATH": "/usr/bin:/bin",
               "HOME": str(tmp_path)}
    png, svg = tmp_path / "jobs.png", tmp_path / "cpu.svg"
    out = dacct(run_env, "jobs", "--group-by", "FinalMajorStatus", "--from", "1d",
                "-f", "json", "--plot", str(png))
    report = json.loads(out)
    assert report["totals"] == {"Done": 2.0, "Failed": 1.0}
    drawn = plots.embedded_series(png.read_bytes())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and drawn["kind"] == "bars"
    assert {g: sum(v) for g, v in drawn["series"].items()} == {"Done": 2.0, "Failed": 1.0}
    hour = [row for row in report["rows"] if row["NumberOfJobs (jobs)"] > 0]
    assert sorted((r["FinalMajorStatus"], r["NumberOfJobs (jobs)"]) for r in hour) == [
        ("Done", 2.0), ("Failed", 1.0)]
    dacct(run_env, "jobs", "-r", "TotalCPUUsed", "--group-by", "User", "--from", "1d",
          "--plot", str(svg))
    pie = plots.embedded_series(svg.read_bytes())
    assert svg.read_bytes().startswith(b"<?xml") and pie["series"] == {"alice": 1.0}
    pretty = dacct(run_env, "jobs", "--group-by", "FinalMajorStatus", "--from", "1d")
    lines = pretty.splitlines()
    assert lines[0].startswith("Job execution rate by FinalMajorStatus (jobs), ")
    assert lines[1].split() == ["Time", "Done", "Failed", "Total"]
    assert sum(float(line.split()[-1]) for line in lines[3:]) == 3.0
    table = dacct(run_env, "jobs", "--group-by", "Site", "--status", "Failed",
                  "--from", "1d", "-f", "csv")
    assert table.splitlines()[0] == "Site,Time,NumberOfJobs (jobs),"
    assert sum(float(line.split(",")[2]) for line in table.splitlines()[1:]) == 1.0

    # dstat --summary: live counts from the history snapshot
    summary = command(run_env, "wms.cli.dstat", "--summary", "Site,Status", "-f", "csv")
    assert summary.rstrip("\n").splitlines() == ["Site,Status,Jobs,", "LCG.Pilot.test,Done,2,",
                                    "LCG.Pilot.test,Failed,1,"]
    pretty = command(run_env, "wms.cli.dstat", "--summary")
    assert pretty.splitlines()[2:4] == ["Done       2", "Failed     1"]
    assert "3 job(s), snapshot of" in pretty


def _pilot_ref(wms: sa.engine.Engine) -> str:
    from wms.db.pilot_tables import pilot_agents

    with wms.connect() as conn:
        return str(conn.execute(sa.select(pilot_agents.c.pilot_reference)).scalar_one())


def command(env: dict[str, str], module: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", module, *args],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def dacct(env: dict[str, str], *args: str) -> str:
    return command(env, "monitoring.cli.dacct", *args)
