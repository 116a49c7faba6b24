"""A parametric submission describes each child once (issue 17, server CPU of bulk over HTTPS).

``submitJob`` validates every child and stores, beside its JDL, the scheduling record the
optimiser needs (:mod:`wms.logic.scheduling_record`); ``confirmBulkSubmission`` rebuilds the
descriptions from those records instead of parsing and validating every stored JDL again.
These tests check that no child is described twice, that the outcome (job rows, logging
records, task queues) is exactly what describing the stored JDLs again gives, and that jobs
without a valid record (made before the column, other limits, a replaced JDL) still go on.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core import migrations
from core.db import init_schema, make_engine, upgrade_schema
from wms.db import jobs as jobs_db
from wms.db.schema import SCHEDULING_STEP, WMS_SCHEMA
from wms.db.tables import job_jdls, job_logging, jobs
from wms.db.tq_tables import task_queues, tq_jobs, tq_requirements
from wms.logic import input_data, matching, optimizer, scheduling_record
from wms.logic.jdl import parse_jdl
from wms.logic.job_description import JobDescription, JobLimits, describe_job
from wms.logic.submission import Submitter, confirm_bulk, submit
from wms.logic.task_queues import tq_key

ALICE = Submitter("alice", "demo_user", "demo")
LIMITS = JobLimits(max_parametric_jobs=1500)
NOW = datetime(2026, 12, 4, 5, 0, tzinfo=timezone.utc)

#: parametric JDLs touching every field of the record (clamped CPU time and priority, sites
#: given as a string and as a list, ANY, banned sites, processors, RAM, GPUs, whole node,
#: platforms, CEs, tags, input data per child, %j)
CORPUS = [
    '[Executable = "run"; Arguments = "%s"; Parameters = {"a", "b", "c"}; CPUTime = 10;'
    ' Priority = 20; Site = "S1, S2"; Tags = {"t1", "t2"}; NumberOfProcessors = 4;'
    ' MaxRAM = 2500;]',
    '[Executable = "run"; Arguments = "%n"; Parameters = 4; ParameterStart = 0;'
    ' ParameterStep = 1; InputData = {"/demo/data/f%n", "LFN:/demo/data/common"};'
    ' BannedSites = {"S3"}; JobType = "Test"; MinNumberOfProcessors = 2;]',
    '[Executable = "run"; Arguments = "%j %n"; Parameters = 3; ParameterStart = 0;'
    ' ParameterStep = 1; Site = "ANY"; Platform = {"ANY", "x86_64"}; GridCE = "ce1.example";'
    ' WholeNode = true; NumberOfGPUs = 2; GPUModel = "A100"; MinRAM = 1000; Tag = "fast";'
    ' LogLevel = "debug"; MyAttribute = "kept";]',
    '[Executable = "run"; Parameters = {"S1", "S2", "S4"}; Site = "%s"; CPUTime = 600000;'
    ' InputData = "/demo/data/f1"; MaxNumberOfProcessors = 8;]',
    '[Executable = "run"; Parameters = 2; ParameterStart = 1; ParameterStep = 1;'
    ' Priority = 3; CPUTime = 3600; Site = {"S1", "S2", "S3"}; BannedSites = "S2";]',
]

#: the catalog of the input-data check: f0 at S1 only, f1 at S1 and S2, f2 at S4, f3 nowhere
REPLICAS = {"/demo/data/f0": ["SE1"], "/demo/data/f1": ["SE1", "SE2"],
            "/demo/data/f2": ["SE4"], "/demo/data/common": ["SE1", "SE2", "SE4"]}
SE_SITES = {"SE1": ["S1"], "SE2": ["S2"], "SE4": ["S4"]}


def check_input_data(wanted: dict[int, list[str]]) -> dict[int, input_data.InputDataVerdict]:
    return input_data.decide(wanted, replicas=REPLICAS, se_sites=SE_SITES)


def enqueue(conn: Connection, items: Any, now: datetime) -> None:
    matching.enqueue_jobs(conn, [matching.tq_job_from_description(j, d) for j, d in items], now)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_schema(eng, WMS_SCHEMA)
    yield eng
    eng.dispose()


class Described:
    """Counts the optimiser's ``describe_job`` calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0

        def counting(*args: Any, **kwargs: Any) -> JobDescription:
            self.calls += 1
            return describe_job(*args, **kwargs)

        monkeypatch.setattr(optimizer, "describe_job", counting)


def confirm(engine: Engine, ids: list[int], limits: JobLimits = LIMITS) -> list[int]:
    return confirm_bulk(engine, ids, now=NOW + timedelta(seconds=1), on_confirmed=lambda conn, todo,
                        now: optimizer.optimise_in(conn, todo, enqueue=enqueue, now=now,
                                                   limits=limits,
                                                   check_input_data=check_input_data))


