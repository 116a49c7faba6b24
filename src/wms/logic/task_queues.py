"""Task queues: which waiting jobs share requirements, and how much each queue weighs.

A task queue groups the waiting jobs whose requirements are identical: owner, group, VO, CPU
time bucket, user priority and the sets of Sites, BannedSites, GridCEs, Platforms, JobTypes and
Tags (RAM and processors are tags: ``<N>Processors``, ``MultiProcessor``, ``WholeNode``,
``<N>GB``). The canonical form of these is hashed (SHA-256) into the queue's unique key, so that
concurrent enqueuers find or create the same queue.

* **CPU time** is bucketed like DIRAC's TaskQueueDB: 13 segments from 6 minutes to 12.5 days;
  a job goes to the smallest segment that is at least its CPU time (the last one otherwise).
* **User priority is part of the key** (DIRAC keeps it per job inside a queue): a queue's
  priority then never changes after it is created, so enqueuing never updates a queue row, and
  jobs of different priorities of one owner compete through their queues' weights.
* **Shares** (:func:`tq_weights`): a group's ``JobShare`` (default 1000) is split equally among
  the group's owners that have waiting jobs; an owner's part is split among the owner's
  non-empty queues in proportion to their job priority::

      weight(q) = max(JobShare(g) / owners(g) * priority(q) / sum(priority of o's queues),
                      0.001)

  The matcher picks a queue at random with probability weight / sum of the matching queues'
  weights, then the job with the smallest pick key ``-ln(U) / priority`` (drawn at enqueue):
  weighted sampling without replacement by job priority.
* **Empty queues** are kept and reused by later jobs with the same requirements; the matcher
  ignores them. :func:`remove_empty_task_queues` deletes them (race-safe, one queue per
  transaction), for an agent to call from time to time.
* **Resources**: :func:`parse_resource` reads DIRAC's ``resourceDescription`` (see
  :mod:`wms.logic.matching` for the keys) and :func:`offered_tags` derives the tags it offers.

Example::

    >>> cpu_bucket(100), cpu_bucket(86400), cpu_bucket(10**7)
    (360, 86400, 1080000)
    >>> job = TQJob(job_id=1, owner="alice", owner_group="user", vo="demo", cpu_time=3000,
    ...             priority=1, sites=("LCG.CERN.cern",), job_types=("User",))
    >>> tq_key(job) == tq_key(TQJob(**{**job.__dict__, "job_id": 2}))
    True
    >>> sorted(tq_weights([(1, "user", "alice", 1), (2, "user", "bob", 1),
    ...                    (3, "prod", "carol", 1)], {"user": 1000, "prod": 1000}).items())
    [(1, 500.0), (2, 500.0), (3, 1000.0)]
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

from core.db import write_transaction
from core.exceptions import InvalidArgumentError
from wms.db import task_queues as tq_db
from wms.logic.jdl import parse_jdl
from wms.logic.job_description import JobDescription

__all__ = [
    "CPU_SEGMENTS",
    "Resource",
    "DEFAULT_GROUP_SHARE",
    "TQ_MIN_WEIGHT",
    "TQJob",
    "cpu_bucket",
    "dequeue_jobs",
    "enqueue_jobs",
    "offered_tags",
    "parse_resource",
    "remove_empty_task_queues",
    "tq_job_from_description",
    "tq_key",
    "tq_weights",
]

#: DIRAC's CPU time segments (seconds): 6 min, 30 min, 1 h, 6 h, 12 h, 1-4 d, 6 d, 8 d, 10 d, 12.5 d
CPU_SEGMENTS: tuple[int, ...] = (
    6 * 60, 30 * 60, 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 3 * 86400, 4 * 86400,
    6 * 86400, 8 * 86400, 10 * 86400, int(12.5 * 86400),
)
DEFAULT_GROUP_SHARE = 1000
#: the smallest weight a non-empty queue gets (DIRAC's TQ_MIN_SHARE)
TQ_MIN_WEIGHT = 0.001
#: the smallest job priority used in pick keys (priority 0 jobs come last, not never)
_MIN_PICK_PRIORITY = 0.001


@dataclass(frozen=True)
class TQJob:
    """What the task queues need to know of one waiting job."""

    job_id: int
    owner: str
    owner_group: str
    vo: str
    cpu_time: int
    priority: int = 1
    sites: Sequence[str] = ()
    banned_sites: Sequence[str] = ()
    grid_ces: Sequence[str] = ()
    platforms: Sequence[str] = ()
    job_types: Sequence[str] = ("User",)
    tags: Sequence[str] = ()


def cpu_bucket(cpu_time: int | float) -> int:
    """The smallest CPU segment >= ``cpu_time`` (the largest segment beyond it)."""
    for segment in CPU_SEGMENTS:
        if cpu_time <= segment:
            return segment
    return CPU_SEGMENTS[-1]


def _requirements(job: TQJob) -> dict[str, list[str]]:
    return {
        "Site": sorted(set(job.sites)),
        "BannedSite": sorted(set(job.banned_sites)),
        "GridCE": sorted(set(job.grid_ces)),
        "Platform": sorted(set(job.platforms)),
        "JobType": sorted(set(job.job_types)),
        "Tag": sorted(set(job.tags)),
    }


def tq_key(job: TQJob) -> str:
    """The SHA-256 of the job's canonical requirements: equal for jobs sharing a queue."""
    canonical = json.dumps([job.owner, job.owner_group, job.vo, cpu_bucket(job.cpu_time),
                            int(job.priority), _requirements(job)],
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def tq_job_from_description(job_id: int, desc: JobDescription) -> TQJob:
    """The queue entry of a validated job description."""
    return TQJob(
        job_id=job_id, owner=desc.owner, owner_group=desc.owner_group, vo=desc.vo,
        cpu_time=desc.cpu_time, priority=desc.priority, sites=tuple(desc.sites),
        banned_sites=tuple(desc.banned_sites), grid_ces=tuple(desc.grid_ces),
        platforms=tuple(desc.platforms), job_types=(desc.job_type,),
        tags=tuple(desc.requirement_tags),
    )


def pick_key(priority: int, rng: random.Random | None = None) -> float:
    """A random key ``-ln(U) / priority``: the smallest key first is weighted by priority."""
    uniform = 1.0 - (rng or random).random()  # in (0, 1]
    return -math.log(uniform) / max(float(priority), _MIN_PICK_PRIORITY)


def enqueue_jobs(conn: Connection, jobs: Sequence[TQJob], now: datetime, *,
                 rng: random.Random | None = None, fresh: bool = False) -> None:
    """Put waiting jobs in their task queues, creating the queues that do not exist.

    Call it in the transaction that makes the jobs Waiting (on SQLite a
    :func:`~core.db.write_transaction`). A job already queued is moved. Statements: 1 when all
    queues exist, 4 when some must be created, plus 2 per 1000 jobs (1 with ``fresh``: jobs
    stored in this transaction are in no queue yet).
    """
    if not jobs:
        return
    new: dict[str, tq_db.NewTaskQueue] = {}
    keys: list[str] = []
    #: the key of jobs with equal requirements, hashed once (a bulk's jobs mostly share one)
    known: dict[tuple[Any, ...], str] = {}
    for job in jobs:
        same = (job.owner, job.owner_group, job.vo, job.cpu_time, job.priority,
                tuple(job.sites), tuple(job.banned_sites), tuple(job.grid_ces),
                tuple(job.platforms), tuple(job.job_types), tuple(job.tags))
        key = known.get(same) or known.setdefault(same, tq_key(job))
        keys.append(key)
        if key not in new:
            new[key] = tq_db.NewTaskQueue(
                req_hash=key, owner=job.owner, owner_group=job.owner_group, vo=job.vo,
                cpu_time=cpu_bucket(job.cpu_time), job_priority=int(job.priority),
                requirements={k: v for k, v in _requirements(job).items() if v})
    ids = tq_db.create_task_queues(conn, list(new.values()), now)
    tq_db.add_jobs(conn, [(job.job_id, ids[key], int(job.priority), pick_key(job.priority, rng))
                          for job, key in zip(jobs, keys, strict=True)], new=fresh)


def dequeue_jobs(conn: Connection, job_ids: Sequence[int]) -> None:
    """Take jobs out of the task queues (kill, reschedule, delete); one statement per 1000."""
    if job_ids:
        tq_db.remove_jobs(conn, list(job_ids))


def remove_empty_task_queues(engine: Engine) -> int:
    """Delete the queues without jobs, each in its own short transaction; returns how many."""
    with engine.connect() as conn:
        candidates = tq_db.empty_task_queue_ids(conn)
    removed = 0
    for tq_id in candidates:
        with write_transaction(engine) as conn:
            removed += tq_db.remove_empty_task_queue(conn, tq_id)
    return removed


def tq_weights(queues: Sequence[tuple[int, str, str, int]], shares: Mapping[str, int], *,
               owner_sums: Mapping[tuple[str, str], float] | None = None,
               group_owners: Mapping[str, int] | None = None) -> dict[int, float]:
    """tq_id -> weight for (tq_id, group, owner, job priority) queues (formula above).

    ``owner_sums`` ((group, owner) -> sum of priorities) and ``group_owners`` (group -> owners
    with jobs) default to what ``queues`` themselves give; the matcher passes the global values.
    """
    if owner_sums is None:
        sums: dict[tuple[str, str], float] = {}
        for _, group, owner, prio in queues:
            sums[(group, owner)] = sums.get((group, owner), 0.0) + prio
        owner_sums = sums
    if group_owners is None:
        counted: dict[str, int] = {}
        for group, _ in owner_sums:
            counted[group] = counted.get(group, 0) + 1
        group_owners = counted
    weights: dict[int, float] = {}
    for tq_id, group, owner, prio in queues:
        share = float(shares.get(group, DEFAULT_GROUP_SHARE)) / max(group_owners.get(group, 1), 1)
        total = owner_sums.get((group, owner), 0.0)
        weight = share * prio / total if prio > 0 and total > 0 else TQ_MIN_WEIGHT
        weights[tq_id] = max(weight, TQ_MIN_WEIGHT)
    return weights


# -- what a resource offers (DIRAC's resourceDescription) -------------------------------------


@dataclass(frozen=True)
class Resource:
    """A parsed resource description."""

    site: str | None
    cpu_time: int | None
    grid_ces: tuple[str, ...] | None
    platforms: tuple[str, ...] | None
    job_types: tuple[str, ...] | None
    tags: tuple[str, ...] | None
    required_tags: tuple[str, ...]
    owner_groups: tuple[str, ...] | None
    owners: tuple[str, ...] | None
    vo: str | None
    job_id: int | None
    queue: str | None = None
    pilot_reference: str | None = None
    pilot_benchmark: float | None = None


def _names(value: Any) -> list[str]:
    """A list of names from a list or a comma-separated string (DIRAC sends both)."""
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).strip("[]").split(",")
    return list(dict.fromkeys(str(item).strip("\"' ") for item in items if str(item).strip()))


