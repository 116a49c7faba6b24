"""Task-queue queries and enqueue/dequeue on SQLite and MariaDB: find-or-create under
concurrency, membership, removal of empty queues, SKIP LOCKED claims, the CPU buckets."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from tests.support.mariadb import fresh_database

from core.db import init_schema, make_engine, write_transaction
from wms.db import jobs as jobs_db
from wms.db import task_queues as tq_db
from wms.db.schema import WMS_SCHEMA
from wms.db.tq_tables import task_queues, tq_jobs, tq_requirements
from wms.logic.task_queues import (
    CPU_SEGMENTS,
    TQJob,
    cpu_bucket,
    dequeue_jobs,
    enqueue_jobs,
    pick_key,
    remove_empty_task_queues,
    tq_key,
    tq_weights,
)

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_schema(eng, WMS_SCHEMA)
    yield eng
    eng.dispose()


def new_jobs(engine: Engine, count: int) -> list[int]:
    with write_transaction(engine) as conn:
        return jobs_db.insert_jobs(conn, [jobs_db.NewJob(
            owner="alice", owner_group="demo_user", vo="demo", status="Waiting",
            minor_status="Pilot Agent Submission", original_jdl="[]") for _ in range(count)],
            now=NOW, source="test")


def count(engine: Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def job(job_id: int, **kw: object) -> TQJob:
    return TQJob(**{"job_id": job_id, "owner": "alice", "owner_group": "demo_user",  # type: ignore[arg-type]
                    "vo": "demo", "cpu_time": 3600, **kw})


def test_cpu_buckets_and_keys() -> None:
    assert len(CPU_SEGMENTS) == 13 and CPU_SEGMENTS[0] == 360
    assert CPU_SEGMENTS[-1] == 1_080_000
    assert [cpu_bucket(x) for x in (1, 360, 361, 86400, 86401, 2_000_000)] == [
        360, 360, 1800, 86400, 172800, 1_080_000]
    assert tq_key(job(1, sites=["B", "A"])) == tq_key(job(2, sites=["A", "B", "A"]))
    assert tq_key(job(1, cpu_time=3000)) == tq_key(job(1, cpu_time=3600))
    assert tq_key(job(1)) != tq_key(job(1, priority=2))
    assert tq_key(job(1, tags=["GPU"])) != tq_key(job(1, platforms=["GPU"]))


def test_weights_and_pick_keys() -> None:
    weights = tq_weights([(1, "g", "a", 1), (2, "g", "a", 3), (3, "h", "b", 0)],
                         {"g": 400, "h": 1000})
    assert weights == {1: 100.0, 2: 300.0, 3: 0.001}
    rng = random.Random(3)
    firsts = sum(pick_key(9, rng) < pick_key(1, rng) for _ in range(2000))
    assert 1700 < firsts < 1900  # P = 9/10


def test_enqueue_find_or_create_and_requirements(engine: Engine) -> None:
    ids = new_jobs(engine, 4)
    with write_transaction(engine) as conn:
        enqueue_jobs(conn, [job(ids[0], sites=["S1"], tags=["GPU", "2GB"]),
                            job(ids[1], sites=["S1"], tags=["2GB", "GPU"]),
                            job(ids[2])], NOW)
    with write_transaction(engine) as conn:
        enqueue_jobs(conn, [job(ids[3], sites=["S1"], tags=["GPU", "2GB"])], NOW)
    assert count(engine, task_queues) == 2 and count(engine, tq_jobs) == 4
    with engine.connect() as conn:
        info = tq_db.task_queue_info(conn)
    by_jobs = sorted(info.values(), key=lambda i: i["jobs"])
    assert [i["jobs"] for i in by_jobs] == [1, 3]
    assert by_jobs[1]["requirements"] == {"JobType": ["User"], "Site": ["S1"],
                                          "Tag": ["2GB", "GPU"]}
    # moving a job to other requirements, then dequeuing
    with write_transaction(engine) as conn:
        enqueue_jobs(conn, [job(ids[3], grid_ces=["ce"])], NOW)
        dequeue_jobs(conn, [ids[2]])
    assert count(engine, tq_jobs) == 3
    assert remove_empty_task_queues(engine) == 1
    assert count(engine, task_queues) == 2
    assert count(engine, tq_requirements) == 6  # S1, GPU, 2GB, User; ce, User


def test_concurrent_enqueuers_share_one_queue(engine: Engine) -> None:
    ids = new_jobs(engine, 40)
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def enqueue(part: list[int]) -> None:
        try:
            barrier.wait(10)
            with write_transaction(engine) as conn:
                enqueue_jobs(conn, [job(j, sites=["S1", "S2"], tags=["GPU"]) for j in part], NOW)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=enqueue, args=(ids[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert count(engine, task_queues) == 1 and count(engine, tq_jobs) == 40
    assert count(engine, tq_requirements) == 4


def test_removal_is_refused_while_jobs_remain_and_jobs_cascade(engine: Engine) -> None:
    ids = new_jobs(engine, 2)
    with write_transaction(engine) as conn:
        enqueue_jobs(conn, [job(ids[0]), job(ids[1])], NOW)
        [tq_id] = tq_db.find_task_queues(conn, [tq_key(job(ids[0]))]).values()
        assert not tq_db.remove_empty_task_queue(conn, tq_id)
    with write_transaction(engine) as conn:
        jobs_db.delete_jobs(conn, ids)  # the tq_jobs rows go with the jobs
    assert count(engine, tq_jobs) == 0
    with write_transaction(engine) as conn:
        assert tq_db.empty_task_queue_ids(conn) == [tq_id]
        assert tq_db.remove_empty_task_queue(conn, tq_id)
        assert not tq_db.remove_empty_task_queue(conn, tq_id)


@pytest.fixture
def mariadb_engine(mariadb_admin_url: str) -> Iterator[Engine]:
    with fresh_database(mariadb_admin_url) as url:
        eng = make_engine(url)
        init_schema(eng, WMS_SCHEMA)
        yield eng
        eng.dispose()


def test_claims_skip_rows_locked_by_another_matcher(mariadb_engine: Engine) -> None:
    ids = new_jobs(mariadb_engine, 3)
    with write_transaction(mariadb_engine) as conn:
        enqueue_jobs(conn, [job(j) for j in ids], NOW)
        [tq_id] = tq_db.find_task_queues(conn, [tq_key(job(ids[0]))]).values()
    conns = [mariadb_engine.connect() for _ in range(4)]
    try:
        for conn in conns:
            conn.begin()
        claimed = [tq_db.claim_next_job(conn, tq_id) for conn in conns]
        got = [row.job_id for row in claimed if row is not None]
        assert sorted(got) == sorted(ids) and claimed[3] is None  # nobody waited
        conns[0].rollback()
        conns[3].rollback()
        conns[3].begin()
        again = tq_db.claim_next_job(conns[3], tq_id)
        assert again is not None and again.job_id == got[0]
    finally:
        for conn in conns:
            conn.close()


def test_a_claim_skips_a_job_whose_row_another_transaction_holds(mariadb_engine: Engine
                                                                  ) -> None:
    """The claim's one statement locks the head job's queue and job rows, and only those: a
    job whose row a status change holds is passed over for the queue's next job (nobody
    waits), and is claimable again once the row is released."""
    ids = new_jobs(mariadb_engine, 4)
    with write_transaction(mariadb_engine) as conn:
        enqueue_jobs(conn, [job(j) for j in ids], NOW)
        [tq_id] = tq_db.find_task_queues(conn, [tq_key(job(ids[0]))]).values()
        order = [int(j) for j in conn.execute(sa.select(tq_jobs.c.job_id)
                                              .order_by(tq_jobs.c.pick_key)).scalars()]
    holder, matcher, other = (mariadb_engine.connect() for _ in range(3))
    try:
        holder.begin()
        holder.exec_driver_sql("SELECT job_id FROM jobs WHERE job_id = %s FOR UPDATE",
                               (order[0],))
        matcher.begin()
        matcher.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 5")
        claimed = tq_db.claim_next_job(matcher, tq_id)
        assert claimed is not None and claimed.job_id == order[1]
        assert claimed.status == "Waiting"
        # only the claimed job's rows (and the head's queue row) are held: a third
        # transaction takes the third job at once
        other.begin()
        third = tq_db.claim_next_job(other, tq_id)
        assert third is not None and third.job_id == order[2]
        holder.rollback()
        other.rollback()
        matcher.rollback()
        matcher.begin()
        again = tq_db.claim_next_job(matcher, tq_id)
        assert again is not None and again.job_id == order[0]
    finally:
        for conn in (holder, matcher, other):
            conn.close()
