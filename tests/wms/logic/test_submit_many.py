"""``submission.submit_many`` (a production system's bulk submission) on both databases:
what is stored for each job is what the single-job path stores, in one transaction."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.db import init_schema, make_engine
from core.exceptions import InvalidJDLError
from wms.db import jobs as jobs_db
from wms.db.schema import WMS_SCHEMA
from wms.db.tables import job_logging, jobs
from wms.logic.jdl import parse_jdl
from wms.logic.job_description import JobLimits, processed_jdl
from wms.logic.submission import SubmitResult, Submitter, describe, submit_many

ALICE = Submitter("alice", "demo_user", "demo")
LIMITS = JobLimits()
NOW = datetime(2026, 12, 3, 17, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_schema(eng, WMS_SCHEMA)
    yield eng
    eng.dispose()


def job_text(n: int) -> str:
    files = ", ".join(f'"LFN:/demo/data/{n}/f{k}"' for k in range(n % 4))
    sandbox = f'InputSandbox = {{"SB:SE|/sb/{n}.tar", "local.sh"}};' if n % 3 == 0 else ""
    return (f'[Executable = "run.sh"; Arguments = "say \\"{n}\\""; JobName = "t_{n:04d}";'
            f' JobGroup = "00000007"; InputData = {{{files}}}; TaskID = {n}; {sandbox}'
            f' Site = "{"LCG.A.a" if n % 2 else "ANY"}"; Tags = {{"t{n % 5}"}};]')


def test_every_job_stored_as_the_single_path_stores_it(engine: Engine) -> None:
    # 1,205 jobs: more than one 1,000-row statement per table
    jdls = [parse_jdl(job_text(n)) for n in range(1205)]
    seen: list[SubmitResult] = []

    def stored(conn: Connection, result: SubmitResult, now: datetime) -> None:
        assert now == NOW
        seen.append(result)

    result = submit_many(engine, jdls, ALICE, LIMITS, NOW, on_stored=stored)
    assert seen == [result]
    ids = result.job_ids
    assert len(ids) == 1205 and ids == sorted(ids) and len(set(ids)) == 1205
    with engine.connect() as conn:
        processed = jobs_db.jdls_of(conn, ids)
        originals = jobs_db.jdls_of(conn, ids, processed=False)
        data = jobs_db.input_data_of(conn, ids)
        rows = {r.job_id: r for r in conn.execute(sa.select(jobs).where(jobs.c.job_id.in_(ids)))}
        logged = conn.execute(sa.select(job_logging.c.job_id, job_logging.c.status,
                                        job_logging.c.minor_status, job_logging.c.status_time,
                                        job_logging.c.source)).all()
    for n, (job_id, jdl) in enumerate(zip(ids, jdls, strict=True)):
        desc = describe(jdl, ALICE, LIMITS)
        assert result.descriptions[job_id] == desc
        assert originals[job_id] == jdl.to_text()
        assert processed[job_id] == processed_jdl(desc, job_id).to_text()
        assert parse_jdl(processed[job_id])["JobID"] == job_id
        assert data.get(job_id, []) == sorted(desc.input_data)
        row = rows[job_id]
        assert (row.status, row.minor_status, row.owner, row.job_name, row.job_group,
                row.site, row.submission_time, row.last_update_time) == (
            "Received", "Job accepted", "alice", f"t_{n:04d}", "00000007", desc.site_summary,
            NOW, NOW)
        assert result.input_sandboxes.get(job_id) == (
            [f"SB:SE|/sb/{n}.tar"] if n % 3 == 0 else None)
    assert sorted(logged) == sorted(
        (j, "Received", "Job accepted", NOW, "JobManager") for j in ids)


def test_a_bad_job_fails_the_batch_and_stores_nothing(engine: Engine) -> None:
    jdls = [parse_jdl(job_text(n)) for n in range(5)]
    jdls.append(parse_jdl('[Executable = "run.sh"; CPUTime = "lots";]'))
    with pytest.raises(InvalidJDLError, match="CPUTime"):
        submit_many(engine, jdls, ALICE, LIMITS, NOW)

    def fail(conn: Connection, result: SubmitResult, now: datetime) -> None:
        raise RuntimeError("optimiser down")

    with pytest.raises(RuntimeError):
        submit_many(engine, jdls[:5], ALICE, LIMITS, NOW, on_stored=fail)
    with engine.connect() as conn:
        for table in (jobs, job_logging):
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 0
