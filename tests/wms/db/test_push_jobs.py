"""Push mode's table on both backends: rows, compare-and-set phases, attempts, counts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from core.db import init_schema, make_engine
from wms.db import push_jobs as push_db
from wms.db.schema import WMS_SCHEMA


def test_push_rows_on_both_backends(db_url: str) -> None:
    engine = make_engine(db_url)
    init_schema(engine, WMS_SCHEMA)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    with engine.begin() as conn:
        for job in (7, 8, 9):
            push_db.add_job(conn, job, "S", "ce", "q", agent="a1", now=now)
        push_db.add_job(conn, 10, "S", "ce", "other", agent="a1", now=now)
    with engine.begin() as conn:
        assert push_db.set_phase(conn, 7, "New", "Submitted", now=now, batch_ref="slurm://h/1",
                                 remote_dir="/w/push/7", agent="a2")
        assert not push_db.set_phase(conn, 7, "New", "Submitted", now=now)  # a peer's turn
        assert push_db.set_phase(conn, 8, "New", "Killed", now=now)
        with pytest.raises(ValueError, match="unknown push phase"):
            push_db.set_phase(conn, 9, "New", "Gone", now=now)
        assert push_db.count_attempt(conn, 9) == 1
        assert push_db.count_attempt(conn, 9) == 2
        push_db.set_next_beat(conn, 7, now + timedelta(seconds=60))
    with engine.connect() as conn:
        rows = push_db.rows(conn, "S", "ce", "q")
        counts = push_db.in_flight(conn, "S", "ce", "q")
    assert [(r.job_id, r.phase, r.agent, r.attempts) for r in rows] == [
        (7, "Submitted", "a2", 0), (8, "Killed", "a1", 0), (9, "New", "a1", 2)]
    assert rows[0].batch_ref == "slurm://h/1" and rows[0].remote_dir == "/w/push/7"
    assert rows[0].next_beat == now + timedelta(seconds=60)
    assert counts == {"Submitted": 1, "Killed": 1, "New": 1}
    with engine.begin() as conn:
        push_db.forget(conn, 7)
    with engine.connect() as conn:
        assert [r.job_id for r in push_db.rows(conn, "S", "ce", "q")] == [8, 9]
    engine.dispose()
