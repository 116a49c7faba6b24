"""Submission, optimisation and job management logic on both databases.

The task-queue hooks are passed in (as the services pass the matcher's); here they record what
they receive, which is what these tests check.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.db import init_schema, make_engine
from core.exceptions import InvalidJDLError
from core.security.identity import Identity
from wms.db import jobs as jobs_db
from wms.db.schema import WMS_SCHEMA
from wms.db.tables import job_parameters, jobs
from wms.logic import job_manager, optimizer
from wms.logic.input_data import InputDataVerdict
from wms.logic.job_description import JobDescription, JobLimits
from wms.logic.submission import SubmitResult, Submitter, confirm_bulk, submit

ALICE = Submitter("alice", "demo_user", "demo")
GONE = InputDataVerdict(reason="Input Data Not Available")
LIMITS = JobLimits()


def ident(user: str, group: str = "demo_user", *props: str) -> Identity:
    return Identity(auth_method="x509", username=user, group=group, vo="demo",
                    valid_dn=True, valid_group=True, properties=frozenset(props))


class Queue:
    """Records what the optimiser and job manager hand to the task queues."""

    def __init__(self) -> None:
        self.queued: dict[int, JobDescription] = {}
        self.removed: list[int] = []

    def enqueue(self, conn: Connection, items: Sequence[tuple[int, JobDescription]],
                now: datetime) -> None:
        self.queued.update(items)

    def dequeue(self, conn: Connection, job_ids: Sequence[int]) -> None:
        self.removed.extend(job_ids)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_schema(eng, WMS_SCHEMA)
    yield eng
    eng.dispose()


def statuses(engine: Engine, ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    with engine.connect() as conn:
        return {j: (r.status, r.minor_status) for j, r in jobs_db.status_of(conn, ids).items()}


def test_bulk_submission_keeps_order_and_substitutes_job_ids(engine: Engine) -> None:
    jdl = ('[Executable = "run"; Arguments = "%j-%n"; Parameters = 25; ParameterStart = 0;'
           ' ParameterStep = 1; InputData = {"LFN:/demo/f%n"};]')
    result = submit(engine, jdl, ALICE, LIMITS)
    assert result.parametric and len(result.job_ids) == 25
    assert result.job_ids == sorted(result.job_ids)
    with engine.connect() as conn:
        processed = jobs_db.jdls_of(conn, result.job_ids)
        originals = jobs_db.jdls_of(conn, result.job_ids, processed=False)
        data = jobs_db.input_data_of(conn, result.job_ids)
    for index, job_id in enumerate(result.job_ids):
        assert f'Arguments = "{job_id}-{index:02d}";' in processed[job_id]
        assert f'Arguments = "{job_id}-{index:02d}";' in originals[job_id]
        assert data[job_id] == [f"LFN:/demo/f{index:02d}"]
    assert set(statuses(engine, result.job_ids).values()) == {
        ("Submitting", "Bulk transaction confirmation")}
    assert confirm_bulk(engine, result.job_ids + [999]) == result.job_ids
    assert confirm_bulk(engine, result.job_ids) == []  # already confirmed


def test_a_bad_child_stores_nothing(engine: Engine) -> None:
    jdl = '[Executable = "run"; CPUTime = %s; Parameters = {"100", "x"};]'
    with pytest.raises(InvalidJDLError, match="CPUTime"):
        submit(engine, jdl, ALICE, LIMITS)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one() == 0


def test_parametric_limit(engine: Engine) -> None:
    with pytest.raises(InvalidJDLError, match="10"):
        submit(engine, '[Executable="x"; Parameters = 11;]', ALICE, JobLimits(
            max_parametric_jobs=10))


def test_optimiser_paths(engine: Engine) -> None:
    queue = Queue()
    good = submit(engine, '[Executable="x"; Site = {"A", "B"}; BannedSites = "B";]', ALICE,
                  LIMITS).job_ids[0]
    with pytest.raises(InvalidJDLError, match="[Bb]anned"):  # refused before storing
        submit(engine, '[Executable="x"; Site = "A"; BannedSite = "A";]', ALICE, LIMITS)
    data = submit(engine, '[Executable="x"; InputData = "LFN:/demo/missing";]', ALICE,
                  LIMITS).job_ids[0]
    result = optimizer.optimise(engine, [good, data, 12345], enqueue=queue.enqueue,
                                check_input_data=lambda wanted: {j: GONE for j in wanted})
    assert result.waiting == [good] and result.skipped == [12345]
    assert result.failed == {data: "Input Data Not Available"}
    assert queue.queued[good].sites == ["A"]
    assert statuses(engine, [good, data]) == {
        good: ("Waiting", "Pilot Agent Submission"), data: ("Failed", "Input Data Not Available")}
    with engine.connect() as conn:
        history = [h[0] for h in jobs_db.logging_of(conn, good)]
    assert history == ["Received", "Checking", "Waiting"]


def test_submission_optimises_in_its_own_transaction(engine: Engine) -> None:
    """A single submission goes Received -> Checking -> Waiting in the storing transaction;
    refused jobs fail there; and if the hook raises, nothing at all is stored."""
    queue = Queue()

    def stored(conn: Connection, result: SubmitResult, now: datetime) -> None:
        optimizer.optimise_new(conn, result.descriptions, enqueue=queue.enqueue, now=now,
                               check_input_data=lambda wanted: {j: GONE for j in wanted})

    [good] = submit(engine, '[Executable="x"; Site = {"A", "B"}; BannedSites = "B";]',
                    ALICE, LIMITS, on_stored=stored).job_ids
    [data] = submit(engine, '[Executable="x"; InputData = "LFN:/demo/missing";]', ALICE,
                    LIMITS, on_stored=stored).job_ids
    assert list(queue.queued) == [good] and queue.queued[good].sites == ["A"]
    assert statuses(engine, [good, data]) == {
        good: ("Waiting", "Pilot Agent Submission"), data: ("Failed", "Input Data Not Available")}
    with engine.connect() as conn:
        assert [h[0] for h in jobs_db.logging_of(conn, good)] == [
            "Received", "Checking", "Waiting"]
        assert [h[0] for h in jobs_db.logging_of(conn, data)] == ["Received", "Failed"]
        count = conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one()

    def broken(conn: Connection, result: SubmitResult, now: datetime) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        submit(engine, '[Executable="x";]', ALICE, LIMITS, on_stored=broken)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one() == count


def test_illegal_stored_jdl_fails_the_job(engine: Engine) -> None:
    [job] = submit(engine, '[Executable="x";]', ALICE, LIMITS).job_ids
    with engine.begin() as conn:
        jobs_db.set_jdls(conn, processed={job: "[ Executable = "})
    result = optimizer.optimise(engine, [job], enqueue=Queue().enqueue)
    assert result.failed == {job: "Illegal Job JDL"}
    assert statuses(engine, [job])[job] == ("Failed", "Illegal Job JDL")


def test_crash_leftovers_are_found(engine: Engine) -> None:
    [job] = submit(engine, '[Executable="x";]', ALICE, LIMITS).job_ids
    later = datetime.now(timezone.utc) + timedelta(minutes=5)
    with engine.connect() as conn:
        assert optimizer.pending_jobs(conn, older_than=timedelta(minutes=1),
                                      now=later) == [job]
        assert optimizer.pending_jobs(conn, older_than=timedelta(minutes=10),
                                      now=later) == []


def test_kill_delete_rights_and_commands(engine: Engine) -> None:
    queue = Queue()
    mine = submit(engine, '[Executable="x";]', ALICE, LIMITS).job_ids[0]
    other = submit(engine, '[Executable="x";]', Submitter("bob", "demo_user", "demo"),
                   LIMITS).job_ids[0]
    optimizer.optimise(engine, [mine, other], enqueue=queue.enqueue)
    with engine.begin() as conn:  # as the matcher and the pilot would have done
        rows = jobs_db.status_of(conn, [mine])
        jobs_db.apply_status_changes(conn, [jobs_db.StatusChange(mine, "Matched", "Assigned")],
                                     rows, now=datetime.now(timezone.utc), source="Matcher")
    result = job_manager.kill_jobs(engine, ident("alice"), [mine, other, 777],
                                   dequeue=queue.dequeue)
    assert (result.done, result.nonauthorized, result.invalid) == ([mine], [other], [777])
    assert queue.removed == [mine]
    with engine.begin() as conn:
        assert jobs_db.take_commands(conn, mine, datetime.now(timezone.utc)) == {"Kill": ""}
    sharing = ident("carol", "demo_user", "JobSharing")
    assert job_manager.delete_jobs(engine, sharing, [other], dequeue=queue.dequeue).done == [
        other]
    assert statuses(engine, [other])[other] == ("Deleted", "Checking accounting")
    with engine.connect() as conn:
        assert [h[0] for h in jobs_db.logging_of(conn, other)][-2:] == ["Killed", "Deleted"]
    admin = ident("root", "demo_admin", "JobAdministrator")
    assert job_manager.remove_jobs(engine, admin, [mine, other], dequeue=queue.dequeue).done \
        == sorted([mine, other])
    assert statuses(engine, [mine, other]) == {}


def test_reschedule_keeps_earlier_parameters(engine: Engine) -> None:
    queue = Queue()
    [job] = submit(engine, '[Executable="x";]', ALICE, LIMITS).job_ids
    optimizer.optimise(engine, [job], enqueue=queue.enqueue)
    with engine.begin() as conn:
        jobs_db.set_parameters(conn, {job: {"HostName": "wn1"}}, {job: 0})
    assert job_manager.reschedule_jobs(engine, ident("alice"), [job], dequeue=queue.dequeue,
                                       max_rescheduling=3).done == [job]
    result = optimizer.optimise(engine, [job], enqueue=queue.enqueue, reschedule_delays=[60])
    assert result.waiting == []  # still backing off
    later = datetime.now(timezone.utc) + timedelta(seconds=61)
    result = optimizer.optimise(engine, [job], enqueue=queue.enqueue, reschedule_delays=[60],
                                now=later)
    assert result.waiting == [job]
    with engine.begin() as conn:
        jobs_db.set_parameters(conn, {job: {"HostName": "wn2"}}, {job: 1})
        assert jobs_db.parameters_of(conn, [job]) == {job: {"HostName": "wn2"}}
        assert jobs_db.parameters_of(conn, [job], attempt=0) == {job: {"HostName": "wn1"}}
        assert conn.execute(sa.select(sa.func.count()).select_from(job_parameters)
                            ).scalar_one() == 2
