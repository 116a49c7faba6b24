"""The search's plans (wms.db.search_plans): the walk of ix_jobs_owner_id and the status path
through ix_jobs_owner_status give the very pages the database's own plan gives, on SQLite and
MariaDB, for every page, offset, order and awkward filter; the counters choose the status path
when the matches are few and the walk when they are most of the owner's jobs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.db import init_schema, make_engine, utcnow
from core.db import write_transaction as write
from wms.db import job_queries, search_plans
from wms.db import jobs as jobs_db
from wms.db.filters import Scope
from wms.db.schema import WMS_SCHEMA
from wms.db.tables import jobs
from wms.logic.monitoring import fold_counters

STATUSES = ["Done"] * 12 + ["Failed"] * 3 + ["Waiting", "Running", "Killed", "Stalled"]


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_schema(eng, WMS_SCHEMA)
    now = utcnow()
    with write(eng) as conn:
        jobs_db.insert_jobs(conn, [
            jobs_db.NewJob(owner=("alice", "bob", "alice", "carol")[i % 4], owner_group="g",
                           vo="v", status=STATUSES[(i * 7) % len(STATUSES)],
                           minor_status=f"m{i % 3}", original_jdl="[]", job_name=f"j{i}",
                           site=("A", "B", "C")[i % 3], job_group=f"g{i % 5}")
            for i in range(600)], now=now, source="test")
    with write(eng) as conn:  # distinct submission times, not in job ID order
        for job_id in range(1, 601):
            conn.execute(sa.update(jobs).where(jobs.c.job_id == job_id).values(
                submission_time=now - timedelta(seconds=(job_id * 7919) % 600)))
    fold_counters(eng, batches=10)
    with write(eng) as conn:  # a few deltas left unfolded: the counts read both tables
        conn.execute(sa.update(jobs).where(jobs.c.job_id.in_([3, 7, 11, 590]))
                     .values(status="Running"))
    yield eng
    eng.dispose()


FILTERS: list[list[Any]] = [
    [("Status", "in", ["Waiting", "Running", "Failed"])],
    [("Status", "in", ["Done", "Failed"])],
    [("Status", "eq", "Done")],
    [("Status", "eq", "Nope")],
    [("Status", "in", ["Running", "Running", "Killed"])],  # a value twice
    [("Status", "in", ["Done", "done ", "Waiting"])],  # one status to MariaDB's collation
    [("Status", "in", ["Stalled", "Nope"])],
    [("Site", "eq", "B"), ("Status", "in", ["Done", "Waiting"])],
    [("JobGroup", "eq", "g2"), ("Status", "in", ["Failed", "Killed", "Stalled"])],
    [("Status", "in", ["Done", "Running"]), ("JobID", "gt", 250)],  # keyset paging
    [("Status", "in", ["Done", "Running"]), ("JobName", "like", "j1%")],  # not counted
    [("Owner", "eq", "alice"), ("Status", "in", ["Done", "Killed"])],
]
PLANS = ["database", "counted", search_plans.WALK, search_plans.BY_STATUS]


@pytest.mark.parametrize("filters", FILTERS)
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_every_plan_gives_the_same_pages(engine: Engine, filters: list[Any],
                                         direction: str) -> None:
    scope = Scope(owner="alice")
    columns = ["JobID", "Status", "Site", "JobName", "LastUpdateTime"]
    with engine.connect() as conn:
        _, every = job_queries.search_jobs(conn, filters, columns=["JobID"], scope=scope,
                                           sort=[("JobID", direction)], with_total=False)
        expected_ids = [r["JobID"] for r in every]
        for limit, offset in [(7, 0), (7, 14), (100, 0), (1000, 0), (50, 120), (5, 10_000)]:
            pages = {}
            for plan in PLANS:
                total, rows = job_queries.search_jobs(
                    conn, filters, columns=columns, sort=[("JobID", direction)], scope=scope,
                    limit=limit, offset=offset, datetimes_as_text=True, plan=plan)
                pages[plan] = (total, rows)
            assert [r[0] for r in pages["database"][1]] == expected_ids[offset:offset + limit]
            for plan in PLANS[1:]:
                assert pages[plan] == pages["database"], (plan, limit, offset)
            assert pages["database"][0] == (
                len(expected_ids) if job_queries.total_is_exact(
                    pages["database"][0], filters, scope) else pages["database"][0])


@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_newest_first_in_the_order_of_the_index_gives_the_same_pages(
        engine: Engine, direction: str) -> None:
    filters = [("Status", "eq", "Done"), ("Site", "in", ["A", "C"])]
    with engine.connect() as conn:
        for limit, offset in [(7, 0), (20, 40), (1000, 0)]:
            pages = [job_queries.search_jobs(
                conn, filters, columns=["JobID", "SubmissionTime"], scope=Scope(owner="alice"),
                sort=[("SubmissionTime", direction)], limit=limit, offset=offset,
                datetimes_as_text=True, plan=plan) for plan in ("database", "counted")]
            assert pages[0] == pages[1] and pages[0][1]


def test_an_administrator_naming_the_owner_gets_the_same_pages(engine: Engine) -> None:
    filters = [("Owner", "eq", "bob"), ("Status", "in", ["Done", "Waiting", "Stalled"])]
    with engine.connect() as conn:
        pages = [job_queries.search_jobs(conn, filters, sort=[("JobID", "desc")], limit=9,
                                         offset=3, plan=plan) for plan in PLANS]
        plan = search_plans.plan_for(conn, filters, None, [("JobID", "desc")], 9, 3)
    assert all(page == pages[0] for page in pages)
    assert plan == search_plans.Plan(search_plans.WALK)  # Done: most of its jobs


def test_the_counters_choose_by_the_matches(engine: Engine) -> None:
    scope = Scope(owner="alice")

    def plan(filters: list[Any], sort: str = "JobID", scope: Scope = scope
             ) -> search_plans.Plan | None:
        with engine.connect() as conn:
            return search_plans.plan_for(conn, filters, scope, [(sort, "desc")], 10, 0)

    assert plan([("Status", "in", ["Waiting", "Killed"])]) == search_plans.Plan(
        search_plans.BY_STATUS, ("Killed", "Waiting"))
    assert plan([("Status", "in", ["Done", "Failed"])]) == search_plans.Plan(search_plans.WALK)
    assert plan([("Status", "eq", "Done")]) == search_plans.Plan(search_plans.BY_STATUS,
                                                                 ("Done",))
    assert plan([("Status", "eq", "Done")], sort="SubmissionTime") == search_plans.Plan(
        search_plans.BY_STATUS_SUBMISSION, ("Done",))
    assert plan([("Status", "in", ["Done", "Killed"])], sort="SubmissionTime") is None
    assert plan([("Status", "eq", "Done"), ("JobID", "in", [1, 2])]) is None
    assert plan([("Status", "eq", "Done")], scope=Scope(owner="alice", group="g")) is None
    assert plan([("Site", "eq", "A")]) is None


def test_the_counts_by_status_are_reused_for_a_few_seconds(engine: Engine) -> None:
    with engine.connect() as conn:
        before = search_plans.owner_status_counts(conn, "alice")
    with write(engine) as conn:
        conn.execute(sa.update(jobs).where(jobs.c.owner == "alice").values(status="Waiting"))
    with engine.connect() as conn:
        assert search_plans.owner_status_counts(conn, "alice") == before
        # the page itself is exact at once, whichever plan the old counts chose
        total, rows = job_queries.search_jobs(conn, [("Status", "in", ["Waiting", "Done"])],
                                              scope=Scope(owner="alice"), limit=1000)
        assert total == len(rows) == 300
    search_plans._counts_cache.clear()
    with engine.connect() as conn:
        assert search_plans.owner_status_counts(conn, "alice") == {"Waiting": 300}


def test_the_choice_follows_the_page_size() -> None:
    costs = search_plans.Costs(owner_jobs=100_000,
                               by_status={"Done": 89_000, "Failed": 10_000, "Waiting": 1_000},
                               matches={"Failed": 10_000, "Waiting": 1_000})
    # a page of 10: the walk reads ~90 rows, the status path ~20 entries (x3)
    assert search_plans.choose(costs, 10).index == search_plans.BY_STATUS
    # a page of 10,000 at offset 20,000: the walk reads them all, the branches 11,000
    assert search_plans.choose(costs, 30_000).index == search_plans.BY_STATUS
    nothing = search_plans.Costs(owner_jobs=0, by_status={}, matches={"A": 0, "B": 0})
    assert search_plans.choose(nothing, 100).index == search_plans.WALK


def test_a_forced_plan_needs_a_page_in_job_id_order(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(ValueError, match="sorted by JobID"):
        job_queries.search_jobs(conn, [("Status", "eq", "Done")], limit=5,
                                sort=[("Site", "asc")], plan=search_plans.WALK)
    with pytest.raises(ValueError, match="no search plan"):
        search_plans.forced("ix_jobs_job_group", [("Status", "eq", "Done")],
                            [("JobID", "asc")], 5)
