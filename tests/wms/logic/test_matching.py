"""The matcher on real databases (SQLite and MariaDB): each requirement, the site mask, running
limits and delays, shares and priorities, and no double match under 50 concurrent processes."""

from __future__ import annotations

import multiprocessing
import random
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.db import init_schema, make_engine, write_transaction
from core.exceptions import InvalidArgumentError, NoMatchError
from core.security.identity import Identity
from wms.db import jobs as jobs_db
from wms.db import site_mask as mask_db
from wms.db.schema import WMS_SCHEMA
from wms.db.tables import job_jdls, jobs
from wms.db.tq_tables import task_queues, tq_jobs
from wms.logic.jdl import parse_jdl
from wms.logic.job_description import describe_job
from wms.logic.matching import (
    MatchScope,
    MatchSettings,
    TQJob,
    dequeue_jobs,
    enqueue_jobs,
    match_job,
    matching_task_queues,
    offered_tags,
    parse_resource,
    remove_empty_task_queues,
    scope_for,
    tq_job_from_description,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
SITE = "LCG.CERN.cern"
SCOPE = MatchScope("demo")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_schema(eng, WMS_SCHEMA)
    yield eng
    eng.dispose()


def add_waiting(engine: Engine, jobs_: Sequence[dict[str, Any]],
                rng: random.Random | None = None) -> list[int]:
    """Insert Waiting jobs and queue them; each dict holds TQJob fields (job_id excluded)."""
    with write_transaction(engine) as conn:
        ids = jobs_db.insert_jobs(conn, [jobs_db.NewJob(
            owner=j.get("owner", "alice"), owner_group=j.get("owner_group", "demo_user"),
            vo="demo", status="Waiting", minor_status="Pilot Agent Submission",
            original_jdl="[]", job_type=(j.get("job_types") or ["User"])[0],
            job_group=j.get("job_group", ""), user_priority=j.get("priority", 1))
            for j in jobs_], now=NOW, source="JobManager")
        conn.execute(sa.update(job_jdls).where(job_jdls.c.job_id.in_(ids))
                     .values(processed_jdl="[ Executable = \"ls\"; ]"))
        queued = []
        for job_id, spec in zip(ids, jobs_, strict=True):
            fields = {k: v for k, v in spec.items() if k != "job_group"}
            queued.append(TQJob(**{"job_id": job_id, "owner": "alice", "owner_group": "demo_user",
                                   "vo": "demo", "cpu_time": 3600, **fields}))
        enqueue_jobs(conn, queued, NOW, rng=rng)
    return ids


def match(engine: Engine, resource: dict[str, Any] | None = None, *,
          settings: MatchSettings | None = None, scope: MatchScope | None = SCOPE,
          now: datetime = NOW, rng: random.Random | None = None) -> int | None:
    """The matched job ID, or None for "no match"."""
    desc = {"Site": SITE, "CPUTime": 86400, **(resource or {})}
    try:
        return match_job(engine, desc, settings=settings or MatchSettings(), scope=scope,
                         now=now, rng=rng).job_id
    except NoMatchError:
        return None


def test_claim_sets_status_site_logging_and_leaves_the_queue(engine: Engine) -> None:
    [job_id] = add_waiting(engine, [{}])
    result = match_job(engine, {"Site": SITE, "CPUTime": 86400, "GridCE": "ce1.cern.ch"},
                       settings=MatchSettings(), scope=SCOPE, now=NOW)
    assert result.as_dirac() == {"JDL": "[ Executable = \"ls\"; ]", "JobID": job_id,
                                 "Owner": "alice", "Group": "demo_user",
                                 "PilotInfoReportedFlag": True}
    with engine.connect() as conn:
        row = jobs_db.status_of(conn, [job_id])[job_id]
        assert (row.status, row.minor_status, row.application_status, row.site) == (
            "Matched", "Assigned", "Unknown", SITE)
        assert jobs_db.logging_of(conn, job_id)[-1][::4] == ("Matched", "Matcher")
        assert conn.execute(sa.select(sa.func.count()).select_from(tq_jobs)).scalar() == 0
    assert match(engine) is None


@pytest.mark.parametrize(("job", "yes", "no"), [
    ({"sites": [SITE]}, [{}], [{"Site": "LCG.Other.org"}]),
    ({"banned_sites": [SITE]}, [{"Site": "LCG.Other.org"}], [{}]),
    ({"grid_ces": ["ce1"]}, [{"GridCE": "ce1"}, {"GridCE": "ANY"}], [{}, {"GridCE": "ce2"}]),
    ({"platforms": ["EL9"]}, [{"Platform": "EL9"}, {"Platforms": ["EL8", "EL9"]}],
     [{}, {"Platform": "EL8"}]),
    ({"cpu_time": 3000}, [{"CPUTime": 3600}], [{"CPUTime": 3599}]),
    ({"job_types": ["Test"]}, [{}, {"JobType": ["User", "Test"]}], [{"JobType": "User"}]),
    ({"tags": ["GPU"]}, [{"Tag": ["GPU", "SSD"]}, {"Tag": "SSD,GPU"}, {"Tag": "ANY"}],
     [{}, {"Tag": ["SSD"]}]),
    ({}, [{"Tag": ["GPU"]}], [{"RequiredTag": "GPU", "Tag": "GPU"}]),
    ({"tags": ["GPU"]}, [{"RequiredTag": ["GPU"], "Tag": ["GPU"]}], []),
    ({"owner_group": "demo_admin"}, [{"OwnerGroup": "demo_admin"}], [{"OwnerGroup": "other"}]),
])
def test_each_requirement(engine: Engine, job: dict[str, Any], yes: list[dict[str, Any]],
                          no: list[dict[str, Any]]) -> None:
    for resource in no:
        add_waiting(engine, [job])
        assert match(engine, resource) is None, resource
        with engine.begin() as conn:
            conn.execute(sa.delete(tq_jobs))
    for resource in yes:
        [job_id] = add_waiting(engine, [job])
        assert match(engine, resource) == job_id, resource


def _described(jdl: str) -> TQJob:
    desc = describe_job(parse_jdl(jdl), owner="alice", owner_group="demo_user", vo="demo")
    return tq_job_from_description(0, desc)


def test_processors_ram_and_whole_node(engine: Engine) -> None:
    kinds = {"single": "Executable = \"x\";",
             "four": "Executable = \"x\"; NumberOfProcessors = 4;",
             "whole": "Executable = \"x\"; WholeNode = true;",
             "ram": "Executable = \"x\"; MaxRAM = 2500;"}
    for resource, takes in [
        ({"NumberOfProcessors": 1}, ["single"]),
        ({"NumberOfProcessors": 8}, ["single", "four"]),
        ({"NumberOfProcessors": 8, "WholeNode": True}, ["single", "four", "whole"]),
        ({"NumberOfProcessors": 3, "WholeNode": "False"}, ["single"]),
        ({"MaxRAM": 2000}, ["single"]),
        ({"MaxRAM": 4000}, ["single", "ram"]),
    ]:
        specs = {name: _described(text).__dict__ for name, text in kinds.items()}
        ids = dict(zip(kinds, add_waiting(engine, [{k: v for k, v in s.items() if k != "job_id"}
                                                   for s in specs.values()]), strict=True))
        got = set()
        while (job_id := match(engine, resource)) is not None:
            got.add(job_id)
        assert got == {ids[name] for name in takes}, resource
        with engine.begin() as conn:
            conn.execute(sa.delete(tq_jobs))


def test_site_mask_ban_allow_and_unknown_sites(engine: Engine) -> None:
    add_waiting(engine, [{}, {}])
    with write_transaction(engine) as conn:
        mask_db.set_site_status(conn, SITE, "Banned", author="admin", comment="down", now=NOW)
    assert match(engine) is None
    strict = MatchSettings(unknown_sites_allowed=False)
    assert match(engine, {"Site": "LCG.Unknown.org"}, settings=strict) is None
    assert match(engine, {"Site": "LCG.Unknown.org"}) is not None
    with write_transaction(engine) as conn:
        mask_db.set_site_status(conn, SITE, "Active", author="admin", comment="up", now=NOW)
    assert match(engine, settings=strict) is not None


def test_running_limits_per_attribute(engine: Engine) -> None:
    add_waiting(engine, [{} for _ in range(3)] + [{"job_types": ["Test"]}])
    settings = MatchSettings(running_limits={SITE: {"JobType": {"User": 2}}})
    first = [match(engine, settings=settings) for _ in range(4)]
    assert first[3] is None and None not in first[:3]
    assert match(engine, {"Site": "LCG.Other.org"}, settings=settings) is not None
    # a job-level attribute (not part of the task queue)
    add_waiting(engine, [{"job_group": "g1"}, {"job_group": "g1"}, {"job_group": "g2"}])
    settings = MatchSettings(running_limits={"LCG.X.org": {"JobGroup": {"g1": 1}}})
    got = [match(engine, {"Site": "LCG.X.org"}, settings=settings) for _ in range(3)]
    assert got[2] is None and None not in got[:2]


def test_matching_delay(engine: Engine) -> None:
    add_waiting(engine, [{}, {}, {"job_types": ["Test"]}])
    settings = MatchSettings(matching_delays={SITE: {"JobType": {"User": 60}}})
    assert match(engine, {"JobType": "User"}, settings=settings) is not None
    assert match(engine, {"JobType": "User"}, settings=settings) is None
    assert match(engine, settings=settings) is not None  # the Test job
    later = NOW + timedelta(seconds=61)
    assert match(engine, settings=settings, now=later) is not None


def test_group_shares_and_owner_split(engine: Engine) -> None:
    rng = random.Random(7)
    add_waiting(engine, [{"owner_group": "prod", "owner": "p"} for _ in range(150)]
                + [{"owner": "alice"} for _ in range(75)] + [{"owner": "bob"} for _ in range(75)],
                rng=rng)
    settings = MatchSettings(shares={"prod": 3000, "demo_user": 1000})
    owners = Counter()
    with engine.connect() as conn:
        owner_of = dict(conn.execute(sa.select(jobs.c.job_id, jobs.c.owner)).all())
    for _ in range(120):
        job_id = match(engine, settings=settings, rng=rng)
        assert job_id is not None
        owners[owner_of[job_id]] += 1
    # expected 90 / 15 / 15; the seed makes it deterministic, the bounds make it meaningful
    assert 78 <= owners["p"] <= 102, owners
    assert 5 <= owners["alice"] <= 25 and 5 <= owners["bob"] <= 25, owners


def test_user_priority(engine: Engine) -> None:
    rng = random.Random(11)
    low = set(add_waiting(engine, [{"priority": 1} for _ in range(60)], rng=rng))
    high = set(add_waiting(engine, [{"priority": 9} for _ in range(60)], rng=rng))
    got = [match(engine, rng=rng) for _ in range(40)]
    assert sum(j in high for j in got) >= 30 and all(j in low | high for j in got)
    view = matching_task_queues(engine, {"Site": SITE, "CPUTime": 86400},
                                settings=MatchSettings())
    assert sorted(v["UserPriority"] for v in view.values()) == [1, 9]


def test_scopes_restrict_groups_and_owners(engine: Engine) -> None:
    add_waiting(engine, [{"owner": "bob"}, {"owner_group": "demo_admin", "owner": "admin"}])
    pilot = Identity(auth_method="token", username="pilot", group="demo_pilot", vo="demo",
                     properties=frozenset({"GenericPilot"}), valid_dn=True, valid_group=True,
                     scopes=frozenset({"match:group:demo_admin"}))
    assert scope_for(pilot) == MatchScope("demo", ("demo_admin",), None)
    user = Identity(auth_method="token", username="alice", group="demo_user", vo="demo",
                    properties=frozenset({"NormalUser"}), valid_dn=True, valid_group=True)
    assert match(engine, scope=scope_for(user)) is None
    assert match(engine, scope=MatchScope("other")) is None
    assert match(engine, scope=scope_for(pilot)) is not None
    assert match(engine, scope=scope_for(pilot)) is None
    assert match(engine, {"Owner": "bob"}) is not None


def test_jobs_no_longer_waiting_are_skipped_and_dropped(engine: Engine) -> None:
    first, second = add_waiting(engine, [{}, {}])
    with engine.begin() as conn:
        conn.execute(sa.update(jobs).where(jobs.c.job_id == first).values(status="Killed"))
    assert match(engine) == second
    assert match(engine) is None
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tq_jobs)).scalar() == 0


