"""The bulk parametric path on both databases, with its statements counted: the processed
JDLs are written with the jobs (no UPDATE per job: on MariaDB an UPDATE executemany is one
round trip per row), and the optimiser takes a confirmed bulk Received -> Waiting in one
UPDATE per 1,000 jobs with both steps logged in order."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.db import init_schema, make_engine
from wms.db import jobs as jobs_db
from wms.db.outbox import monitoring_outbox
from wms.db.schema import WMS_SCHEMA
from wms.db.tables import job_logging, jobs
from wms.db.tq_tables import tq_jobs
from wms.logic import optimizer
from wms.logic.input_data import InputDataVerdict
from wms.logic.job_description import JobLimits
from wms.logic.submission import Submitter, confirm_bulk, submit
from wms.service.common import enqueue


@pytest.fixture
def db_url(db_url_all_drivers: str) -> str:
    """SQLite, and MariaDB with both drivers (pymysql, mysqlclient): driver-specific code."""
    return db_url_all_drivers


ALICE = Submitter("alice", "demo_user", "demo")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_schema(eng, WMS_SCHEMA)
    yield eng
    eng.dispose()


class Statements:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seen: list[tuple[str, int]] = []

    def __enter__(self) -> Statements:
        sa.event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: object, cursor: object, statement: str, params: object,
              context: object, many: bool) -> None:
        self.seen.append((statement, len(params) if many else 1))  # type: ignore[arg-type]

    def starting(self, prefix: str) -> list[tuple[str, int]]:
        return [s for s in self.seen if s[0].lstrip().upper().startswith(prefix)]


@pytest.mark.parametrize("percent_j", [False, True])
def test_parametric_bulk_writes_processed_jdls_with_the_jobs(engine: Engine,
                                                             percent_j: bool) -> None:
    arguments = "%j-%n" if percent_j else "x-%n"
    jdl = (f'[Executable = "run"; Arguments = "{arguments}"; Parameters = 1500;'
           ' ParameterStart = 0; ParameterStep = 1;]')
    with Statements(engine) as stmts:
        ids = submit(engine, jdl, ALICE, JobLimits(max_parametric_jobs=1500)).job_ids
    assert len(ids) == 1500
    assert not [s for s in stmts.starting("UPDATE") if "job_jdls" in s[0]]
    with engine.connect() as conn:
        processed = jobs_db.jdls_of(conn, ids)
        originals = jobs_db.jdls_of(conn, ids, processed=False)
    for index, job_id in enumerate(ids):
        want = f"{job_id if percent_j else 'x'}-{index:04d}"
        assert f'Arguments = "{want}";' in processed[job_id]
        assert f'Arguments = "{want}";' in originals[job_id]
        assert f"JobID = {job_id};" in processed[job_id]


def test_confirmed_bulk_to_waiting_in_one_update_per_thousand(engine: Engine) -> None:
    jdl = '[Executable = "run"; Parameters = 1500; ParameterStart = 0; ParameterStep = 1;]'
    ids = submit(engine, jdl, ALICE, JobLimits(max_parametric_jobs=1500)).job_ids
    assert confirm_bulk(engine, ids) == ids
    queued: list[int] = []
    with Statements(engine) as stmts:
        result = optimizer.optimise(engine, ids, enqueue=lambda conn, items, now: queued.extend(
            j for j, _d in items))
    assert result.waiting == ids and queued == ids
    updates = [s for s in stmts.starting("UPDATE") if " jobs " in f" {s[0]} "]
    assert len(updates) == 2  # 1,500 jobs: two chunks, straight to Waiting
    with engine.connect() as conn:
        for job_id in (ids[0], ids[-1]):
            assert [h[:2] for h in jobs_db.logging_of(conn, job_id)] == [
                ("Submitting", "Bulk transaction confirmation"),
                ("Received", "Job accepted"), ("Checking", "Job accepted"),
                ("Waiting", "Pilot Agent Submission")]
        rows = jobs_db.status_of(conn, ids)
    assert {(r.status, r.minor_status) for r in rows.values()} == {
        ("Waiting", "Pilot Agent Submission")}


def test_confirmed_and_optimised_rows_written_once(engine: Engine) -> None:
    """``confirm_bulk(optimise=...)``: the rows read once and updated once (Submitting ->
    Waiting or Failed), and everything stored is what confirming, then optimising, stores."""
    jdl = ('[Executable = "run"; Parameters = 1200; ParameterStart = 0; ParameterStep = 1;'
           ' InputData = {"LFN:/demo/f%n"};]')
    limits = JobLimits(max_parametric_jobs=1200)
    now = datetime(2026, 12, 5, 0, 0, tzinfo=timezone.utc)

    def check(wanted: dict[int, list[str]]) -> dict[int, InputDataVerdict]:
        return {j: InputDataVerdict(sites=("LCG.A.a",)) if int(lfns[0].rsplit("f", 1)[1]) % 7
                else InputDataVerdict(reason="Input Data Not Available")
                for j, lfns in wanted.items()}

    def optimise_in(conn: Connection, ids: Sequence[int], when: datetime,
                    current: dict[int, jobs_db.StatusRow] | None = None) -> object:
        return optimizer.optimise_in(conn, ids, enqueue=enqueue, now=when, limits=limits,
                                     check_input_data=check, current=current)

    before = submit(engine, jdl, ALICE, limits, now).job_ids
    assert confirm_bulk(engine, before, now, on_confirmed=optimise_in) == before
    after = submit(engine, jdl, ALICE, limits, now).job_ids
    with Statements(engine) as stmts:
        assert confirm_bulk(engine, after + before, now, optimise=optimise_in) == after
    updates = [s for s in stmts.starting("UPDATE JOBS SET") if " status=" in s[0]]
    assert len(updates) == 3  # Waiting (1,028 jobs: two chunks) and Failed (172), no Received
    # the rows read once: 2,400 IDs (the first batch's, already Waiting, too), three chunks
    assert len([s for s in stmts.starting("SELECT") if "jobs.reschedule_counter" in s[0]]) == 3
    with engine.connect() as conn:
        assert stored(conn, after) == stored(conn, before)
        statuses = {r.status for r in jobs_db.status_of(conn, after).values()}
    assert statuses == {"Waiting", "Failed"}


def stored(conn: Connection, ids: list[int]) -> list[object]:
    """What is stored for ``ids`` (jobs, logging, task queues, outbox), the job IDs made
    relative to the first one; not the random pick keys."""
    first, last = ids[0], ids[-1]
    out: list[object] = []
    for table, order in ((jobs, jobs.c.job_id), (job_logging, job_logging.c.id),
                         (tq_jobs, tq_jobs.c.job_id)):
        rows = conn.execute(sa.select(table).where(table.c.job_id.between(first, last))
                            .order_by(order)).mappings()
        out.append([{k: v - first if k == "job_id" else v for k, v in r.items()
                     if k not in ("id", "pick_key")} for r in rows])
    out.append(sorted((r.kind, r.ref - first, r.status, r.created) for r in conn.execute(
        sa.select(monitoring_outbox).where(monitoring_outbox.c.ref.between(first, last)))))
    return out
