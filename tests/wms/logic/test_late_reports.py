"""Late reports: a pilot's job token names the attempt it was issued for; once the job was
rescheduled (and perhaps matched again) or has left the running states, the reports made with
it are refused (``JobNotActiveError``), while the new attempt's pilot and the job's owner go
on as before. Real task queues and the real matcher, on SQLite and MariaDB."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from core.db import init_schema, make_engine, utcnow
from core.exceptions import InvalidTransitionError, JobNotActiveError
from core.security.identity import Identity
from wms.db.schema import WMS_SCHEMA
from wms.logic import job_manager, matching, optimizer, state_update
from wms.logic.submission import DEFAULT_LIMITS, Submitter, submit
from wms.service.common import dequeue, enqueue

RESOURCE = {"Site": "LCG.Late.test", "CPUTime": 1_000_000}
OWNER = Identity(auth_method="x509", username="alice", group="demo_user", vo="demo",
                 valid_dn=True, valid_group=True, properties=frozenset({"NormalUser"}))
ADMIN = Identity(auth_method="x509", username="admin", group="demo_admin", vo="demo",
                 valid_dn=True, valid_group=True, properties=frozenset({"JobAdministrator"}))


def job_token(job: int, attempt: int | None) -> Identity:
    scopes = {f"job:{job}"} | ({f"attempt:{attempt}"} if attempt is not None else set())
    return Identity(auth_method="token", username="alice", group="demo_user", vo="demo",
                    valid_dn=True, valid_group=True, properties=frozenset({"NormalUser"}),
                    scopes=frozenset(scopes))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_schema(eng, WMS_SCHEMA)
    yield eng
    eng.dispose()


def match(engine: Engine) -> matching.MatchResult:
    return matching.match_job(engine, RESOURCE, settings=matching.MatchSettings(), scope=None)


def waiting_job(engine: Engine) -> int:
    [job] = submit(engine, '[Executable = "/bin/true";]', Submitter("alice", "demo_user",
                                                                     "demo"),
                   DEFAULT_LIMITS).job_ids
    assert optimizer.optimise(engine, [job], enqueue=enqueue).waiting == [job]
    return job


def status(engine: Engine, job: int) -> str:
    from wms.db import jobs as jobs_db

    with engine.connect() as conn:
        return jobs_db.status_of(conn, [job])[job].status


def test_rescheduled_and_rematched_job_refuses_the_old_attempt(engine: Engine) -> None:
    job = waiting_job(engine)
    first = match(engine)
    assert (first.job_id, first.attempt) == (job, 0)
    old = job_token(job, 0)
    assert state_update.heartbeat(engine, old, job, {"CPUConsumed": 1}, {}) == {}
    assert status(engine, job) == "Running"
    job_manager.reschedule_jobs(engine, ADMIN, [job], dequeue=dequeue, max_rescheduling=3)
    with pytest.raises(JobNotActiveError, match="rescheduled since this pilot got it"):
        state_update.heartbeat(engine, old, job, {"CPUConsumed": 2}, {})
    # back to the queue and matched by another pilot: attempt 1
    assert optimizer.optimise(engine, [job], enqueue=enqueue,
                              reschedule_delays=(0,)).waiting == [job]
    second = match(engine)
    assert (second.job_id, second.attempt) == (job, 1)
    new = job_token(job, 1)
    state_update.set_status(engine, new, job, "Running", "Job Initialization")
    for late in (lambda: state_update.heartbeat(engine, old, job, {}, {}),
                 lambda: state_update.set_status(engine, old, job, "Done", "Execution Complete"),
                 lambda: state_update.set_parameters(engine, old, {job: {"Late": "1"}})):
        with pytest.raises(JobNotActiveError, match="attempt 0, now 1"):
            late()
    # the Kill sent for the old attempt is not delivered to the new one
    assert state_update.heartbeat(engine, new, job, {"CPUConsumed": 1}, {}) == {}
    state_update.set_status(engine, new, job, "Done", "Execution Complete")
    assert status(engine, job) == "Done"


def test_reports_on_a_job_no_longer_running_are_refused_to_its_pilot(engine: Engine) -> None:
    job = waiting_job(engine)
    match(engine)
    token = job_token(job, 0)
    state_update.set_status(engine, token, job, "Running", "Application")
    state_update.set_status(engine, ADMIN, job, "Stalled", "Job stalled: pilot not running")
    # Stalled is still the pilot's: a heartbeat brings it back (DIRAC's behaviour)
    state_update.heartbeat(engine, token, job, {"CPUConsumed": 1}, {})
    assert status(engine, job) == "Running"
    state_update.set_status(engine, ADMIN, job, "Failed", "Job stalled: pilot not running",
                            force=True)
    with pytest.raises(JobNotActiveError, match="is Failed"):
        state_update.heartbeat(engine, token, job, {}, {})
    with pytest.raises(JobNotActiveError):
        state_update.set_status(engine, token, job, "Done", "Execution Complete")
    # what the pilot may still send: parameters (its log) and the application status
    state_update.set_parameters(engine, token, {job: {"JobWrapperLog": "late"}})
    state_update.set_status(engine, token, job, application="Exit code 0")
    # a token without an attempt (push mode's) is held to the status rule only
    with pytest.raises(JobNotActiveError):
        state_update.heartbeat(engine, job_token(job, None), job, {}, {})
    # the owner and administrators keep DIRAC's rules (the transition table)
    state_update.heartbeat(engine, OWNER, job, {}, {})
    with pytest.raises(InvalidTransitionError):
        state_update.set_status(engine, OWNER, job, "Running", "again")
    assert status(engine, job) == "Failed"


@pytest.mark.parametrize("path", ["call", "batch"])
def test_a_killed_jobs_pilot_is_sent_the_kill_once_then_refused(engine: Engine,
                                                               path: str) -> None:
    """The job is Killed at once by killJob; its pilot's next heartbeat gets the pending
    ``Kill`` (as in DIRAC) rather than a refusal, records nothing, and the one after is
    refused. The batched write path (group commit) answers the same."""
    from wms.db import jobs as jobs_db
    from wms.logic import reports

    job = waiting_job(engine)
    match(engine)
    token = job_token(job, 0)

    def beat(value: int) -> object:
        if path == "call":
            try:
                return state_update.heartbeat(engine, token, job, {"CPUConsumed": value}, {})
            except JobNotActiveError as exc:
                return exc
        return reports.apply_reports(engine, [
            reports.Heartbeat(token, job, {"CPUConsumed": value}, {}, when=utcnow()),
            reports.Heartbeat(token, job, {"CPUConsumed": value + 1}, {},
                              when=utcnow())])[0]

    assert beat(1) == {}
    assert job_manager.kill_jobs(engine, OWNER, [job], dequeue=dequeue).done == [job]
    assert status(engine, job) == "Killed"
    assert beat(2) == {"Kill": ""}
    refused = beat(3)
    assert isinstance(refused, JobNotActiveError) and "is Killed" in str(refused)
    with engine.connect() as conn:
        values = [v for n, v, _ in jobs_db.heartbeats_of(conn, job) if n == "CPUConsumed"]
    assert values == (["1"] if path == "call" else ["1", "2"])  # nothing after the kill
    assert status(engine, job) == "Killed"
