"""A monitoring outage never fails a job; a restart never loses nor doubles a history interval.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from core.config.schema import Config
from core.db import init_schema, make_engine
from core.rpc.runner import available_services
from core.security.identity import Identity
from monitoring.db.base import Aggregation, Backend, BackendUnavailable
from monitoring.db.tables import MONITORING_SCHEMA, history_cycles
from monitoring.logic import history
from monitoring.logic.cycles import Backoff, Cycles
from monitoring.types import TYPES
from tests.pilot.conftest import Env, pyz  # noqa: F401 - pyz is a fixture
from tests.support.credentials import Creds
from tests.support.osmem import OsmemServer
from tests.support.servers import ThreadedServer
from wms.db import outbox
from wms.db.schema import WMS_SCHEMA
from wms.logic import state_update
from wms.logic.submission import DEFAULT_LIMITS, Submitter, submit

WMS = TYPES["WMSHistory"]
ADMIN = Identity(auth_method="x509", username="admin", group="demo_admin", vo="demo",
                 valid_dn=True, valid_group=True, properties=frozenset({"JobAdministrator"}))


@pytest.mark.slow
def test_search_server_down_jobs_run_records_wait_and_follow(
        config: Config, creds: Creds, pyz: Path, tmp_path: Path) -> None:  # noqa: F811
    search = OsmemServer(tmp_path / "osmem").start()
    try:
        data = config.model_dump(by_alias=True, exclude_none=True)
        data["Monitoring"] = {"Backend": "OpenSearch", "RunInServer": False, "MaxBackoff": 60,
                              "OpenSearch": {"Hosts": [search.url], "Timeout": 2,
                                             "IndexPrefix": f"down{uuid.uuid4().hex[:6]}"}}
        cfg = Config.model_validate(data)
        assert cfg.database
        wms = make_engine(cfg.database)
        init_schema(wms, WMS_SCHEMA)
        init_schema(wms, MONITORING_SCHEMA)
        cycles = Cycles(cfg, wms, wms)
        assert cycles.ship() is not None  # templates made while it is up
        search.stop()

        with ThreadedServer(cfg, available_services().values()) as server:
            env = Env(server, creds, pyz, tmp_path / "pilots")
            job = env.submit('[Executable = "/bin/echo"; Arguments = "hi"; CPUTime = 600;]')
            pilot = env.pilot("--max-failed-matches", "1")
            assert pilot.wait(120) == 0, pilot.log()
            assert env.status(job)["Status"] == "Done"  # the outage did not touch the job

        assert cycles.ship() is None  # backend down: nothing lost, the row waits
        with wms.connect() as conn:
            assert [r.ref for r in outbox.pending(conn, 10)] == [job]
        backoff = cycles.backoff["accounting"]
        assert backoff.failures == 1 and not backoff.ready()
        assert cycles.ship() is None and backoff.failures == 1  # waits: no new attempt

        search.restart()  # same address, empty (it keeps data in memory)
        backoff.not_before = 0.0  # the back-off delay has passed
        shipped = cycles.ship()
        assert shipped is not None and shipped.jobs == 1
        with wms.connect() as conn:
            assert outbox.count(conn) == 0
        assert cycles.backend is not None
        record = cycles.backend.get(TYPES["Job"], [str(job)])[str(job)]
        assert record["FinalMajorStatus"] == "Done"
        cycles.close()
    finally:
        search.stop()


def test_backoff_doubles_up_to_its_bound() -> None:
    backoff = Backoff(max_delay=30)
    delays = [backoff.failed(now=0.0) for _ in range(8)]
    assert delays == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    backoff.succeeded()
    assert backoff.ready(now=0.0) and backoff.failures == 0


class Crashing:
    """A backend that dies (like a killed process) after writing ``after`` records."""

    def __init__(self, inner: Backend, after: int) -> None:
        self.inner, self.after = inner, after

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put(self, rtype: Any, docs: list[dict[str, Any]]) -> int:
        self.inner.put(rtype, docs[:self.after])
        raise KeyboardInterrupt("killed during the history cycle")


def _jobs(engine: sa.engine.Engine, when: datetime, n: int) -> list[int]:
    ids = []
    for i in range(n):
        owner = "alice" if i % 2 else "bob"
        [job] = submit(engine, '[Executable = "ls";]', Submitter(owner, "g", "v"),
                       DEFAULT_LIMITS, now=when).job_ids
        ids.append(job)
    return ids


def test_restart_during_a_history_cycle_loses_no_interval_and_writes_no_duplicate(
        backend: Backend, tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'wms.db'}")
    init_schema(engine, WMS_SCHEMA)
    init_schema(engine, MONITORING_SCHEMA)
    period = 300
    t0 = datetime(2026, 12, 3, 10, 0, tzinfo=timezone.utc)
    jobs = _jobs(engine, t0, 6)  # Received at t0

    first = history.run_cycle(backend, engine, engine, period=period, backfill=12,
                              now=t0 + timedelta(seconds=10))
    assert first.written == [t0]
    # jobs finish over the next intervals; the agent is down meanwhile
    for i, job in enumerate(jobs[:4]):
        when = t0 + timedelta(seconds=period * (1 + i // 2) + 30)
        state_update.set_status(engine, ADMIN, job, "Killed", source="test", when=when,
                                force=True)
    # the process dies while writing the snapshot of t0 + 3 periods
    t3 = t0 + timedelta(seconds=3 * period)
    with pytest.raises(KeyboardInterrupt):
        history.run_cycle(Crashing(backend, after=1), engine, engine,  # type: ignore[arg-type]
                          period=period, backfill=12, now=t3 + timedelta(seconds=20))
    with engine.connect() as conn:
        marks = dict(conn.execute(sa.select(history_cycles.c.ts, history_cycles.c.state)
                                  .where(history_cycles.c.type == "WMSHistory")).all())
    assert "started" in marks.values()

    # restarted: every interval from t0 to t3 is there, once
    again = history.run_cycle(backend, engine, engine, period=period, backfill=12,
                              now=t3 + timedelta(seconds=40))
    slots = [t0 + timedelta(seconds=period * k) for k in range(4)]
    assert backend.times(WMS, t0, t3 + timedelta(seconds=1)) == slots
    assert t3 in again.written or t3 in again.backfilled
    expected = {0: {"Received": 6}, 1: {"Received": 6}, 2: {"Killed": 2, "Received": 4},
                3: {"Killed": 4, "Received": 2}}
    for k, slot in enumerate(slots):
        rows = backend.aggregate(WMS, Aggregation(slot, slot + timedelta(seconds=1),
                                                  group_by=("Status",), sums=("Jobs",)))
        assert {r.keys[0]: int(r.sums["Jobs"]) for r in rows} == expected[k], k
        # one record per key combination: nothing written twice
        records = backend.records(WMS, slot, slot + timedelta(seconds=1), limit=100)
        keys = [(r["Status"], r["User"], r["MinorStatus"]) for r in records]
        assert len(keys) == len(set(keys))
    with engine.connect() as conn:
        states = set(conn.execute(sa.select(history_cycles.c.state)).scalars())
    assert states == {"done"}


def test_unavailable_is_a_service_error() -> None:
    assert issubclass(BackendUnavailable, Exception)
    assert BackendUnavailable("x").errno  # travels as a ServiceUnavailableError