def test_requested_job_id_dequeue_and_empty_queue_reuse(engine: Engine) -> None:
    ids = add_waiting(engine, [{}, {}, {"sites": ["LCG.Other.org"]}])
    assert match(engine, {"JobID": ids[1]}) == ids[1]
    assert match(engine, {"JobID": ids[2]}) is None  # not at this site
    with write_transaction(engine) as conn:
        dequeue_jobs(conn, ids)
    assert remove_empty_task_queues(engine) == 2
    add_waiting(engine, [{}])
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(task_queues)).scalar() == 1


def test_parse_resource() -> None:
    res = parse_resource({"Site": SITE, "CPUTime": "1000", "Tag": "'A', B", "RequiredTag": "C",
                          "NumberOfProcessors": "2", "Platform": "ANY", "JobType": "User"})
    assert res.cpu_time == 1000 and res.platforms is None and res.job_types == ("User",)
    assert res.tags == ("A", "B", "C", "2Processors", "MultiProcessor")
    assert res.grid_ces == () and res.required_tags == ("C",)
    jdl = parse_resource('[ Site = "X"; CPUTime = 10; GridCE = "ce"; ]')
    assert (jdl.site, jdl.grid_ces) == ("X", ("ce",))
    assert offered_tags([], 1, 999, True) == ["WholeNode"]
    with pytest.raises(InvalidArgumentError):
        parse_resource({"Site": SITE, "CPUTime": "lots"})
    with pytest.raises(InvalidArgumentError):
        match_job(make_engine("sqlite://"), {"CPUTime": 1}, settings=MatchSettings(),
                  scope=SCOPE)


