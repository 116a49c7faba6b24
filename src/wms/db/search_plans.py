"""How a page of one owner's jobs in JobID order reads ``jobs``: chosen from the job counters.

A job monitor's page ("my jobs, JobID descending, 100 at a time") has two ways in:

* the **walk**: ``ix_jobs_owner_id`` in JobID order, keeping the rows that match, stopping
  once the page is full. It reads about ``(offset + limit) * N / M`` rows (``N`` jobs of the
  owner, ``M`` matching), all of them when the matches are rare;
* the **status path**: for each status asked, ``ix_jobs_owner_status`` read in JobID order
  (both databases append the job ID to a secondary index) up to ``offset + limit`` entries;
  with several statuses, the branches' job IDs are merged (``UNION``), the page's IDs cut
  from them, and only those rows read. It reads at most ``Σ min(c_s, offset + limit)`` index
  entries (``c_s`` jobs of the owner in status ``s``), whatever the other statuses hold.

The databases' planners cannot tell which is cheaper (SQLite walks the owner's 100,000 jobs to
keep 2,000 active ones; MariaDB sometimes intersects both indexes and sorts every match), but
the job counters know ``N`` and every ``c_s`` (read once per owner every :data:`COUNTS_TTL`
seconds) and the page's total ``M``. With one status the status path is never worse than the
walk (it reads a subset of the walk's rows, in the same order) and no count is needed; with
several it is taken when its entries, weighted by :data:`UNION_ENTRY_COST`, are fewer than the
rows the walk would read. The chosen index is
then named to the database (SQLite ``INDEXED BY``, MariaDB ``FORCE INDEX``), so the plan does
not change from one run to the next. Either way the page holds the same rows: the counts
choose the plan, never the result (tests/wms/db/test_search_plans.py compares them).

Example::

    >>> cost = Costs(owner_jobs=100_000, by_status={"Waiting": 1_000, "Running": 1_000,
    ...     "Failed": 8_000}, matches={"Waiting": 1_000, "Running": 1_000, "Failed": 8_000})
    >>> choose(cost, reach=10_000).index, choose(cost, reach=100).index
    ('ix_jobs_owner_status', 'ix_jobs_owner_status')
    >>> busy = Costs(owner_jobs=100_000, by_status={"Done": 90_000, "Failed": 8_000},
    ...     matches={"Done": 90_000, "Failed": 8_000})
    >>> choose(busy, reach=100).index
    'ix_jobs_owner_id'
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from wms.db import counters as job_counters
from wms.db.filters import Filter, Scope, Shape, scope_condition, shaped_condition
from wms.db.tables import jobs

__all__ = ["BY_STATUS", "BY_STATUS_SUBMISSION", "MAX_BRANCHES", "UNION_ENTRY_COST", "WALK",
           "Costs", "Plan", "branch_params", "choose", "forced", "hinted", "owner_status_counts",
           "page_statement", "plan_for", "status_filter"]

WALK = "ix_jobs_owner_id"
BY_STATUS = "ix_jobs_owner_status"
#: "my jobs of this status, newest first": the page in the order of this index (WMS migration 4)
BY_STATUS_SUBMISSION = "ix_jobs_owner_status_submission"

#: a status-path index entry (several statuses: read, merged, sorted, then the page's rows
#: fetched by ID) costs about this many walked rows. SQLite: 1.8 µs an entry against 0.55 µs
#: a walked row (pages of 10,000 among 100,000 jobs of one owner, bench/search.py); MariaDB:
#: the branches read the secondary index alone (owner, status, job ID) while the walk reads a
#: clustered row per entry, and the forced paths measured alike at 3 entries a row or fewer
#: at 1M jobs (bench/growth.py --compare-plans; docs/performance/search.md)
UNION_ENTRY_COST = {"sqlite": 3.0, "mysql": 1.0, "mariadb": 1.0}

#: status lists longer than this are left to the database's planner
MAX_BRANCHES = 20


@dataclass(frozen=True)
class Plan:
    """Read through ``index``; ``statuses`` are the status path's branches (one per status,
    in the order of the bound parameters ``p_status<i>``), empty for the walk."""

    index: str
    statuses: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Costs:
    """What the counters say: the owner's jobs, per status (``c_s``), and the jobs matching
    the counted filters per status asked (``m_s``)."""

    owner_jobs: int
    by_status: dict[Any, int]
    matches: dict[Any, int]

    @property
    def total_matches(self) -> int:
        return sum(self.matches.values())


def _reads(reach: int, entries: int, matches: int) -> float:
    """Rows read in order until ``reach`` matches are found among ``entries`` rows that hold
    ``matches`` of them (spread evenly), or all of them."""
    if matches <= 0:
        return float(entries)
    return min(float(entries), reach * entries / matches)


def choose(costs: Costs, reach: int, entry_cost: float = 3.0) -> Plan:
    """The cheaper path for a page ending at ``reach`` (offset + limit), a status-path entry
    costing ``entry_cost`` walked rows (:data:`UNION_ENTRY_COST`)."""
    statuses = tuple(costs.matches)
    if len(statuses) == 1:  # the same order, a subset of the walk's rows: never worse
        return Plan(BY_STATUS, statuses)
    walk = _reads(reach, costs.owner_jobs, costs.total_matches)
    by_status = sum(_reads(reach, costs.by_status.get(s, 0), costs.matches[s])
                    for s in statuses)
    if by_status * entry_cost < walk:
        return Plan(BY_STATUS, statuses)
    return Plan(WALK)


# -- which searches, and their counts --------------------------------------------------------


def _fixed_owner(filters: Sequence[Filter], scope: Scope | None) -> str | None:
    if scope is not None:
        return scope.owner if scope.shape == (True, False, False) else None
    owners = {str(v) for name, op, v in filters if name == "Owner" and op == "eq"}
    return owners.pop() if len(owners) == 1 else None


def status_filter(filters: Sequence[Filter]) -> int | None:
    """Position of the first ``Status`` filter with ``eq`` or ``in``."""
    for i, (name, op, _) in enumerate(filters):
        if name == "Status" and op in ("eq", "in"):
            return i
    return None


def _statuses(value: Any) -> tuple[Any, ...]:
    values = list(value) if isinstance(value, list | tuple | set) else [value]
    return tuple(sorted(set(values), key=lambda v: (str(type(v)), str(v))))


def plan_for(conn: Connection, filters: Sequence[Filter], scope: Scope | None,
             sort: Sequence[tuple[str, str]], limit: int | None, offset: int,
             total: int | None = None) -> Plan | None:
    """The plan, or None to leave the page to the database's planner. ``total``: the exact
    number of matches when the caller has it (the counters' count), else the owner's jobs in
    the statuses asked stand for it.

    Only pages sorted by JobID alone, of one owner (the caller's scope, or an ``Owner eq``
    filter for an administrator), with a ``Status`` filter (``eq``/``in``) and no filter on
    JobID other than a keyset range, are planned here; and "one status, newest first" (sorted
    by SubmissionTime alone), read in the order of :data:`BY_STATUS_SUBMISSION` (MariaDB
    otherwise intersected two indexes and sorted every match now and then: 55 ms at 1M)."""
    order = [name for name, _ in sort]
    if limit is None or order not in (["JobID"], ["SubmissionTime"]):
        return None
    position = status_filter(filters)
    owner = _fixed_owner(filters, scope)
    if position is None or owner is None:
        return None
    if any(name == "JobID" and op not in ("gt", "ge", "lt", "le") for name, op, _ in filters):
        return None  # job IDs given: the primary key is the way in
    statuses = _statuses(filters[position][2])
    if not statuses or len(statuses) > MAX_BRANCHES:
        return None
    if order == ["SubmissionTime"]:  # "newest first": in the order of one index, or sorted
        return Plan(BY_STATUS_SUBMISSION, statuses) if len(statuses) == 1 else None
    if len(statuses) == 1:  # no count needed: see choose()
        return Plan(BY_STATUS, statuses)
    per_status = owner_status_counts(conn, owner)
    asked = sum(per_status.get(s, 0) for s in statuses)
    share = 1.0 if total is None or asked <= 0 else min(1.0, total / asked)
    # other filters keep the same share of every status (what an estimate can assume)
    matches = {s: round(per_status.get(s, 0) * share) for s in statuses}
    costs = Costs(owner_jobs=sum(per_status.values()), by_status=per_status, matches=matches)
    return choose(costs, offset + limit, UNION_ENTRY_COST.get(conn.dialect.name, 3.0))


#: seconds an owner's counts by status are reused to choose plans (never for totals)
COUNTS_TTL = 10.0
_counts_cache: weakref.WeakKeyDictionary[Engine, dict[str, tuple[float, dict[Any, int]]]] = (
    weakref.WeakKeyDictionary())
_cache_lock = threading.Lock()


def owner_status_counts(conn: Connection, owner: str) -> dict[Any, int]:
    """{status: jobs} of ``owner`` from the job counters, at most :data:`COUNTS_TTL` seconds
    old (at 1M jobs the owner's counter rows are thousands: read and grouped once, not on
    every page; a plan chosen from counts a few seconds old costs a little time at worst,
    the records do not depend on it)."""
    now = time.monotonic()
    with _cache_lock:
        cached = _counts_cache.get(conn.engine, {}).get(owner)
    if cached is not None and now - cached[0] < COUNTS_TTL:
        return cached[1]
    counts = {values["Status"]: n for values, n in
              job_counters.group_counts(conn, ["Status"], [], Scope(owner=owner))}
    with _cache_lock:
        per_owner = _counts_cache.setdefault(conn.engine, {})
        if len(per_owner) > 10_000:
            per_owner.clear()
        per_owner[owner] = (now, counts)
    return counts


# -- statements ----------------------------------------------------------------------------


def hinted(query: sa.Select[Any], index: str) -> sa.Select[Any]:
    """``query`` reading ``jobs`` through ``index`` (SQLite ``INDEXED BY``, rendered by
    ``core.db``; MariaDB ``FORCE INDEX``)."""
    return (query.with_hint(jobs, f"INDEXED BY {index}", "sqlite")
            .with_hint(jobs, f"FORCE INDEX ({index})", "mysql")
            .with_hint(jobs, f"FORCE INDEX ({index})", "mariadb"))


def page_statement(shape: Shape, scope_shape: tuple[bool, bool, bool] | None,
                   selected: tuple[sa.ColumnElement[Any], ...], descending: bool,
                   index: str, branches: int, position: int) -> sa.Select[Any]:
    """The page through ``index``: one ordered read, or (``branches`` > 1) one ordered read
    per status (bound ``p_status<i>``, each at most ``p_reach`` = offset + limit entries),
    merged, cut to the page (``p_limit``, ``p_offset``), then those rows by ID."""
    def ordered(col: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return col.desc() if descending else col.asc()

    where = shaped_condition(shape)
    if scope_shape is not None:
        where = sa.and_(where, scope_condition(scope_shape))
    if branches <= 1:
        return hinted(sa.select(*selected).where(where).order_by(ordered(jobs.c.job_id))
                      .limit(sa.bindparam("p_limit")).offset(sa.bindparam("p_offset")), index)
    parts = []
    for i in range(branches):
        branch_where = shaped_condition(shape, skip=position)
        if scope_shape is not None:
            branch_where = sa.and_(branch_where, scope_condition(scope_shape))
        branch = hinted(sa.select(jobs.c.job_id)
                        .where(branch_where, jobs.c.status == sa.bindparam(f"p_status{i}"))
                        .order_by(ordered(jobs.c.job_id)).limit(sa.bindparam("p_reach")),
                        index).subquery(f"b{i}")
        parts.append(sa.select(branch.c.job_id))  # SQLite: no LIMIT on a compound's member
    # UNION, not UNION ALL: on MariaDB 'Done' and 'done ' are the same status to the index
    merged = sa.union(*parts).subquery("merged")
    page = (sa.select(merged.c.job_id).order_by(ordered(merged.c.job_id))
            .limit(sa.bindparam("p_limit")).offset(sa.bindparam("p_offset")).subquery("page"))
    return (sa.select(*selected).where(jobs.c.job_id.in_(sa.select(page.c.job_id)))
            .order_by(ordered(jobs.c.job_id)))


def forced(index: str, filters: Sequence[Filter], sort: Sequence[tuple[str, str]],
           limit: int | None) -> Plan:
    """The plan through ``index`` (:data:`WALK` or :data:`BY_STATUS`) whatever the counts say:
    for tests and benchmarks comparing both."""
    position = status_filter(filters)
    if limit is None or [name for name, _ in sort] != ["JobID"] or position is None:
        raise ValueError("a forced plan needs a page sorted by JobID and a Status eq/in filter")
    if index == WALK:
        return Plan(WALK)
    if index == BY_STATUS:
        return Plan(BY_STATUS, _statuses(filters[position][2]))
    raise ValueError(f"no search plan through {index!r}")


def branch_params(plan: Plan, limit: int, offset: int) -> dict[str, Any]:
    """The bound values of :func:`page_statement`'s branches."""
    params: dict[str, Any] = {f"p_status{i}": s for i, s in enumerate(plan.statuses)}
    params["p_reach"] = offset + limit
    return params