def test_confirmation_describes_no_child_again(engine: Engine,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    jdl = ('[Executable = "run"; Arguments = "--seed %s"; Parameters = 1500;'
           ' ParameterStart = 0; ParameterStep = 1; CPUTime = 3600;]')
    ids = submit(engine, jdl, ALICE, LIMITS, now=NOW).job_ids
    described = Described(monkeypatch)
    parsed = []
    monkeypatch.setattr(optimizer, "parse_jdl", lambda text: parsed.append(text) or
                        parse_jdl(text))
    assert confirm(engine, ids) == ids
    assert described.calls == 0 and parsed == []  # was 1,500 of each: every JDL again
    with engine.connect() as conn:
        statuses = {(r.status, r.minor_status) for r in jobs_db.status_of(conn, ids).values()}
        queued = conn.execute(sa.select(sa.func.count()).select_from(tq_jobs)).scalar_one()
        queues = conn.execute(sa.select(task_queues.c.cpu_time)).scalars().all()
    assert statuses == {("Waiting", "Pilot Agent Submission")}
    assert queued == 1500 and queues == [3600]


def test_confirmation_reads_each_job_once(engine: Engine) -> None:
    """Confirming 1,500 children: their status is read once by the confirmation (locking)
    and once by the optimiser (no rescheduled job among them: no second read, no query of
    reschedule times), their records once; no JDL is read."""
    from tests.wms.logic.test_bulk_statements import Statements

    jdl = '[Executable = "run"; Parameters = 1500; ParameterStart = 0; ParameterStep = 1;]'
    ids = submit(engine, jdl, ALICE, LIMITS, now=NOW).job_ids
    with Statements(engine) as stmts:
        assert confirm(engine, ids) == ids
    selects = [s for s, _n in stmts.starting("SELECT")]
    status_reads = [s for s in selects if "jobs.minor_status" in s]
    assert len(status_reads) == 2 * 2  # two reads of two chunks (was three reads)
    assert not [s for s in selects if "reschedule_time" in s]
    assert not [s for s in selects if "processed_jdl" in s]
    assert len([s for s in selects if "job_jdls.scheduling" in s]) == 2


def test_records_give_what_describing_the_stored_jdl_gives(engine: Engine) -> None:
    """The round trip the optimiser relies on: for every child, the record's fields equal
    those of its processed JDL described again."""
    for text in CORPUS:
        ids = submit(engine, text, ALICE, LIMITS, now=NOW).job_ids
        with engine.connect() as conn:
            records = jobs_db.scheduling_of(conn, ids)
            processed = jobs_db.jdls_of(conn, ids)
        assert sorted(records) == ids
        for job_id in ids:
            again = describe_job(parse_jdl(processed[job_id]), owner="alice",
                                 owner_group="demo_user", vo="demo", limits=LIMITS)
            kept = scheduling_record.decode(records[job_id], owner="alice",
                                            owner_group="demo_user", vo="demo", limits=LIMITS)
            assert kept is not None
            for name in (*scheduling_record.FIELDS, "owner", "owner_group", "vo"):
                assert getattr(kept, name) == getattr(again, name), (text, name)
            assert kept.requirement_tags == again.requirement_tags
            assert kept.site_summary == again.site_summary
            assert (tq_key(matching.tq_job_from_description(job_id, kept))
                    == tq_key(matching.tq_job_from_description(job_id, again)))


def _state(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Everything a confirmation writes, without the random pick keys (the other database
    may be of the other kind: SQLite beside MariaDB)."""
    with engine.connect() as conn:
        return {
            "jobs": [tuple(r) for r in conn.execute(
                sa.select(jobs.c.job_id, jobs.c.status, jobs.c.minor_status, jobs.c.site,
                          jobs.c.last_update_time, jobs.c.end_exec_time, jobs.c.user_priority)
                .order_by(jobs.c.job_id))],
            "logging": [tuple(r) for r in conn.execute(
                sa.select(job_logging.c.job_id, job_logging.c.status, job_logging.c.minor_status,
                          job_logging.c.application_status, job_logging.c.status_time,
                          job_logging.c.source).order_by(job_logging.c.id))],
            "queues": [tuple(r) for r in conn.execute(
                sa.select(tq_jobs.c.job_id, task_queues.c.req_hash, task_queues.c.cpu_time,
                          task_queues.c.job_priority, tq_jobs.c.priority)
                .join(task_queues, task_queues.c.tq_id == tq_jobs.c.tq_id)
                .order_by(tq_jobs.c.job_id))],
            "requirements": sorted(tuple(r) for r in conn.execute(
                sa.select(task_queues.c.req_hash, tq_requirements.c.kind,
                          tq_requirements.c.value)
                .join(task_queues, task_queues.c.tq_id == tq_requirements.c.tq_id)
            )),  # sorted here: MariaDB's collation orders texts otherwise
        }


def test_same_outcome_as_describing_every_stored_jdl_again(
        engine: Engine, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two databases, the same submissions; in the second every record is dropped before
    the confirmation (the old path: each stored JDL parsed and described again). Job rows,
    logging records and task queues come out the same, input-data refusals and
    restrictions included."""
    other = make_engine(f"sqlite:///{tmp_path / 'fallback.db'}")
    init_schema(other, WMS_SCHEMA)
    try:
        for eng in (engine, other):
            all_ids: list[int] = []
            for text in CORPUS:
                all_ids += submit(eng, text, ALICE, LIMITS, now=NOW).job_ids
            if eng is other:
                with eng.begin() as conn:
                    conn.execute(sa.update(job_jdls).values(scheduling=None))
            described = Described(monkeypatch)
            assert confirm(eng, all_ids) == all_ids
            assert described.calls == (len(all_ids) if eng is other else 0)
        mine, theirs = _state(engine), _state(other)
        assert mine == theirs
        statuses = {row[2] for row in mine["jobs"]}
        assert {"Pilot Agent Submission", input_data.NOT_AVAILABLE,
                input_data.IMPOSSIBLE} <= statuses  # both branches of the check were taken
        assert any(row[3] == "S1" for row in mine["jobs"])  # restricted to its data's site
    finally:
        other.dispose()


def test_other_limits_or_no_record_describe_the_jdl_again(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record validated under other limits (changed between submission and confirmation),
    or a job whose JDL was replaced, is described from its JDL, as before."""
    first = submit(engine, CORPUS[0], ALICE, LIMITS, now=NOW).job_ids
    second = submit(engine, CORPUS[4], ALICE, LIMITS, now=NOW).job_ids
    with engine.begin() as conn:
        jobs_db.set_jdls(conn, processed=jobs_db.jdls_of(conn, second[:1]))
        assert sorted(jobs_db.scheduling_of(conn, first + second)) == first + second[1:]
    described = Described(monkeypatch)
    tighter = JobLimits(max_parametric_jobs=1500, max_input_data=100)
    assert confirm(engine, first + second, limits=tighter) == first + second
    assert described.calls == len(first + second)
    with engine.connect() as conn:
        assert {r.status for r in jobs_db.status_of(conn, first + second).values()} == {
            "Waiting"}


def test_single_jobs_store_no_record(engine: Engine) -> None:
    """Single jobs are optimised in their submission's transaction: nothing to keep."""
    ids = submit(engine, '[Executable = "run";]', ALICE, LIMITS, now=NOW).job_ids
    with engine.connect() as conn:
        assert jobs_db.scheduling_of(conn, ids) == {}


def test_migration_adds_the_record_column_and_downgrade_drops_it(engine: Engine) -> None:
    """Children submitted before the column confirm from their JDL after the upgrade."""
    step = WMS_SCHEMA.migrations.index(SCHEDULING_STEP)  # its number may change on merges
    assert migrations.downgrade_schema(engine, WMS_SCHEMA, step) == step
    with engine.connect() as conn:
        assert "scheduling" not in {c["name"] for c in sa.inspect(conn).get_columns("job_jdls")}
    old_schema = sa.MetaData()
    old_jdls = sa.Table("job_jdls", old_schema, sa.Column("job_id", sa.Integer),
                        sa.Column("original_jdl", sa.Text), sa.Column("processed_jdl", sa.Text))
    with engine.begin() as conn:
        conn.execute(sa.insert(jobs).values(
            job_id=1, owner="alice", owner_group="demo_user", vo="demo", submission_time=NOW,
            last_update_time=NOW, status="Submitting",
            minor_status="Bulk transaction confirmation"))
        conn.execute(sa.insert(old_jdls).values(
            job_id=1, original_jdl='[Executable = "run";]',
            processed_jdl='[Executable = "run"; JobID = 1; CPUTime = 3600;]'))
    assert upgrade_schema(engine, WMS_SCHEMA) == WMS_SCHEMA.latest
    with engine.connect() as conn:
        assert "scheduling" in {c["name"] for c in sa.inspect(conn).get_columns("job_jdls")}
        assert jobs_db.scheduling_of(conn, [1]) == {}
    assert confirm(engine, [1]) == [1]
    with engine.connect() as conn:
        assert jobs_db.status_of(conn, [1])[1].status == "Waiting"
        assert conn.execute(sa.select(task_queues.c.cpu_time)).scalars().all() == [3600]
