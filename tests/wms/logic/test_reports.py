"""The write-behind path of job reports (wms.logic.reports) on real SQLite and MariaDB:
concurrent reports share transactions, each is answered only once committed, a row the
database refuses fails alone, the reports of one job keep their order, the answers are those
of the direct path (state_update, the oracle), Kill is delivered, queued reports are written
on close, and two writers (two server processes) never deadlock."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.db import init_schema, make_engine, utcnow
from core.exceptions import (
    InvalidTransitionError,
    JobNotActiveError,
    JobNotFoundError,
    NotAuthorizedError,
)
from core.security.identity import Identity
from wms.db import jobs as jobs_db
from wms.db.schema import WMS_SCHEMA
from wms.db.tables import job_commands, job_heartbeats, job_logging, job_parameters
from wms.logic import job_manager, reports, state_update
from wms.logic.reports import GroupCommitSettings, Heartbeat, ParameterReport, StatusReport
from wms.service.common import dequeue


def person(name: str, group: str, *props: str, scopes: frozenset[str] = frozenset()
           ) -> Identity:
    return Identity(auth_method="x509", username=name, group=group, vo="demo", valid_dn=True,
                    valid_group=True, properties=frozenset(props), scopes=scopes)


ALICE = person("alice", "demo_user", "NormalUser")
BOB = person("bob", "other_user", "NormalUser")
PILOT = person("pilot", "demo_pilot", "GenericPilot")


def job_token(job: int, attempt: int = 0) -> Identity:
    return person("alice", "demo_user", "NormalUser",
                  scopes=frozenset({f"job:{job}", f"attempt:{attempt}"}))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_schema(eng, WMS_SCHEMA)
    yield eng
    eng.dispose()


def make_jobs(engine: Engine, statuses: list[str], owner: str = "alice") -> list[int]:
    with engine.begin() as conn:
        return jobs_db.insert_jobs(conn, [jobs_db.NewJob(
            owner=owner, owner_group="demo_user", vo="demo", status=s, minor_status="Made",
            original_jdl="[]") for s in statuses], now=utcnow(), source="test")


class Counts:
    """Commits and statements of an engine (the transactions a batch costs)."""

    def __init__(self, engine: Engine) -> None:
        self.commits = 0
        self.statements = 0

        def commit(conn: Any) -> None:
            self.commits += 1

        def statement(*args: Any) -> None:
            self.statements += 1

        sa.event.listen(engine, "commit", commit)
        sa.event.listen(engine, "before_cursor_execute", statement)


def wait_for(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
    return value


def beats_of(engine: Engine, job: int) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [(n, v) for n, v, _ in jobs_db.heartbeats_of(conn, job)]


def row(engine: Engine, job: int) -> jobs_db.StatusRow:
    with engine.connect() as conn:
        return jobs_db.status_of(conn, [job])[job]


def times(engine: Engine, job: int, conn: Any) -> tuple[Any, ...]:
    """(HeartBeatTime, StartExecTime, EndExecTime) of a job."""
    table = jobs_db.jobs
    return tuple(conn.execute(sa.select(table.c.heartbeat_time, table.c.start_exec_time,
                                        table.c.end_exec_time)
                              .where(table.c.job_id == job)).one())


def history(engine: Engine, job: int) -> list[tuple[str, str, str, str]]:
    with engine.connect() as conn:
        return [(s, m, a, src) for s, m, a, _, src in jobs_db.logging_of(conn, job)]


def test_concurrent_heartbeats_share_transactions_and_are_answered_once_committed(
        engine: Engine) -> None:
    jobs = make_jobs(engine, ["Running"] * 300)
    counts = Counts(engine)
    committer = reports.committer(engine, settings=GroupCommitSettings(linger_ms=20))
    reader = make_engine(str(engine.url.render_as_string(hide_password=False)))
    unseen: list[int] = []

    async def producer(job: int) -> None:
        commands = await committer.run(Heartbeat(PILOT, job, {"CPUConsumed": job}, {}))
        assert commands == {}
        # answered: the row is committed, another connection sees it
        with reader.connect() as conn:
            found = conn.execute(sa.select(sa.func.count()).select_from(job_heartbeats)
                                 .where(job_heartbeats.c.job_id == job)).scalar_one()
        if found != 1:
            unseen.append(job)

    async def main() -> None:
        await asyncio.gather(*(producer(j) for j in jobs))

    try:
        # in a thread of its own: an earlier test (Playwright's sync API) may have left an
        # event loop running in this one, and asyncio.run refuses to nest
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, main()).result(timeout=120)
    finally:
        committer.close()
        reader.dispose()
    assert unseen == []
    assert committer.stats.items == 300
    # 300 requests, a handful of transactions of a handful of statements each
    assert counts.commits == committer.stats.batches <= 30
    assert counts.statements <= 8 * committer.stats.batches
    with engine.connect() as conn:
        stamped = conn.execute(sa.text(
            "SELECT COUNT(*) FROM jobs WHERE heartbeat_time IS NOT NULL")).scalar_one()
    assert stamped == 300


def _poison(engine: Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER poison BEFORE INSERT ON job_heartbeats "
                "WHEN instr(NEW.data, 'poison') > 0 BEGIN SELECT RAISE(ABORT, 'poisoned row'); END")
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER poison BEFORE INSERT ON job_heartbeats FOR EACH ROW BEGIN "
                "IF INSTR(NEW.data, 'poison') > 0 THEN SIGNAL SQLSTATE '45000' "
                "SET MESSAGE_TEXT = 'poisoned row'; END IF; END")


def test_a_row_the_database_refuses_fails_alone(engine: Engine) -> None:
    jobs = make_jobs(engine, ["Running"] * 10)
    _poison(engine)
    bad = jobs[4]
    items = [Heartbeat(PILOT, j, {"CPUConsumed": "poison" if j == bad else "1"}, {})
             for j in jobs]
    items.append(StatusReport(PILOT, jobs[0], application="after the bad row"))
    results = reports.apply_reports(engine, items)
    assert "poisoned row" in str(results[4])
    assert [r for i, r in enumerate(results) if i != 4] == [{}] * 9 + [None]
    for job in jobs:
        assert beats_of(engine, job) == ([] if job == bad else [("CPUConsumed", "1")])
    assert row(engine, jobs[0]).application_status == "after the bad row"
    with engine.connect() as conn:
        stamped = dict(conn.execute(sa.text("SELECT job_id, heartbeat_time FROM jobs")).all())
    assert stamped[bad] is None and all(stamped[j] for j in jobs if j != bad)


def test_reports_of_one_job_keep_their_order_in_one_transaction(engine: Engine) -> None:
    [job] = make_jobs(engine, ["Matched"])
    counts = Counts(engine)
    committer = reports.committer(engine, settings=GroupCommitSettings(linger_ms=60_000))
    token = job_token(job)
    sequence: list[Any] = [
        StatusReport(token, job, "Running", "Job Initialization", source="JobWrapper"),
        ParameterReport(token, job, {"HostName": "wn1"}),
        StatusReport(token, job, minor="Application", source="JobWrapper"),
        Heartbeat(token, job, {"CPUConsumed": 1}, {"StandardOutput": "a"}),
        StatusReport(token, job, application="step 1", source="JobWrapper"),
        Heartbeat(token, job, {"CPUConsumed": 2}, {"StandardOutput": "b"}),
        StatusReport(token, job, "Done", "Execution Complete", source="JobWrapper"),
        StatusReport(token, job, "Running", "again?", source="JobWrapper"),
        Heartbeat(token, job, {"CPUConsumed": 3}, {}),
        ParameterReport(token, job, {"HostName": "wn2"}),
    ]
    # queued together (a lone item is flushed at once, without lingering for company)
    results = committer.submit_many(sequence).result(30)
    committer.close()
    assert counts.commits == 1 and committer.stats.batches == 1
    assert results[:7] == [None, None, None, {}, None, {}, None]
    assert isinstance(results[7], JobNotActiveError)  # a job token, the job is over
    assert isinstance(results[8], JobNotActiveError)
    assert results[9] is None  # parameters are still accepted (as the direct path does)
    assert history(engine, job)[1:] == [
        ("Running", "Job Initialization", "Unknown", "JobWrapper"),
        ("Running", "Application", "Unknown", "JobWrapper"),
        ("Running", "Application", "step 1", "JobWrapper"),
        ("Done", "Execution Complete", "step 1", "JobWrapper")]
    assert beats_of(engine, job) == [("CPUConsumed", "1"), ("CPUConsumed", "2")]
    with engine.connect() as conn:
        assert jobs_db.parameters_of(conn, [job])[job] == {"HostName": "wn2",
                                                           "StandardOutput": "b"}
        _, started, ended = times(engine, job, conn)
    assert started is not None and ended is not None
    # the same refusal without a job token: Done -> Running is not a transition
    [again] = reports.apply_reports(engine, [StatusReport(ALICE, job, "Running", "x")])
    assert isinstance(again, InvalidTransitionError)


SCENARIO_STATUSES = ["Running", "Matched", "Stalled", "Done", "Killed", "Running", "Running"]


def _scenario(engine: Engine, jobs: list[int], run: Callable[[Any], Any]) -> list[Any]:
    """The same reports on a set of jobs made alike; what each report was answered."""
    running, matched, stalled, done, killed, running2, other = jobs
    job_manager.kill_jobs(engine, ALICE, [running2], dequeue=dequeue)  # Kill command queued
    with engine.begin() as conn:
        conn.execute(sa.update(jobs_db.jobs).where(jobs_db.jobs.c.job_id == other)
                     .values(owner="carol", owner_group="other_user"))
    reports_ = [
        Heartbeat(PILOT, running, {"CPUConsumed": 1.5, "RSS": 100}, {"StandardOutput": "x"}),
        Heartbeat(job_token(matched), matched, {"CPUConsumed": 0}, {}),
        Heartbeat(ALICE, stalled, {}, {}),
        Heartbeat(PILOT, done, {"CPUConsumed": 9}, {}),  # a pilot credential: accepted
        Heartbeat(job_token(done), done, {}, {}),  # the job's own token: refused
        Heartbeat(job_token(killed), killed, {}, {}),
        Heartbeat(PILOT, running2, {}, {}),  # the Kill command
        Heartbeat(PILOT, running2, {}, {}),  # delivered once
        Heartbeat(PILOT, 10**9, {}, {}),  # unknown job
        Heartbeat(BOB, other, {}, {}),  # not bob's job
        Heartbeat(job_token(running), other, {}, {}),  # a token of another job
        Heartbeat(job_token(running, attempt=3), running, {}, {}),  # an older attempt
        StatusReport(PILOT, done, "Running", "Application"),
        StatusReport(ALICE, done, minor="late minor"),
        StatusReport(ALICE, done, application="late application"),
        StatusReport(PILOT, running, "Completing", "Uploading"),
        StatusReport(BOB, running, application="mine?"),
        ParameterReport(ALICE, done, {"Late": "1"}),
        ParameterReport(BOB, running, {"X": "1"}),
        ParameterReport(PILOT, 10**9, {"X": "1"}),
    ]
    return [run(r) for r in reports_]


def _direct(engine: Engine) -> Callable[[Any], Any]:
    def run(report: Any) -> Any:
        try:
            if isinstance(report, Heartbeat):
                return state_update.heartbeat(engine, report.ident, report.job_id,
                                              report.dynamic, report.static, now=report.when)
            if isinstance(report, StatusReport):
                return state_update.set_status(
                    engine, report.ident, report.job_id, report.status, report.minor,
                    report.application, source=report.source, when=report.when)
            return state_update.set_parameters(engine, report.ident,
                                               {report.job_id: report.values})
        except Exception as exc:  # noqa: BLE001 - the answer is compared
            return exc
    return run


def _answers(results: list[Any], jobs: list[int]) -> list[Any]:
    names = {str(j): f"job{i}" for i, j in enumerate(jobs)}

    def norm(value: Any) -> Any:
        if isinstance(value, Exception):
            text = str(value)
            for raw, name in names.items():
                text = text.replace(f"Job {raw} ", f"Job {name} ").replace(
                    f"job {raw}", f"job {name}")
            return type(value).__name__, text
        return value

    return [norm(r) for r in results]


def _state(engine: Engine, jobs: list[int]) -> list[Any]:
    out = []
    with engine.connect() as conn:
        rows = jobs_db.status_of(conn, jobs)
        params = jobs_db.parameters_of(conn, jobs)
        for job in jobs:
            commands = conn.execute(sa.select(job_commands.c.command, job_commands.c.status)
                                    .where(job_commands.c.job_id == job)).all()
            stamped = [t is not None for t in times(engine, job, conn)]
            out.append((rows[job].status, rows[job].minor_status,
                        rows[job].application_status, tuple(stamped),
                        history(engine, job), beats_of(engine, job), params.get(job),
                        sorted(map(tuple, commands))))
    return out


def test_answers_and_effects_are_those_of_the_direct_path(engine: Engine) -> None:
    direct_jobs = make_jobs(engine, SCENARIO_STATUSES)
    queued_jobs = make_jobs(engine, SCENARIO_STATUSES)
    direct = _scenario(engine, direct_jobs, _direct(engine))
    committer = reports.committer(engine, settings=GroupCommitSettings(linger_ms=60_000))
    queue: list[Any] = []
    _scenario(engine, queued_jobs, queue.append)
    queued = committer.submit_many(queue).result(30)  # one batch: queued together
    committer.close()
    assert committer.stats.batches == 1
    assert _answers(queued, queued_jobs) == _answers(direct, direct_jobs)
    assert _state(engine, queued_jobs) == _state(engine, direct_jobs)
    # and what they are: Kill delivered once, refusals where DIRAC and the rules refuse
    answers = _answers(queued, queued_jobs)
    assert answers[6] == {"Kill": ""} and answers[7] == {}
    assert [a[0] if isinstance(a, tuple) else a for a in answers[:12]] == [
        {}, {}, {}, {}, "JobNotActiveError", "JobNotActiveError", {"Kill": ""}, {},
        "JobNotFoundError", "NotAuthorizedError", "NotAuthorizedError", "JobNotActiveError"]
    states = _state(engine, queued_jobs)
    assert states[1][0] == "Running" and states[1][3][1]  # Matched -> Running, started
    assert states[2][0] == "Running"  # Stalled -> Running
    assert states[1][4][-1] == ("Running", "Job Heartbeat", "Unknown", "Heartbeat")


def test_close_writes_every_queued_report(engine: Engine) -> None:
    jobs = make_jobs(engine, ["Running"] * 50)
    committer = reports.committer(engine, settings=GroupCommitSettings(
        max_batch=10_000, linger_ms=1000))
    futures = [committer.submit(Heartbeat(PILOT, j, {"N": 1}, {})) for j in jobs]
    futures += [committer.submit(StatusReport(PILOT, j, application="queued")) for j in jobs]
    committer.close()
    assert all(f.done() and f.exception() is None for f in futures)
    for job in jobs:
        assert beats_of(engine, job) == [("N", "1")]
        assert row(engine, job).application_status == "queued"


def _deadlocks(engine: Engine) -> int:
    if engine.dialect.name == "sqlite":
        return 0
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'")).one()[1])


def test_two_writers_on_the_same_jobs_never_deadlock(engine: Engine) -> None:
    """Two committers on two engines (two server processes), reports of overlapping jobs in
    random order: every report answered and written, no deadlock on MariaDB."""
    jobs = make_jobs(engine, ["Running"] * 200)
    url = engine.url.render_as_string(hide_password=False)
    engines = [make_engine(url), make_engine(url)]
    committers = [reports.committer(e, settings=GroupCommitSettings(linger_ms=2))
                  for e in engines]
    before = _deadlocks(engine)
    rng = random.Random(7)
    plans = [[rng.choice(jobs) for _ in range(600)] for _ in range(4)]
    errors: list[BaseException] = []
    done = [0]

    def producer(index: int) -> None:
        committer = committers[index % 2]
        for n, job in enumerate(plans[index]):
            kind = n % 3
            report: Any = (Heartbeat(PILOT, job, {"P": index}, {"StandardOutput": str(n)})
                           if kind == 0 else
                           StatusReport(PILOT, job, application=f"p{index}-{n}") if kind == 1
                           else ParameterReport(PILOT, job, {f"P{index}": str(n)}))
            try:
                committer.submit(report).result(120)
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)
            done[0] += 1

    threads = [threading.Thread(target=producer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    for committer in committers:
        committer.close()
    for e in engines:
        e.dispose()
    assert errors == [] and done[0] == 2400
    assert _deadlocks(engine) - before == 0
    with engine.connect() as conn:
        beats = conn.execute(sa.select(sa.func.count()).select_from(job_heartbeats)
                             ).scalar_one()
        logged = conn.execute(sa.select(sa.func.count()).select_from(job_logging)
                              .where(job_logging.c.source == "Unknown")).scalar_one()
        params = conn.execute(sa.select(sa.func.count()).select_from(job_parameters)
                              .where(job_parameters.c.name.like("P_"))).scalar_one()
    assert beats == 800 and logged == 800  # every acknowledged report is there
    assert params == len({(i, job) for i in range(4) for n, job in enumerate(plans[i])
                          if n % 3 == 2})


def test_the_job_owner_and_strangers(engine: Engine) -> None:
    [mine] = make_jobs(engine, ["Running"])
    results = reports.apply_reports(engine, [
        Heartbeat(ALICE, mine, {"A": 1}, {}), Heartbeat(BOB, mine, {"B": 1}, {}),
        ParameterReport(BOB, mine, {"B": "1"}), StatusReport(BOB, mine, minor="bob was here")])
    assert results[0] == {}
    assert all(isinstance(r, NotAuthorizedError) for r in results[1:])
    assert beats_of(engine, mine) == [("A", "1")]
    assert row(engine, mine).minor_status == "Made"
    [missing] = reports.apply_reports(engine, [Heartbeat(PILOT, 10**12, {}, {})])
    assert isinstance(missing, JobNotFoundError)