# -- no double match under concurrency ---------------------------------------------------------

PROCESSES = 50
JOBS = 300


def pilot_process(url: str, start: Any, out: Any) -> None:
    """A pilot process: match until three misses in a row, then report the job IDs."""
    engine = make_engine(url, pool_size=1, max_overflow=0) if url.startswith("mysql") \
        else make_engine(url)
    got: list[int] = []
    misses = 0
    start.wait()
    while misses < 3:
        try:
            got.append(match_job(engine, {"Site": SITE, "CPUTime": 86400},
                                 settings=MatchSettings(), scope=SCOPE).job_id)
            misses = 0
        except NoMatchError:
            misses += 1
            time.sleep(0.05)
    engine.dispose()
    out.put(got)


@pytest.mark.timeout(400)  # 50 interpreters start on 2 shared cores: minutes when loaded
def test_no_double_match_with_50_processes(engine: Engine, db_url: str) -> None:
    ids = add_waiting(engine, [{"owner": f"u{i % 7}", "priority": i % 3} for i in range(JOBS)])
    engine.dispose()
    # children forked from a fork server that has imported this module (and so SQLAlchemy
    # and the matcher) once: 50 spawned interpreters would each import it all again
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=pilot_process, args=(db_url, start, out))
             for _ in range(PROCESSES)]
    for proc in procs:
        proc.start()
    start.set()
    matched: list[int] = []
    for _ in procs:
        matched += out.get(timeout=360)
    for proc in procs:
        proc.join(10)
    assert len(matched) == len(set(matched)), "a job was given to two pilots"
    assert sorted(matched) == sorted(ids)
    with engine.connect() as conn:
        statuses = Counter(conn.execute(sa.select(jobs.c.status)).scalars())
    assert statuses == {"Matched": JOBS}
