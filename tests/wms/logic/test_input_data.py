"""Input data scheduling: the sites holding every input file, narrowed by the job's wishes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

import pytest
from sqlalchemy.engine import Connection, Engine

from core.db import init_schema, make_engine
from wms.db import jobs as jobs_db
from wms.db.schema import WMS_SCHEMA
from wms.logic import optimizer
from wms.logic.input_data import (
    IMPOSSIBLE,
    NO_SITE_WITH_ALL,
    NOT_AVAILABLE,
    InputDataVerdict,
    decide,
    narrow,
    sites_by_se,
    strip_lfn,
)
from wms.logic.job_description import JobDescription, JobLimits
from wms.logic.submission import SubmitResult, Submitter, confirm_bulk, submit

SE_SITES = sites_by_se({"Site.A": ["SE-A", "SE-Shared"], "Site.B": ["SE-B", "SE-Shared"],
                        "Site.C": ["SE-C"]})
REPLICAS = {"/demo/f1": ["SE-A", "SE-B"], "/demo/f2": ["SE-B", "SE-C"],
            "/demo/shared": ["SE-Shared"], "/demo/nowhere": ["SE-Unknown"], "/demo/empty": []}


def test_sites_holding_every_file() -> None:
    verdicts = decide({1: ["LFN:/demo/f1", "/demo/f2"], 2: ["/demo/f1"], 3: ["/demo/shared"],
                       4: ["/demo/f1", "/demo/missing"], 5: ["/demo/empty"],
                       6: ["/demo/f1", "/demo/nowhere"], 7: ["/demo/f1", "/demo/f1"]},
                      replicas=REPLICAS, se_sites=SE_SITES)
    assert verdicts == {
        1: InputDataVerdict(sites=("Site.B",)),
        2: InputDataVerdict(sites=("Site.A", "Site.B")),
        3: InputDataVerdict(sites=("Site.A", "Site.B")),
        4: InputDataVerdict(reason=NOT_AVAILABLE),
        5: InputDataVerdict(reason=NOT_AVAILABLE),
        6: InputDataVerdict(reason=NO_SITE_WITH_ALL),
        7: InputDataVerdict(sites=("Site.A", "Site.B")),
    }


def test_job_requirements_narrow_the_data_sites() -> None:
    both = InputDataVerdict(sites=("Site.A", "Site.B"))
    assert narrow(both, sites=["Site.B", "Site.Z"], banned=[]) == InputDataVerdict(
        sites=("Site.B",))
    assert narrow(both, sites=[], banned=["Site.A"]).sites == ("Site.B",)
    assert narrow(both, sites=["Site.C"], banned=[]).reason == IMPOSSIBLE
    refused = InputDataVerdict(reason=NOT_AVAILABLE)
    assert narrow(refused, sites=["Site.A"], banned=[]) is refused
    assert strip_lfn("lfn:/demo/x") == "/demo/x" and strip_lfn("/demo/x") == "/demo/x"


class Queue:
    def __init__(self) -> None:
        self.queued: dict[int, JobDescription] = {}

    def enqueue(self, conn: Connection, items: Sequence[tuple[int, JobDescription]],
                now: datetime) -> None:
        self.queued.update(items)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_schema(eng, WMS_SCHEMA)
    yield eng
    eng.dispose()


def test_jobs_are_queued_where_their_data_is(engine: Engine) -> None:
    queue = Queue()
    seen: list[dict[int, list[str]]] = []

    def check(wanted: dict[int, list[str]]) -> dict[int, InputDataVerdict]:
        seen.append(wanted)
        return decide(wanted, replicas=REPLICAS, se_sites=SE_SITES)

    def stored(conn: Connection, result: SubmitResult, now: datetime) -> None:
        optimizer.optimise_new(conn, result.descriptions, enqueue=queue.enqueue, now=now,
                               check_input_data=check)

    who, limits = Submitter("alice", "demo_user", "demo"), JobLimits()
    [one] = submit(engine, '[Executable="x"; InputData = {"LFN:/demo/f1", "LFN:/demo/f2"};]',
                   who, limits, on_stored=stored).job_ids
    [two] = submit(engine, '[Executable="x"; InputData = "LFN:/demo/f1";]', who, limits,
                   on_stored=stored).job_ids
    [bad] = submit(engine, '[Executable="x"; InputData = "LFN:/demo/f1"; Site = "Site.C";]',
                   who, limits, on_stored=stored).job_ids
    [plain] = submit(engine, '[Executable="x";]', who, limits, on_stored=stored).job_ids
    assert queue.queued[one].sites == ["Site.B"]
    assert queue.queued[two].sites == ["Site.A", "Site.B"]
    assert bad not in queue.queued and queue.queued[plain].sites == []
    assert len(seen) == 3  # jobs without input data never reach the resolver
    with engine.connect() as conn:
        rows = jobs_db.status_of(conn, [one, two, bad])
    assert (rows[one].status, rows[one].site) == ("Waiting", "Site.B")
    assert (rows[two].status, rows[two].site) == ("Waiting", "Multiple")
    assert (rows[bad].status, rows[bad].minor_status) == ("Failed", IMPOSSIBLE)


def test_confirmed_bulk_jobs_are_restricted_too(engine: Engine) -> None:
    """The bulk path (confirmBulkSubmission, rescheduling, the sweep) applies the same rule."""
    queue = Queue()
    who, limits = Submitter("alice", "demo_user", "demo"), JobLimits()
    ids = submit(engine, '[Executable="x"; Parameters = {"/demo/f1", "/demo/f2", "/demo/no"}; '
                 'InputData = "LFN:%s";]', who, limits).job_ids
    confirm_bulk(engine, ids)
    result = optimizer.optimise(engine, ids, enqueue=queue.enqueue,
                                check_input_data=lambda wanted: decide(
                                    wanted, replicas=REPLICAS, se_sites=SE_SITES))
    one, two, missing = ids
    assert result.waiting == [one, two] and result.failed == {missing: NOT_AVAILABLE}
    assert queue.queued[one].sites == ["Site.A", "Site.B"]
    assert queue.queued[two].sites == ["Site.B", "Site.C"]
    with engine.connect() as conn:
        assert jobs_db.status_of(conn, [one])[one].site == "Multiple"
