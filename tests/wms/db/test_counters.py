"""The live job counters agree with ``GROUP BY`` over the jobs after every kind of write, under
concurrent writers and folders, and after a migration of a database made before them."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.db import init_schema, make_engine, schema_version, upgrade_schema, utcnow
from core.db import write_transaction as write
from wms.db import counters, job_queries
from wms.db import jobs as jobs_db
from wms.db import task_queues as tq_db
from wms.db.filters import Scope
from wms.db.schema import WMS_SCHEMA
from wms.db.tables import jobs

DIMS = list(counters.COUNTED)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_schema(eng, WMS_SCHEMA)
    yield eng
    eng.dispose()


def truth(conn: Connection, group_by: list[str] = DIMS) -> dict[tuple[Any, ...], int]:
    cols = [jobs.c[counters.COUNTED[n]] for n in group_by]
    return {tuple(row[:-1]): int(row[-1])
            for row in conn.execute(sa.select(*cols, sa.func.count()).group_by(*cols))}


def counted(conn: Connection, group_by: list[str] = DIMS) -> dict[tuple[Any, ...], int]:
    return {tuple(k[n] for n in group_by): v
            for k, v in counters.group_counts(conn, group_by, [], None)}


def assert_consistent(engine: Engine) -> None:
    """Counters + pending deltas equal the jobs table, before and after a fold."""
    with engine.connect() as conn:
        assert counted(conn) == truth(conn)
    with write(engine) as conn:
        counters.fold(conn)
    with engine.connect() as conn:
        assert counted(conn) == truth(conn)
        assert not counters.pending(conn)
        assert all(n > 0 for n in conn.execute(sa.select(counters.job_counters.c.n)).scalars())


def new_jobs(n: int, owner: str = "alice", **kw: Any) -> list[jobs_db.NewJob]:
    return [jobs_db.NewJob(owner=owner, owner_group=kw.get("group", "demo_user"), vo="demo",
                           status="Received", minor_status="Job accepted", original_jdl="[]",
                           job_group=kw.get("job_group", ""), site=kw.get("site", "ANY"))
            for _ in range(n)]


def test_every_write_path_keeps_the_counts(engine: Engine) -> None:
    now = utcnow()
    with write(engine) as conn:
        alice = jobs_db.insert_jobs(conn, new_jobs(30, job_group="g1"), now=now, source="t")
        bob = jobs_db.insert_jobs(conn, new_jobs(20, "bob", group="other"), now=now,
                                  source="t")
    assert_consistent(engine)
    with write(engine) as conn:  # the optimiser's path: status and site by update_jobs
        jobs_db.update_jobs(conn, alice[:25], status="Waiting",
                            minor_status="Pilot Agent Submission")
        jobs_db.update_jobs(conn, alice[:5], site="LCG.CERN.cern")
        jobs_db.update_jobs(conn, alice[:25], heartbeat_time=now)  # not counted: no delta
    assert_consistent(engine)
    with write(engine) as conn:  # the state-update path: checked changes, several values
        current = jobs_db.status_of(conn, bob)
        changes = [jobs_db.StatusChange(j, "Killed" if i % 2 else None, "Marked for kill")
                   for i, j in enumerate(bob)]
        jobs_db.apply_status_changes(conn, changes, current, now=now, source="t",
                                     extra={"site": "LCG.IN2P3.fr"})
    assert_consistent(engine)
    with write(engine) as conn:  # the matcher's compare-and-set claim
        for job_id in alice[5:15]:
            assert tq_db.take_job(conn, job_id, from_status="Waiting", status="Matched",
                                  minor="Assigned", application="Unknown",
                                  site="DIRAC.Demo.org", now=now, source="Matcher")
        assert not tq_db.take_job(conn, alice[27], from_status="Waiting", status="Matched",
                                  minor="Assigned", application="Unknown", site="X",
                                  now=now, source="Matcher")  # Received: nothing changes
    assert_consistent(engine)
    with write(engine) as conn:
        jobs_db.delete_jobs(conn, alice[:3] + bob[:4])
    assert_consistent(engine)
    with engine.connect() as conn:
        assert counters.count(conn, [("Status", "eq", "Matched")], None) == 10
        assert counters.count(conn, [("Status", "in", ["Matched", "Waiting"])],
                              Scope(owner="alice")) == 22
        assert counters.count(conn, [("Site", "eq", "LCG.IN2P3.fr")],
                              Scope(group="other")) == 16
        assert counters.count(conn, [("JobGroup", "eq", "g1"), ("Status", "neq", "Matched")],
                              Scope(owner="alice")) == 17


def test_search_totals_exact_from_counters_or_capped(engine: Engine,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with write(engine) as conn:
        ids = jobs_db.insert_jobs(conn, new_jobs(40), now=utcnow(), source="t")
        jobs_db.insert_jobs(conn, new_jobs(7, "bob"), now=utcnow(), source="t")
        jobs_db.update_jobs(conn, ids[:12], status="Done", minor_status="Execution Complete")
    scope = Scope(owner="alice")
    with engine.connect() as conn:
        total, rows = job_queries.search_jobs(
            conn, [("Status", "eq", "Done")], columns=["JobID"], scope=scope,
            sort=[("JobID", "desc")], limit=5)
        assert total == 12 and [r["JobID"] for r in rows] == sorted(ids[:12])[::-1][:5]
        assert job_queries.total_is_exact(total, [("Status", "eq", "Done")], scope)
        monkeypatch.setattr(job_queries, "TOTAL_CAP", 10)
        by_name = [("JobName", "eq", "Name")]  # not counted: counted by rows, up to the cap
        total, rows = job_queries.search_jobs(conn, by_name, scope=scope, limit=3)
        assert total == 11 and len(rows) == 3
        assert not job_queries.total_is_exact(total, by_name, scope)
        total, _ = job_queries.search_jobs(conn, by_name, scope=Scope(owner="bob"))
        assert total == 7 and job_queries.total_is_exact(total, by_name, Scope(owner="bob"))
        # a job token's scope (job IDs) is counted by rows too
        total, _ = job_queries.search_jobs(conn, [], scope=Scope(job_ids=(ids[0], ids[1])))
        assert total == 2
        # getCounters by status comes from the counters and agrees with the rows
        assert job_queries.counters(conn, ["Status"], [], scope) == [
            ({"Status": "Done"}, 12), ({"Status": "Received"}, 28)]


def _writer(engine: Engine, ids: list[int], seed: int, rounds: int) -> None:
    rng = random.Random(seed)
    statuses = ["Waiting", "Running", "Done", "Failed", "Stalled"]
    for _ in range(rounds):
        chosen = rng.sample(ids, 5)
        with write(engine) as conn:
            current = jobs_db.status_of(conn, chosen, for_update=True)
            changes = [jobs_db.StatusChange(j, rng.choice(statuses), f"m{rng.randrange(3)}")
                       for j in sorted(current)]
            jobs_db.apply_status_changes(conn, changes, current, now=utcnow(), source="t")


def _folder(engine: Engine, stop: threading.Event, folded: list[int]) -> None:
    while not stop.is_set():
        with write(engine) as conn:
            folded.append(counters.fold(conn, limit=50))


def test_concurrent_writers_and_folders_lose_nothing(engine: Engine) -> None:
    with write(engine) as conn:
        ids = jobs_db.insert_jobs(conn, new_jobs(200), now=utcnow(), source="t")
    stop, folded = threading.Event(), []
    folders = [threading.Thread(target=_folder, args=(engine, stop, folded)) for _ in range(2)]
    writers = [threading.Thread(target=_writer, args=(engine, ids, seed, 40))
               for seed in range(3)]
    for thread in folders + writers:
        thread.start()
    for thread in writers:
        thread.join(120)
    stop.set()
    for thread in folders:
        thread.join(60)
    assert sum(folded) > 0, "the folders never ran beside the writers"
    assert_consistent(engine)
    with engine.connect() as conn:
        assert sum(counted(conn, ["Owner"]).values()) == 200


def test_migration_backfills_counters_of_an_existing_database(engine: Engine) -> None:
    now = utcnow()
    with write(engine) as conn:
        ids = jobs_db.insert_jobs(conn, new_jobs(15) + new_jobs(5, "bob"), now=now,
                                  source="t")
        jobs_db.update_jobs(conn, ids[:4], status="Done")
    with engine.begin() as conn:  # back to a database of version 0: no counters at all
        for trigger in ("jobs_count_insert", "jobs_count_delete", "jobs_count_update"):
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {trigger}")
        for table in (counters.job_counters, counters.job_count_deltas,
                      counters.job_counter_fold):
            table.drop(conn)
        for index in jobs.indexes:
            if index.name in ("ix_jobs_owner_id", "ix_jobs_owner_status"):
                index.drop(conn)
        conn.execute(sa.text("UPDATE pilotwms_schema SET version = 0 "
                             "WHERE system = 'WorkloadManagement'"))
        jobs_db.update_jobs(conn, ids[4:6], status="Failed")  # written without triggers
    assert upgrade_schema(engine, WMS_SCHEMA) == WMS_SCHEMA.latest
    assert schema_version(engine, "WorkloadManagement") == WMS_SCHEMA.latest
    with engine.connect() as conn:
        assert counted(conn) == truth(conn)
        names = {ix["name"] for ix in sa.inspect(conn).get_indexes("jobs")}
        assert {"ix_jobs_owner_id", "ix_jobs_owner_status"} <= names
    with write(engine) as conn:  # and the triggers count from now on
        jobs_db.update_jobs(conn, ids[6:9], status="Running")
        jobs_db.delete_jobs(conn, ids[:1])
    assert_consistent(engine)
    with engine.connect() as conn:
        assert Counter({k[0]: v for k, v in counted(conn, ["Status"]).items()}) == Counter(
            {"Done": 3, "Failed": 2, "Running": 3, "Received": 11})


def test_two_folders_never_fold_the_same_deltas(engine: Engine) -> None:
    """A second folder waits for the first one's commit, then finds nothing left to fold (it
    would add the same sums again if it read the deltas before that commit)."""
    with write(engine) as conn:
        jobs_db.insert_jobs(conn, new_jobs(25), now=utcnow(), source="t")
    second: list[int] = []
    with write(engine) as first:
        assert counters.fold(first) == 25
        thread = threading.Thread(target=lambda: second.extend(_fold_once(engine)))
        thread.start()
        thread.join(1.0)  # the second folder is now blocked on the first one's lock
    thread.join(60)
    assert second == [0]
    assert_consistent(engine)


def _fold_once(engine: Engine) -> list[int]:
    with write(engine) as conn:
        return [counters.fold(conn)]


def test_repair_command_recounts(engine: Engine, db_url: str) -> None:
    from core.cli import dbcmd
    from core.config.schema import Config

    with write(engine) as conn:
        ids = jobs_db.insert_jobs(conn, new_jobs(9), now=utcnow(), source="t")
        counters.fold(conn)
        conn.execute(sa.update(counters.job_counters).values(n=1))  # counts gone wrong
        jobs_db.update_jobs(conn, ids[:2], status="Done")  # and a pending delta
    with engine.connect() as conn:
        assert counted(conn) != truth(conn)
    assert ("WorkloadManagement", "job-counters") in [r[:2] for r in dbcmd.repairs()]
    report = dbcmd.repair(Config.model_validate({"Database": db_url}), "job-counters")
    assert report.startswith("job counters rebuilt: 2 ")
    assert_consistent(engine)
    with pytest.raises(Exception, match="no repair named 'nope'; known: job-counters"):
        dbcmd.repair(Config.model_validate({"Database": db_url}), "nope")
