"""The WMS's database layer itself, on SQLite and MariaDB: monitoring queries (filters, sorts,
pages, counters, scopes), the pilot tables (names by reference or stamp, jobs, output), the
site mask and matching delays, and the sandbox tables (mappings, cleanup candidates)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy.engine import Engine

from core.db import init_schema, make_engine, write_transaction
from core.exceptions import InvalidArgumentError
from wms.db import job_queries as q
from wms.db import jobs as jobs_db
from wms.db import pilots as pilots_db
from wms.db import sandboxes as sb_db
from wms.db import site_mask as mask_db
from wms.db.schema import WMS_SCHEMA

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_schema(eng, WMS_SCHEMA)
    yield eng
    eng.dispose()


def add_jobs(engine: Engine) -> list[int]:
    """Five jobs: alice x3 (two Waiting at site A, one Done at B), bob x2 (Running at A,
    Failed at C)."""
    spec = [("alice", "g1", "Waiting", "LCG.A.org", 3), ("alice", "g1", "Waiting", "LCG.A.org", 1),
            ("alice", "g2", "Done", "LCG.B.org", 2), ("bob", "g1", "Running", "LCG.A.org", 5),
            ("bob", "g3", "Failed", "LCG.C.org", 4)]
    with write_transaction(engine) as conn:
        return jobs_db.insert_jobs(conn, [
            jobs_db.NewJob(owner=o, owner_group=g, vo="demo", status=s, minor_status="m",
                           original_jdl="[]", site=site, user_priority=p, job_name=f"j{i}")
            for i, (o, g, s, site, p) in enumerate(spec)], now=T0, source="test")


def test_filters_sorts_pages_and_counters(engine: Engine) -> None:
    ids = add_jobs(engine)
    a1, a2, a3, b1, b2 = ids
    with engine.connect() as conn:
        assert q.search_jobs(conn, [("Status", "eq", "Waiting")]) == (
            2, [{"JobID": a1}, {"JobID": a2}])
        assert q.search_jobs(conn, [("Status", "neq", "Waiting")])[0] == 3
        assert q.search_jobs(conn, [("Site", "in", ["LCG.B.org", "LCG.C.org"])])[0] == 2
        assert q.search_jobs(conn, [("Site", "not in", "LCG.A.org")])[0] == 2
        assert q.search_jobs(conn, [("JobName", "like", "j_")])[0] == 5
        assert q.search_jobs(conn, [("UserPriority", "gt", 3)])[0] == 2
        assert q.search_jobs(conn, [("UserPriority", "ge", 3)])[0] == 3
        assert q.search_jobs(conn, [("UserPriority", "lt", 2)])[0] == 1
        assert q.search_jobs(conn, [("UserPriority", "le", 2)])[0] == 2
        # sort, then a page of it: the total counts every match
        total, page = q.search_jobs(conn, [], columns=["JobID", "UserPriority"],
                                    sort=[("UserPriority", "desc")], limit=2, offset=1)
        assert total == 5 and page == [{"JobID": b2, "UserPriority": 4},
                                       {"JobID": a1, "UserPriority": 3}]
        # scopes: whose jobs may be seen
        scope = q.owner_scope("alice", None)
        assert q.search_jobs(conn, [], scope=scope)[0] == 3
        assert q.search_jobs(conn, [], scope=q.owner_scope(None, "g1"))[0] == 3
        assert q.search_jobs(conn, [], scope=q.owner_scope("alice", "g3"))[0] == 4
        assert q.owner_scope(None, None) is None
        assert q.search_jobs(conn, [], scope=q.job_id_scope([a3, b1]))[0] == 2
        # counters and distinct values
        counts = dict((tuple(k.values()), n) for k, n in q.counters(conn, ["Status"], []))
        assert counts == {("Waiting",): 2, ("Done",): 1, ("Running",): 1, ("Failed",): 1}
        per_site = q.counters(conn, ["Site", "Status"], [("Owner", "eq", "alice")])
        assert sorted((tuple(k.values()), n) for k, n in per_site) == [
            (("LCG.A.org", "Waiting"), 2), (("LCG.B.org", "Done"), 1)]
        assert q.distinct(conn, "Site") == ["LCG.A.org", "LCG.B.org", "LCG.C.org"]
        assert q.distinct(conn, "Owner", [("Site", "eq", "LCG.A.org")],
                          scope=q.owner_scope("bob", None)) == ["bob"]
        # attributes of given jobs, only those in scope
        attrs = q.attributes_of(conn, [a1, b1, 999], ["Status", "Owner"],
                                scope=q.owner_scope("alice", None))
        assert attrs == {a1: {"Status": "Waiting", "Owner": "alice"}}
        full = q.attributes_of(conn, [b2])[b2]
        assert full["JobID"] == b2 and full["Site"] == "LCG.C.org"
        # bad input is a clear error
        with pytest.raises(InvalidArgumentError, match="unknown job attribute 'Colour'"):
            q.search_jobs(conn, [("Colour", "eq", "red")])
        with pytest.raises(InvalidArgumentError, match="unknown operator 'approx'"):
            q.search_jobs(conn, [("Status", "approx", "W")])
        with pytest.raises(InvalidArgumentError, match="asc or desc"):
            q.search_jobs(conn, [], sort=[("JobID", "up")])


def test_pilot_records(engine: Engine) -> None:
    [job] = add_jobs(engine)[:1]
    with write_transaction(engine) as conn:
        pilots_db.add_pilots(conn, ["slurm://h/1", "slurm://h/2"], vo="demo",
                             owner_group="pilots", grid_type="Slurm", site="LCG.A.org",
                             ce="ce.a", queue="q", now=T0, stamps={"slurm://h/1": "stamp-1"})
        pilots_db.add_pilots(conn, [], vo="demo", owner_group="p", grid_type="x", site="s",
                             ce="c", queue="q", now=T0)  # nothing to add: no statement
    with write_transaction(engine) as conn:
        # a pilot knows only its stamp: it names the same record as the reference
        ids = pilots_db.pilot_ids(conn, ["stamp-1", "slurm://h/1", "slurm://h/2", "nope"])
        assert ids["stamp-1"] == ids["slurm://h/1"] != ids["slurm://h/2"] and "nope" not in ids
        assert pilots_db.update_pilots(conn, ["stamp-1"], status="Running") == 1
        assert pilots_db.update_pilots(conn, [], status="Done") == 0
        pilots_db.add_job(conn, "stamp-1", job, T0)
        pilots_db.add_job(conn, "stamp-1", job, T0 + timedelta(seconds=5))  # same pair once
        pilots_db.add_job(conn, "unknown", job, T0)  # an unregistered pilot: ignored
        assert pilots_db.store_output(conn, "slurm://h/1", "out", "err")
        assert not pilots_db.store_output(conn, "unknown", "o", "e")
    with engine.connect() as conn:
        info = pilots_db.pilot_info(conn, ["slurm://h/1", "slurm://h/2"])
        assert info["slurm://h/1"]["Status"] == "Running"
        assert info["slurm://h/1"]["OutputReady"] and not info["slurm://h/2"]["OutputReady"]
        assert info["slurm://h/2"]["GridType"] == "Slurm"
        assert pilots_db.pilots_of_queue(conn, "LCG.A.org", "ce.a", "q",
                                         ["Submitted", "Running"]) == {
            "slurm://h/1": "Running", "slurm://h/2": "Submitted"}
        assert pilots_db.pilots_of_queue(conn, "LCG.A.org", "ce.a", "other", ["Running"]) == {}
        assert pilots_db.pilots_without_output(conn, ["Submitted", "Running"]) == [
            ("slurm://h/2", "LCG.A.org", "ce.a", "q")]
        assert pilots_db.pilots_of_job(conn, job) == ["slurm://h/1"]
        assert pilots_db.jobs_of_pilots(conn, ["slurm://h/1", "slurm://h/2", "nope"]) == {
            "slurm://h/1": [job]}
        assert pilots_db.output_of(conn, "slurm://h/1") == ("out", "err")
        assert pilots_db.output_of(conn, "slurm://h/2") is None


def test_site_mask_logging_limits_and_delays(engine: Engine) -> None:
    add_jobs(engine)
    with write_transaction(engine) as conn:
        mask_db.set_site_status(conn, "LCG.A.org", mask_db.BANNED, author="admin",
                                comment="down", now=T0)
        mask_db.set_site_status(conn, "LCG.A.org", mask_db.ACTIVE, author="admin",
                                comment="back", now=T0 + timedelta(hours=1))
        mask_db.set_site_status(conn, "LCG.B.org", mask_db.BANNED, author="x" * 300,
                                comment="", now=T0)
    with engine.connect() as conn:
        assert mask_db.site_statuses(conn) == {"LCG.A.org": "Active", "LCG.B.org": "Banned"}
        assert mask_db.site_statuses(conn, status="Banned") == {"LCG.B.org": "Banned"}
        assert mask_db.site_statuses(conn, ["LCG.A.org", "LCG.Z.org"]) == {
            "LCG.A.org": "Active"}
        assert mask_db.site_statuses(conn, []) == {}
        log = mask_db.site_logging(conn, ["LCG.A.org", "LCG.Z.org"])
        assert [(e["status"], e["comment"]) for e in log["LCG.A.org"]] == [
            ("Banned", "down"), ("Active", "back")]
        assert log["LCG.Z.org"] == [] and mask_db.site_logging(conn, []) == {}
        assert len(mask_db.site_logging(conn, ["LCG.B.org"])["LCG.B.org"][0]["author"]) == 255
        # running limits count the jobs per attribute value at the site
        assert mask_db.running_counts(conn, "LCG.A.org", "Owner", ["alice", "bob", "carol"],
                                      ["Running", "Waiting"]) == {"alice": 2, "bob": 1}
    with write_transaction(engine) as conn:
        mask_db.set_delays(conn, "LCG.A.org", [("Owner", "alice", T0 + timedelta(minutes=5)),
                                               ("JobType", "User", T0 - timedelta(minutes=1))])
        mask_db.set_delays(conn, "LCG.A.org", [("Owner", "alice", T0 + timedelta(minutes=9))])
        mask_db.set_delays(conn, "LCG.A.org", [])
    with engine.connect() as conn:
        assert mask_db.active_delays(conn, "LCG.A.org", T0) == {"Owner": ["alice"]}
        assert mask_db.active_delays(conn, "LCG.A.org", T0 + timedelta(minutes=7)) == {
            "Owner": ["alice"]}  # the later delay replaced the earlier one
        assert mask_db.active_delays(conn, "LCG.A.org", T0 + timedelta(minutes=10)) == {}
        assert mask_db.active_delays(conn, "LCG.B.org", T0) == {}


def test_sandbox_tables(engine: Engine) -> None:
    def insert(pfn: str) -> int:
        return sb_db.insert_sandbox(conn, owner="alice", owner_group="g", vo="demo",
                                    se_name="SE", pfn=pfn, checksum="0" * 32, size=10, now=T0)

    with write_transaction(engine) as conn:
        used, spare, fresh = insert("/a"), insert("/b"), insert("/c")
        assert sb_db.insert_mappings(conn, [("Job:1", used, "Input"),
                                            ("Job:1", used, "Output"),
                                            ("Job:2", spare, "Input")]) == 3
        assert sb_db.insert_mappings(conn, []) == 0
        sb_db.mark_assigned(conn, [used, spare], T0)
        sb_db.mark_assigned(conn, [], T0)
    with write_transaction(engine) as conn:
        assert sb_db.get_by_location(conn, "SE", "/a", lock=True).sb_id == used  # type: ignore[union-attr]
        assert sb_db.get_by_location(conn, "OTHER", "/a") is None
        assert set(sb_db.get_by_locations(conn, "SE", ["/a", "/c", "/z"])) == {"/a", "/c"}
        assert sb_db.get_by_locations(conn, "SE", []) == {}
        assert sb_db.existing_mappings(conn, ["Job:1", "Job:9"]) == {
            ("Job:1", used, "Input"), ("Job:1", used, "Output")}
        assert sb_db.existing_mappings(conn, []) == set()
        assert [t for t, _ in sb_db.sandboxes_of_entity(conn, "Job:1")] == ["Input", "Output"]
        assert sb_db.sandbox_ids_of_entities(conn, ["Job:1", "Job:2"]) == {used, spare}
        assert sb_db.sandbox_ids_of_entities(conn, []) == set()
        assert sb_db.touch(conn, fresh, T0 + timedelta(days=1))
        assert not sb_db.touch(conn, 99999, T0)
        # Job:2 goes: its sandbox becomes unused and its grace period starts now
        assert sb_db.delete_entities(conn, ["Job:2"]) == 1
        assert sb_db.delete_entities(conn, []) == 0
        sb_db.mark_unassigned_if_unused(conn, [used, spare], T0 + timedelta(hours=1))
    later = T0 + timedelta(days=30)
    with write_transaction(engine) as conn:
        # used: still mapped; spare: unassigned an hour after T0; fresh: never assigned
        assert sb_db.cleanup_candidates(conn, unassigned_before=T0 + timedelta(hours=2),
                                        never_assigned_before=T0, limit=10) == [spare]
        candidates = sb_db.cleanup_candidates(conn, unassigned_before=later,
                                              never_assigned_before=later, limit=10)
        assert candidates == [spare, fresh]
        assert sb_db.cleanup_candidates(conn, unassigned_before=later,
                                        never_assigned_before=later, limit=1) == [spare]
        sb_db.lock_sandboxes(conn, candidates)
        sb_db.lock_sandboxes(conn, [])
        # re-checked under the lock: an assignment made meanwhile saves the sandbox
        sb_db.insert_mappings(conn, [("Job:3", fresh, "Input")])
        gone = sb_db.still_deletable(conn, candidates, unassigned_before=later,
                                     never_assigned_before=later)
        assert [r.sb_id for r in gone] == [spare]
        assert sb_db.still_deletable(conn, [], unassigned_before=later,
                                     never_assigned_before=later) == []
        assert sb_db.delete_sandboxes(conn, [r.sb_id for r in gone]) == 1
        assert sb_db.delete_sandboxes(conn, []) == 0
        assert set(sb_db.get_by_locations(conn, "SE", ["/a", "/b", "/c"])) == {"/a", "/c"}
