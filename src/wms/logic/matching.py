"""The matcher: hand each waiting job to exactly one pilot whose resource fits it.

**What a resource offers** (:func:`parse_resource`, DIRAC's ``resourceDescription`` keys):
``Site`` (mandatory), ``GridCE``, ``Queue``/``CEQueue``, ``Platform``/``Platforms``,
``JobType``, ``CPUTime``, ``NumberOfProcessors``, ``MaxRAM`` (MB), ``WholeNode``,
``NumberOfGPUs``, ``GPUModel``/``GPUModels`` (pilotwms: N GPUs offer ``GPU``, ``<k>GPUs`` for
1 <= k <= N and ``GPU:<model>``),
``Tag``/``Tags``, ``RequiredTag``/``RequiredTags`` (lists or comma-separated strings),
``OwnerGroup``, ``Owner``, ``VirtualOrganization``, ``JobID``, ``PilotReference``,
``PilotBenchmark``; ``ANY`` is a wildcard. N processors offer the tags ``<k>Processors`` for
2 <= k <= N and ``MultiProcessor`` when N > 1; ``WholeNode`` only when the resource says so;
MaxRAM offers ``<k>GB`` for 1 <= k <= MaxRAM/1000 (DIRAC's rounding); required tags are offered
too.

**Rules.** A task queue matches when: its VO is the caller's and its group/owner are allowed
(a GenericPilot takes any group of its VO unless its token scopes say ``match:group:<g>`` /
``match:owner:<u>``, or the resource names ``OwnerGroup``/``Owner``; other callers take only
their own jobs); its CPU-time bucket is <= the resource's CPUTime; for Site, GridCE, Platform and
JobType it has no requirement or one of the resource's values (a resource without GridCE or
Platform only takes queues without that requirement; without JobType, any type); the site is
not among its BannedSites; all its tags are offered and it has every required tag; the site is
not Banned in the site mask (sites never set are allowed unless ``unknown_sites_allowed`` is
off); and no running limit (``Operations.JobScheduling.RunningLimit``: Running, Matched and
Stalled jobs at the site with that attribute value, as DIRAC counts) or matching delay
(``MatchingDelay``: seconds after a match of that value at the site) excludes it.

**Choice.** Among the matching queues one is drawn with probability proportional to its
weight (:func:`wms.logic.task_queues.tq_weights`: group JobShare split among the group's owners
with waiting jobs, then among the owner's queues by job priority); in it, the job with the
smallest pick key ``-ln(U)/priority`` is taken (weighted by priority).

**Claim** (one transaction): one SELECT of the queue's head job joined to its job row and
JDL; on MariaDB ``FOR UPDATE SKIP LOCKED`` locks them and skips a job whose queue or job row
another transaction holds (the queue's next job is taken instead), on SQLite writers are
serialised by ``BEGIN IMMEDIATE``. The site mask is checked in the same statement. Then a
compare-and-set Waiting -> Matched / "Assigned" / ApplicationStatus "Unknown" with the pilot's
Site, a logging record (source "Matcher") and the removal from the queue. An empty queue (or
one whose jobs are all held) is dropped and another drawn; a job no longer Waiting is removed
from its queue and skipped.

**SQL statements per match**: MariaDB 5 (matching queues, claim, update, logging insert, queue
delete) + COMMIT; SQLite 5 + BEGIN IMMEDIATE/COMMIT, the queues being read from a WAL snapshot
before the write lock is taken (held for 4 statements). +1 every
``share_refresh_seconds`` per process (owners' priority sums), +1 per limited attribute when
the site has running limits, +2 with matching delays; the matching queues of a resource may be
reused for ``candidate_cache_seconds`` (not at limited sites). Statements are built once and
cached, values bound. DIRAC needs ~10 per match.

Example::

    >>> from datetime import datetime, timezone
    >>> from core.db import init_schema, make_engine, write_transaction
    >>> from wms.db import jobs as jobs_db
    >>> from wms.db.schema import WMS_SCHEMA
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, WMS_SCHEMA)
    >>> now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> with write_transaction(engine) as conn:
    ...     [job_id] = jobs_db.insert_jobs(conn, [jobs_db.NewJob(
    ...         owner="alice", owner_group="user", vo="demo", status="Waiting",
    ...         minor_status="Pilot Agent Submission", original_jdl="[]")],
    ...         now=now, source="JobManager")
    ...     enqueue_jobs(conn, [TQJob(job_id, "alice", "user", "demo", 3600)], now)
    >>> scope = MatchScope(vo="demo")
    >>> result = match_job(engine, {"Site": "LCG.CERN.cern", "CPUTime": 86400},
    ...                    settings=MatchSettings(), scope=scope, now=now)
    >>> result.as_dirac()["JobID"] == job_id, result.owner_group
    (True, 'user')
    >>> match_job(engine, {"Site": "LCG.CERN.cern", "CPUTime": 86400},
    ...           settings=MatchSettings(), scope=scope, now=now)
    Traceback (most recent call last):
    ...
    core.exceptions.NoMatchError: No match found
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.engine import Connection, Engine

from core.config.schema import Config
from core.db import retry_conflicts, utcnow, write_transaction
from core.exceptions import InvalidArgumentError, NoMatchError
from core.security.identity import Identity
from wms.db import jobs as jobs_db
from wms.db import site_mask as mask_db
from wms.db import task_queues as tq_db
from wms.db.tables import JOB_ATTRIBUTES
from wms.logic.states import JobStatus, MinorStatus
from wms.logic.task_queues import (
    Resource,
    TQJob,
    dequeue_jobs,
    enqueue_jobs,
    offered_tags,
    parse_resource,
    remove_empty_task_queues,
    tq_job_from_description,
    tq_weights,
)

__all__ = [
    "MatchResult",
    "MatchScope",
    "MatchSettings",
    "Resource",
    "TQJob",
    "active_task_queues",
    "dequeue_jobs",
    "enqueue_jobs",
    "match_job",
    "matching_task_queues",
    "offered_tags",
    "parse_resource",
    "remove_empty_task_queues",
    "scope_for",
    "tq_job_from_description",
]

log = logging.getLogger(__name__)
SOURCE = "Matcher"
#: statuses counted against running limits (DIRAC's Limiter)
LIMITED_STATUSES = (JobStatus.RUNNING, JobStatus.MATCHED, JobStatus.STALLED)
#: job attributes a running limit applies to at queue level (else at job level)
_TQ_LEVEL = {"JobType": "JobType", "Owner": "Owner", "OwnerGroup": "OwnerGroup", "VO": "VO"}
Limits = Mapping[str, Mapping[str, Mapping[str, int]]]


@dataclass(frozen=True)
class MatchSettings:
    """The configuration the matcher uses."""

    #: group -> JobShare (groups not listed: 1000)
    shares: Mapping[str, int] = field(default_factory=dict)
    running_limits: Limits = field(default_factory=dict)
    matching_delays: Limits = field(default_factory=dict)
    #: sites never set in the mask may match (False: only sites marked Active)
    unknown_sites_allowed: bool = True
    #: queues tried per request before answering "no match"
    max_attempts: int = 20
    #: seconds a process keeps the per-owner priority sums used by the shares; sums that
    #: still count a queue emptied meanwhile under-weight its owner (and its group's other
    #: owners), so keep this near ``candidate_cache_seconds``
    share_refresh_seconds: float = 1.0
    #: seconds a process reuses the matching queues of one resource description (0: never;
    #: never for sites with running limits or matching delays)
    candidate_cache_seconds: float = 0.0

    @classmethod
    def from_config(cls, config: Config) -> MatchSettings:
        """From the registry (JobShare), Operations.JobScheduling and the Matcher's options
        (``UnknownSitesAllowed``, ``MaxAttempts``, ``CandidateCacheSeconds`` and
        ``ShareRefreshSeconds``, both default 1)."""
        options = config.service_config("WorkloadManagement", "Matcher").options
        scheduling = config.operations.job_scheduling
        return cls(
            shares={name: group.job_share for name, group in config.registry.groups.items()},
            running_limits=scheduling.running_limit,
            matching_delays=scheduling.matching_delay,
            unknown_sites_allowed=bool(options.get("UnknownSitesAllowed", True)),
            max_attempts=int(options.get("MaxAttempts", 20)),
            candidate_cache_seconds=float(options.get("CandidateCacheSeconds", 1.0)),
            share_refresh_seconds=float(options.get("ShareRefreshSeconds", 1.0)),
        )


@dataclass(frozen=True)
class MatchScope:
    """Whose jobs a caller may take: a VO, and optionally only some groups and owners."""

    vo: str | None
    owner_groups: tuple[str, ...] | None = None
    owners: tuple[str, ...] | None = None


def scope_for(identity: Identity, resource_vo: str | None = None) -> MatchScope:
    """The scope of a caller (DIRAC's ``_checkCredentials``).

    A GenericPilot takes jobs of any group of its VO (a host: of ``VirtualOrganization``);
    token scopes ``match:group:<g>`` and ``match:owner:<u>`` narrow that. Anyone else takes
    only jobs of its own group (JobSharing) or its own user and group.
    """
    vo = identity.vo or resource_vo
    if not vo:
        raise InvalidArgumentError("the resource must give its VirtualOrganization")
    if "GenericPilot" in identity.properties:
        groups = tuple(sorted(s[12:] for s in identity.scopes if s.startswith("match:group:")))
        owners = tuple(sorted(s[12:] for s in identity.scopes if s.startswith("match:owner:")))
        return MatchScope(vo, groups or None, owners or None)
    group = (identity.group or "",)
    if "JobSharing" in identity.properties:
        return MatchScope(vo, group)
    return MatchScope(vo, group, (identity.username or "",))


@dataclass(frozen=True)
class MatchResult:
    """A claimed job, and what DIRAC's matcher replies (:meth:`as_dirac`)."""

    job_id: int
    jdl: str
    owner: str
    owner_group: str
    vo: str
    site: str
    tq_id: int
    resource: Resource | None = None
    #: the job's reschedule counter when matched: reports of an earlier attempt are refused
    attempt: int = 0

    def as_dirac(self) -> dict[str, Any]:
        """DIRAC's requestJob value: JDL, JobID, Owner, Group, PilotInfoReportedFlag."""
        return {"JDL": self.jdl, "JobID": self.job_id, "Owner": self.owner,
                "Group": self.owner_group, "PilotInfoReportedFlag": True}


def _narrow(allowed: tuple[str, ...] | None, asked: tuple[str, ...] | None
            ) -> tuple[str, ...] | None:
    if allowed is None:
        return asked
    if asked is None:
        return allowed
    return tuple(x for x in asked if x in allowed)


def _filter(res: Resource, scope: MatchScope | None, settings: MatchSettings,
            *, with_site_mask: bool = True) -> tq_db.TQFilter:
    groups = _narrow(scope.owner_groups if scope else None, res.owner_groups)
    owners = _narrow(scope.owners if scope else None, res.owners)
    vo = scope.vo if scope else res.vo
    if scope is not None and res.vo is not None and res.vo != scope.vo:
        groups = ()  # a pilot of one VO asking for another VO's jobs gets none
    offered: dict[str, Sequence[str] | None] = {
        "Site": [res.site] if res.site else None,
        "GridCE": res.grid_ces, "Platform": res.platforms, "JobType": res.job_types}
    mask: Literal["ignore", "not_banned", "active"] = (
        "ignore" if res.site is None or not with_site_mask else
        "not_banned" if settings.unknown_sites_allowed else "active")
    return tq_db.TQFilter(vo=vo, owner_groups=groups, owners=owners, cpu_time=res.cpu_time,
                          site=res.site, site_mask=mask, offered=offered, tags=res.tags,
                          required_tags=res.required_tags)


def _negative_conditions(conn: Connection, site: str, settings: MatchSettings, now: datetime,
                         *, job_level: bool = False
                         ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(queue-level, job-level) exclusions from the site's running limits and delays; with
    ``job_level`` every exclusion is applied to jobs."""
    excluded: dict[str, list[str]] = {}
    for attribute, limits in settings.running_limits.get(site, {}).items():
        if attribute not in JOB_ATTRIBUTES:
            log.warning("RunningLimit/%s/%s: not a job attribute, ignored", site, attribute)
            continue
        counts = mask_db.running_counts(conn, site, attribute, list(limits), LIMITED_STATUSES)
        for value, limit in limits.items():
            if counts.get(value, 0) >= limit:
                excluded.setdefault(attribute, []).append(value)
    if settings.matching_delays.get(site):
        for attribute, values in mask_db.active_delays(conn, site, now).items():
            excluded.setdefault(attribute, []).extend(values)
    if job_level:
        return {}, excluded
    return ({_TQ_LEVEL[a]: v for a, v in excluded.items() if a in _TQ_LEVEL},
            {a: v for a, v in excluded.items() if a not in _TQ_LEVEL})


def _weighted_choice(weights: dict[int, float], rng: random.Random) -> int:
    ids = list(weights)
    return rng.choices(ids, weights=[weights[i] for i in ids])[0]


OnMatch = Callable[[Connection, MatchResult], None]


_share_cache: dict[str, tuple[float, dict[tuple[str, str], float]]] = {}


def _owner_sums(conn: Connection, settings: MatchSettings) -> dict[tuple[str, str], float]:
    """(group, owner) -> priority sum, cached per process for ``share_refresh_seconds``."""
    key = conn.engine.url.render_as_string(hide_password=True)
    cached = _share_cache.get(key)
    if cached is not None and time.monotonic() - cached[0] < settings.share_refresh_seconds:
        return cached[1]
    sums = tq_db.share_data(conn)
    _share_cache[key] = (time.monotonic(), sums)
    return sums


_candidate_cache: dict[tuple[Any, ...], tuple[float, dict[int, float]]] = {}


def _candidate_weights(conn: Connection, flt: tq_db.TQFilter, settings: MatchSettings,
                       *, cacheable: bool = False) -> dict[int, float]:
    """tq_id -> weight of the matching queues (a copy: callers may drop entries).

    With ``cacheable`` and ``candidate_cache_seconds`` > 0 a non-empty answer is reused by
    this process for that long (claims re-check everything; an emptied queue costs one more
    draw; a new queue waits at most that long)."""
    key: tuple[Any, ...] = ()
    if cacheable and settings.candidate_cache_seconds > 0:
        key = (conn.engine.url.render_as_string(hide_password=True), repr(flt))
        cached = _candidate_cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < settings.candidate_cache_seconds:
            return dict(cached[1])
    weights = _compute_weights(conn, flt, settings)
    if key and weights:
        if len(_candidate_cache) > 1000:
            _candidate_cache.clear()
        _candidate_cache[key] = (time.monotonic(), weights)
    return dict(weights)


def _compute_weights(conn: Connection, flt: tq_db.TQFilter, settings: MatchSettings
                     ) -> dict[int, float]:
    candidates = tq_db.matching_task_queues(conn, flt)
    if not candidates:
        return {}
    sums = _owner_sums(conn, settings)
    if any((c.owner_group, c.owner) not in sums for c in candidates):
        _share_cache.clear()  # a new owner since the last refresh
        sums = _owner_sums(conn, settings)
    owners: dict[str, int] = {}
    for group, _ in sums:
        owners[group] = owners.get(group, 0) + 1
    return tq_weights([(c.tq_id, c.owner_group, c.owner, c.job_priority) for c in candidates],
                      settings.shares, owner_sums=sums, group_owners=owners)


# every matcher wants the head job of the best queue: on Galera the matchers of other nodes do
# not see our row locks and collide at commit, so a claim may lose several times in a row
@retry_conflicts(attempts=10)
def match_job(engine: Engine, resource: Mapping[str, Any] | str | Resource, *,
              settings: MatchSettings, scope: MatchScope | None, now: datetime | None = None,
              rng: random.Random | None = None, on_match: OnMatch | None = None) -> MatchResult:
    """Claim one waiting job for ``resource`` (see the module docstring) or raise
    :class:`~core.exceptions.NoMatchError`. ``on_match`` runs in the claim's transaction (e.g.
    to record the pilot -> job mapping)."""
    res = resource if isinstance(resource, Resource) else parse_resource(resource)
    if res.site is None:
        raise InvalidArgumentError("Missing Site Name in Resource JDL")
    if res.cpu_time is None:
        raise InvalidArgumentError("resource CPUTime is mandatory")
    fixed = now is not None  # else the claim is stamped when its row is locked
    now = now or utcnow()
    rng = rng or random.Random()  # noqa: S311 - a scheduling draw, not a secret
    full = _filter(res, scope, settings)
    if full.owner_groups == () or full.owners == ():
        raise NoMatchError("No match found")
    # the site mask is checked by the claim statement itself (exact even with cached queues)
    base = replace(full, site_mask="ignore")
    site = res.site
    limited = bool(settings.running_limits.get(site) or settings.matching_delays.get(site))
    result: MatchResult | None = None
    if engine.dialect.name == "sqlite":
        # SQLite has one writer at a time: choose the queues from a WAL snapshot outside the
        # write lock, then re-check limits (at job level) and claim under it.
        with engine.connect() as conn:
            tq_excluded, _ = _negative_conditions(conn, site, settings, now)
            weights = _candidate_weights(conn, replace(base, exclude=tq_excluded), settings,
                                         cacheable=not limited)
        if weights:
            with write_transaction(engine) as conn:
                job_excluded = (_negative_conditions(conn, site, settings, now, job_level=True)[1]
                                if limited else {})
                result = _claim_loop(conn, weights, res, job_excluded, settings, now, rng,
                                     on_match, full.site_mask, fixed=fixed)
    else:
        with write_transaction(engine) as conn:
            tq_excluded, job_excluded = _negative_conditions(conn, site, settings, now)
            weights = _candidate_weights(conn, replace(base, exclude=tq_excluded), settings,
                                         cacheable=not limited)
            result = _claim_loop(conn, weights, res, job_excluded, settings, now, rng, on_match,
                                 full.site_mask, fixed=fixed)
    if result is None:
        raise NoMatchError("No match found")
    return result


def _claim_loop(conn: Connection, weights: dict[int, float], res: Resource,
                job_excluded: Mapping[str, Sequence[str]], settings: MatchSettings,
                now: datetime, rng: random.Random, on_match: OnMatch | None,
                mask: str, *, fixed: bool = True) -> MatchResult | None:
    """Draw queues and claim their head job until one is claimed (or attempts run out).

    Unless ``fixed``, the claim is stamped once its job row is locked, never earlier: a job
    committed while this request waited must not get a Matched logging row older than its
    Received one."""
    assert res.site is not None  # noqa: S101 - checked by match_job
    delays = settings.matching_delays.get(res.site, {})
    delay_attrs = [a for a in delays if a in JOB_ATTRIBUTES]
    stale: list[int] = []
    result: MatchResult | None = None
    for _ in range(settings.max_attempts):
        if not weights:
            break
        tq_id = _weighted_choice(weights, rng) if res.job_id is None else None
        row = tq_db.claim_next_job(
            conn, tq_id, job_id=res.job_id, exclude=job_excluded, attributes=delay_attrs,
            tq_ids=list(weights) if res.job_id is not None else None, site=res.site,
            site_mask_mode=mask)
        if row is None:
            if tq_id is None:
                break
            del weights[tq_id]
            continue
        result = _claim(conn, row, res, now if fixed else max(now, utcnow()), delays)
        if result is None:
            stale.append(row.job_id)  # killed or rescheduled meanwhile: not ours to give
            continue
        if on_match is not None:
            on_match(conn, result)
        break
    if stale:
        log.warning("jobs no longer Waiting removed from the task queues: %s", stale)
    return result


def _claim(conn: Connection, row: tq_db.ClaimRow, res: Resource, now: datetime,
           delays: Mapping[str, Mapping[str, int]]) -> MatchResult | None:
    """Waiting -> Matched (compare-and-set), logged, out of the queue; None (and out of the
    queue) when the job is no longer Waiting."""
    assert res.site is not None  # noqa: S101 - checked by match_job
    if row.status != JobStatus.WAITING or not tq_db.take_job(
            conn, row.job_id, from_status=JobStatus.WAITING, status=JobStatus.MATCHED,
            minor=MinorStatus.ASSIGNED, application=MinorStatus.APPLICATION_STATUS_UNKNOWN,
            site=res.site, now=now, source=SOURCE):
        tq_db.remove_jobs(conn, [row.job_id])
        return None
    due = [(attribute, str(row.attributes[attribute]),
            now + timedelta(seconds=delays[attribute][str(row.attributes[attribute])]))
           for attribute in row.attributes
           if str(row.attributes[attribute]) in delays.get(attribute, {})]
    if due:
        mask_db.set_delays(conn, res.site, due)
    jdl = row.jdl
    if jdl is None:
        jdl = jobs_db.jdls_of(conn, [row.job_id], processed=False).get(row.job_id, "")
    return MatchResult(job_id=row.job_id, jdl=jdl, owner=row.owner, owner_group=row.owner_group,
                       vo=row.vo, site=res.site, tq_id=row.tq_id, resource=res,
                       attempt=row.reschedule_counter)


# -- views ----------------------------------------------------------------------------------------

_DIRAC_KINDS = {"Site": "Sites", "BannedSite": "BannedSites", "GridCE": "GridCEs",
                "Platform": "Platforms", "JobType": "JobTypes", "Tag": "Tags"}


def _dirac_view(info: dict[int, dict[str, Any]], shares: Mapping[str, int]
                ) -> dict[int, dict[str, Any]]:
    weights = tq_weights([(tq_id, i["owner_group"], i["owner"], i["job_priority"])
                          for tq_id, i in info.items()], shares)
    out: dict[int, dict[str, Any]] = {}
    for tq_id, item in info.items():
        view: dict[str, Any] = {
            "Priority": round(weights[tq_id], 4), "Jobs": item["jobs"], "Owner": item["owner"],
            "OwnerGroup": item["owner_group"], "VO": item["vo"], "CPUTime": item["cpu_time"],
            "UserPriority": item["job_priority"]}
        for kind, values in item["requirements"].items():
            view[_DIRAC_KINDS.get(kind, kind)] = values
        out[tq_id] = view
    return out


def active_task_queues(engine: Engine, settings: MatchSettings) -> dict[int, dict[str, Any]]:
    """Every non-empty queue in DIRAC's ``getActiveTaskQueues`` shape (tq_id -> fields)."""
    with engine.connect() as conn:
        info = tq_db.task_queue_info(conn)
    return _dirac_view(info, settings.shares)


def matching_task_queues(engine: Engine, resource: Mapping[str, Any] | str, *,
                         settings: MatchSettings, scope: MatchScope | None = None,
                         now: datetime | None = None) -> dict[int, dict[str, Any]]:
    """The non-empty queues a resource would match (``getMatchingTaskQueues``); without a Site
    the site-related conditions are left out."""
    res = parse_resource(resource)
    flt = _filter(res, scope, settings)
    now = now or utcnow()
    with engine.connect() as conn:
        if res.site is not None:
            tq_excluded, _ = _negative_conditions(conn, res.site, settings, now)
            flt = replace(flt, exclude=tq_excluded)
        ids = tq_db.matching_task_queue_ids(conn, flt) if flt.owner_groups != () else []
        info = tq_db.task_queue_info(conn, ids)
    return _dirac_view(info, settings.shares)