def _first(desc: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in desc and desc[name] not in (None, ""):
            return desc[name]
    return None


def _number(desc: Mapping[str, Any], name: str) -> float | None:
    value = desc.get(name)
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"resource {name} must be a number, got {value!r}") from None


def _wildcard(values: list[str]) -> bool:
    return any(v.strip().lower() == "any" for v in values)


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() not in ("", "0", "false", "no", "none")


def offered_tags(tags: Sequence[str], processors: int | None, max_ram_mb: float | None,
                 whole_node: bool, *, gpus: int = 0, gpu_models: Sequence[str] = ()
                 ) -> list[str]:
    """The tags a resource offers: its own plus those of its processors, RAM, GPUs and node.

    >>> offered_tags(["GPU"], 4, 2500, False)
    ['GPU', '2Processors', '3Processors', '4Processors', 'MultiProcessor', '1GB', '2GB']
    >>> offered_tags([], 1, None, False, gpus=2, gpu_models=["A100"])
    ['GPU', '1GPUs', '2GPUs', 'GPU:A100']
    """
    out = list(tags)
    if processors and processors > 1:
        out += [f"{k}Processors" for k in range(2, min(processors, 1024) + 1)]
        out.append("MultiProcessor")
    if max_ram_mb:
        out += [f"{k}GB" for k in range(1, min(int(max_ram_mb / 1000), 1024) + 1)]
    if whole_node:
        out.append("WholeNode")
    if gpus > 0:
        out += ["GPU"] + [f"{k}GPUs" for k in range(1, min(gpus, 64) + 1)]
        out += [f"GPU:{model}" for model in gpu_models if model]
    return list(dict.fromkeys(out))


