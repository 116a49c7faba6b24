"""Fair share (issue 16): with saturated queues, the matcher, fed by many concurrent pilots,
hands out jobs to groups in the ratio of their ``JobShare`` and, inside a group, equally to
its owners (DIRAC's TaskQueueDB rule, :func:`wms.logic.task_queues.tq_weights`).

Real databases (SQLite and MariaDB), the real ``match_job`` claim, pilot threads each with its
own random generator. The tolerance is the issue's +-2 % at 10,000 matches (4.4 standard
deviations of a 70/30 binomial draw: a correct matcher fails it about once in 10^5 runs), and
4.5 standard deviations for the smaller MariaDB run; the end-to-end figure under HTTPS load is
``bench/load.py``'s.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.config.schema import Config
from core.db import init_schema, make_engine, write_transaction
from core.exceptions import NoMatchError
from wms.db import jobs as jobs_db
from wms.db.schema import WMS_SCHEMA
from wms.db.tables import job_jdls, job_logging, jobs
from wms.logic.matching import MatchScope, MatchSettings, TQJob, enqueue_jobs, match_job

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
SITE = "LCG.Share.test"
RESOURCE = {"Site": SITE, "CPUTime": 86400, "Platform": "EL9", "Tag": ["GPU"]}
#: requirement variants, so that each owner has several task queues
VARIANTS: list[dict[str, tuple[str, ...]]] = [
    {}, {"sites": (SITE,)}, {"platforms": ("EL9",)}, {"tags": ("GPU",)}]


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_schema(eng, WMS_SCHEMA)
    yield eng
    eng.dispose()


def fill(engine: Engine, owners: dict[tuple[str, str], int], priorities: tuple[int, ...] = (1,),
         ) -> None:
    """Waiting jobs, queued: ``owners`` maps (owner, group) to a number of jobs."""
    rng = random.Random(5)
    for (owner, group), count in owners.items():
        for start in range(0, count, 1000):
            n = min(1000, count - start)
            with write_transaction(engine) as conn:
                ids = jobs_db.insert_jobs(conn, [jobs_db.NewJob(
                    owner=owner, owner_group=group, vo="demo", status="Waiting",
                    minor_status="Pilot Agent Submission", original_jdl="[]")
                    for _ in range(n)], now=NOW, source="JobManager")
                conn.execute(sa.update(job_jdls).where(job_jdls.c.job_id.in_(ids))
                             .values(processed_jdl='[ Executable = "ls"; ]'))
                enqueue_jobs(conn, [TQJob(job_id=j, owner=owner, owner_group=group, vo="demo",
                                          cpu_time=600 * (1 + i % 3),
                                          priority=priorities[i % len(priorities)],
                                          **VARIANTS[i % len(VARIANTS)])  # type: ignore[arg-type]
                                    for i, j in enumerate(ids)], NOW, rng=rng)


def pilots(engine: Engine, settings: MatchSettings, total: int, threads: int,
           timeout: float) -> list[int]:
    """``threads`` pilots match until ``total`` matches; the matched job IDs."""
    got: list[int] = []
    lock = threading.Lock()
    failures: list[BaseException] = []
    deadline = time.monotonic() + timeout

    def pilot(seed: int) -> None:
        rng = random.Random(seed)
        misses = 0
        try:
            while time.monotonic() < deadline:
                with lock:
                    if len(got) >= total:
                        return
                try:
                    job = match_job(engine, RESOURCE, settings=settings,
                                    scope=MatchScope("demo"), rng=rng).job_id
                except NoMatchError:
                    misses += 1  # on MariaDB also: every queue head locked by other pilots
                    if misses > 50:
                        return
                    continue
                misses = 0
                with lock:
                    got.append(job)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failures.append(exc)

    workers = [threading.Thread(target=pilot, args=(seed,)) for seed in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout + 60)
    assert not failures, failures
    assert len(got) >= total, f"only {len(got)} matches in {timeout} s"
    return got


def by_owner(engine: Engine, job_ids: list[int]) -> Counter[tuple[str, str]]:
    with engine.connect() as conn:
        owner_of = {int(j): (str(o), str(g)) for j, o, g in conn.execute(
            sa.select(jobs.c.job_id, jobs.c.owner, jobs.c.owner_group))}
        matched_rows = Counter(int(j) for j in conn.execute(
            sa.select(job_logging.c.job_id).where(job_logging.c.status == "Matched")).scalars())
    assert len(set(job_ids)) == len(job_ids), "a job was matched twice"
    assert all(n == 1 for n in matched_rows.values()), "a job has two Matched rows"
    return Counter(owner_of[j] for j in job_ids)


def tolerance(p: float, n: int, sigmas: float) -> float:
    return sigmas * math.sqrt(p * (1 - p) / n)


@pytest.mark.timeout(900)
def test_two_groups_70_30_converge_under_many_pilots(engine: Engine) -> None:
    """The issue's figure: 70/30 shares, saturated queues, 10,000 matches (SQLite) or 3,000
    (MariaDB) by 8 concurrent pilots; group A has two owners, one of them with jobs of two
    priorities, group B three owners."""
    total = 10_000 if engine.dialect.name == "sqlite" else 3_000
    # saturated: no queue runs empty (an owner's priority-3 queues give 3/4 of its jobs)
    fill(engine, {("ann", "grp_a"): 7000, ("abe", "grp_a"): 7000,
                  ("bea", "grp_b"): 2000, ("bob", "grp_b"): 2000, ("bud", "grp_b"): 2000},
         priorities=(1, 3))
    settings = MatchSettings(shares={"grp_a": 70, "grp_b": 30}, candidate_cache_seconds=1.0,
                             share_refresh_seconds=1.0)
    got = pilots(engine, settings, total, threads=8, timeout=600)
    owners = by_owner(engine, got)
    n = len(got)
    share_a = (owners["ann", "grp_a"] + owners["abe", "grp_a"]) / n
    bound = max(0.02, tolerance(0.7, n, 4.5))
    print(f"\nfair share: {n} matches, group A {share_a * 100:.2f} % (70 +- "
          f"{bound * 100:.1f}), owners {dict(owners)}")
    assert abs(share_a - 0.7) <= bound, (share_a, owners)
    # inside a group, owners split the group's share equally (whatever their job priorities)
    for group, names in (("grp_a", ("ann", "abe")), ("grp_b", ("bea", "bob", "bud"))):
        in_group = sum(owners[o, group] for o in names)
        for owner in names:
            part = 1 / len(names)
            assert abs(owners[owner, group] / in_group - part) <= tolerance(
                part, in_group, 4.5), (owner, owners)


def test_a_group_without_jobs_leaves_its_share_to_the_others(engine: Engine) -> None:
    """Shares weigh only the queues that match: a group with nothing waiting takes nothing,
    and a share of 0 still gets jobs when no one else has any (DIRAC's minimum weight)."""
    fill(engine, {("ann", "grp_a"): 60, ("zed", "grp_z"): 30})
    settings = MatchSettings(shares={"grp_a": 70, "grp_b": 30, "grp_z": 0})
    got = pilots(engine, settings, 60, threads=1, timeout=300)
    owners = by_owner(engine, got)
    assert owners["ann", "grp_a"] >= 58, owners  # grp_z weighs 0.001 against 70
    rest = pilots(engine, settings, 90 - len(got), threads=2, timeout=300)
    assert by_owner(engine, got + rest)["zed", "grp_z"] == 30


def test_share_refresh_follows_the_matcher_options(config: Config) -> None:
    """``ShareRefreshSeconds`` (default 1 s, like ``CandidateCacheSeconds``): sums older than
    that may still count queues emptied meanwhile and under-weight their owners."""
    assert MatchSettings.from_config(config).share_refresh_seconds == 1.0
    data = config.model_dump(by_alias=True, exclude_none=True, mode="json")
    data.setdefault("Systems", {})["WorkloadManagement"] = {"Services": {"Matcher": {
        "Options": {"ShareRefreshSeconds": 5, "CandidateCacheSeconds": 2}}}}
    settings = MatchSettings.from_config(Config.model_validate(data))
    assert (settings.share_refresh_seconds, settings.candidate_cache_seconds) == (5.0, 2.0)