def parse_resource(description: Mapping[str, Any] | str) -> Resource:
    """Read DIRAC's resourceDescription (a dict, or a JDL text as old pilots send)."""
    desc: Mapping[str, Any] = (dict(parse_jdl(description).items())
                               if isinstance(description, str) else description)
    sites = _names(desc.get("Site"))
    if len(sites) > 1:
        raise InvalidArgumentError("resource Site must be one site")
    site = sites[0] if sites and not _wildcard(sites) else None

    def values(*names: str) -> tuple[str, ...] | None:
        found = _names(_first(desc, *names))
        return None if _wildcard(found) else tuple(found)

    tags = _names(_first(desc, "Tag", "Tags"))
    required = tuple(_names(_first(desc, "RequiredTag", "RequiredTags")))
    cpu = _number(desc, "CPUTime")
    processors = _number(desc, "NumberOfProcessors")
    job_id = _number(desc, "JobID")
    benchmark = _number(desc, "PilotBenchmark")
    gpus = _number(desc, "NumberOfGPUs")
    offered = None if _wildcard(tags) else tuple(offered_tags(
        tags + list(required), int(processors) if processors else None,
        _number(desc, "MaxRAM"), "WholeNode" in desc and _truthy(desc["WholeNode"]),
        gpus=int(gpus or 0), gpu_models=_names(_first(desc, "GPUModel", "GPUModels"))))
    job_types = values("JobType", "JobTypes")
    return Resource(
        site=site,
        cpu_time=int(cpu) if cpu is not None else None,
        grid_ces=values("GridCE", "GridCEs"),
        platforms=values("Platform", "Platforms"),
        job_types=job_types or None,
        tags=offered,
        required_tags=required,
        owner_groups=tuple(_names(desc["OwnerGroup"])) if desc.get("OwnerGroup") else None,
        owners=tuple(_names(desc["Owner"])) if desc.get("Owner") else None,
        vo=str(desc["VirtualOrganization"]) if desc.get("VirtualOrganization") else None,
        job_id=int(job_id) if job_id is not None else None,
        queue=str(_first(desc, "Queue", "CEQueue")) if _first(desc, "Queue", "CEQueue")
        else None,
        pilot_reference=str(desc["PilotReference"]) if desc.get("PilotReference") else None,
        pilot_benchmark=benchmark,
    )
