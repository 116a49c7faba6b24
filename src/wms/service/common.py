"""What the WMS services share: engine, limits, the task-queue hooks, job-ID arguments.

Example::

    >>> from core.config.schema import Config
    >>> limits_from(Config()).max_parametric_jobs
    10000
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.config.schema import Config
from core.db import UTCDateTime, utcnow
from core.exceptions import InvalidArgumentError
from core.ids import as_id
from core.rpc.context import ServerContext
from core.security.identity import Identity
from dms.logic.replicas import get_replicas
from dms.logic.rights import Requester as CatalogRequester
from wms.db import jobs as jobs_db
from wms.db.filters import Filter
from wms.db.jobs import StatusRow
from wms.db.tables import JOB_ATTRIBUTES
from wms.logic import input_data, matching, optimizer
from wms.logic.input_data import InputDataCheck, InputDataVerdict
from wms.logic.job_description import JobDescription, JobLimits
from wms.logic.job_manager import ActionResult
from wms.logic.job_policy import job_scope
from wms.logic.optimizer import OptimiseResult
from wms.logic.sandboxes import Requester, StoreSettings

SYSTEM = "WorkloadManagement"


def limits_from(config: Config) -> JobLimits:
    ops = config.operations
    return JobLimits(max_input_data=ops.max_input_data,
                     max_parametric_jobs=ops.max_parametric_jobs)


def engine_of(ctx: ServerContext) -> Engine:
    return ctx.engine(SYSTEM)


def enqueue(conn: Connection, items: Sequence[tuple[int, JobDescription]],
            now: datetime) -> None:
    matching.enqueue_jobs(conn, [matching.tq_job_from_description(job_id, desc)
                                 for job_id, desc in items], now)


def enqueue_new(conn: Connection, items: Sequence[tuple[int, JobDescription]],
                now: datetime) -> None:
    """:func:`enqueue` for jobs stored in this transaction: ``tq_jobs.job_id`` references
    the job, so no membership can predate it and none is deleted first."""
    matching.enqueue_jobs(conn, [matching.tq_job_from_description(job_id, desc)
                                 for job_id, desc in items], now, fresh=True)


def dequeue(conn: Connection, job_ids: Sequence[int]) -> None:
    matching.dequeue_jobs(conn, job_ids)


def optimise(ctx: ServerContext, job_ids: Sequence[int]) -> OptimiseResult:
    return optimizer.optimise(engine_of(ctx), job_ids, enqueue=enqueue,
                              limits=limits_from(ctx.config),
                              check_input_data=input_data_check(ctx),
                              reschedule_delays=ctx.config.operations.reschedule_delays)


def optimise_in(ctx: ServerContext, conn: Connection, job_ids: Sequence[int],
                now: datetime, current: Mapping[int, StatusRow] | None = None
                ) -> OptimiseResult:
    """Optimise jobs inside the caller's write transaction (a bulk confirmation; ``current``:
    see :func:`wms.logic.optimizer.optimise_in`)."""
    return optimizer.optimise_in(conn, job_ids, enqueue=enqueue, now=now,
                                 limits=limits_from(ctx.config),
                                 check_input_data=input_data_check(ctx),
                                 reschedule_delays=ctx.config.operations.reschedule_delays,
                                 current=current)


def optimise_new(ctx: ServerContext, conn: Connection, described: Mapping[int, JobDescription],
                 now: datetime, *, stored_here: bool = False,
                 logged: list[tuple[int, str, str, str, str]] | None = None
                 ) -> OptimiseResult:
    """Optimise jobs just stored in ``conn``'s transaction (the submission request) or
    released from Standby; ``stored_here``: all were inserted in this transaction (no task
    queue membership to remove first); ``logged``: their first logging records, still to
    write (see :func:`wms.logic.optimizer.optimise_new`)."""
    return optimizer.optimise_new(conn, described, now=now,
                                  enqueue=enqueue_new if stored_here else enqueue,
                                  check_input_data=input_data_check(ctx), logged=logged)


#: the optimiser reads the catalog with every right: a job's owner may not read a file it
#: names, and then its wrapper is refused at download time, as with DIRAC's optimisers
CATALOG_READER = CatalogRequester("WorkloadManagement", "", admin=True)
DMS_SYSTEM = "DataManagement"


def input_data_check(ctx: ServerContext) -> InputDataCheck | None:
    """Where jobs with input data may run, from the file catalog's database and the sites'
    SEs (``Resources.Sites.<s>.SEs``); None (input data taken as is) when the instance has no
    ``Systems.DataManagement``. One bulk replica lookup per batch of jobs."""
    if "DataManagement" not in ctx.config.systems:
        return None
    se_sites = input_data.sites_by_se({name: site.ses
                                       for name, site in ctx.config.resources.sites.items()})

    def check(wanted: dict[int, list[str]]) -> dict[int, InputDataVerdict]:
        lfns = sorted({input_data.strip_lfn(x) for lfns in wanted.values() for x in lfns})
        found = get_replicas(ctx.engine(DMS_SYSTEM), CATALOG_READER, lfns,
                                       all_status=False)
        replicas = {lfn: list(ses) for lfn, ses in found.successful.items()}
        return input_data.decide(wanted, replicas=replicas, se_sites=se_sites)

    return check


def sweep_pending(ctx: ServerContext, *, older_than: float = 30.0) -> OptimiseResult:
    """Optimise what a crash left in Received/Checking and rescheduled jobs now due."""
    engine = engine_of(ctx)
    now = utcnow()
    with engine.connect() as conn:
        pending = optimizer.pending_jobs(conn, older_than=timedelta(seconds=older_than),
                                         now=now)
    return optimise(ctx, pending) if pending else OptimiseResult()


def sandbox_settings(ctx: ServerContext) -> StoreSettings:
    """The store settings: ``Systems.WorkloadManagement.Services.SandboxStore.Options``."""
    return StoreSettings.from_section(
        ctx.config.service_config(SYSTEM, "SandboxStore").options,
        default_max_mib=ctx.config.operations.max_sandbox_size_mib,
        database_url=ctx.database_url(SYSTEM),
    )


def sandbox_requester(ctx: ServerContext, ident: Identity) -> Requester:
    """Whose sandboxes a caller handles: its own; for a job-scoped credential (a job wrapper),
    the job owner's, so the output sandbox it uploads belongs to the job's owner, and it
    reads the sandboxes of its own job only."""
    scoped = job_scope(ident)
    if len(scoped) == 1 and ident.authenticated:
        job_id = next(iter(scoped))
        with engine_of(ctx).connect() as conn:
            row = jobs_db.status_of(conn, scoped).get(job_id)
        if row is not None:
            return Requester(row.owner, row.owner_group, row.vo,
                             entities=frozenset({f"Job:{job_id}"}))
    return Requester.from_identity(ident)


def action_extra(result: ActionResult) -> dict[str, object]:
    """DIRAC's extra reply keys for a kill/delete/reschedule."""
    return {"InvalidJobIDs": result.invalid, "NonauthorizedJobIDs": result.nonauthorized,
            "FailedJobIDs": sorted(result.failed)}


#: what :func:`wire_time` reads: a date, then optionally a time with fractions and an offset
_WIRE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}"
    r"(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:[Zz]|[+-]\d{2}:?\d{2})?)?")


def wire_time(value: datetime | str | None, name: str = "time") -> datetime | None:
    """A time from the wire, in UTC to the second; None for None or "".

    Accepted: a datetime (naive means UTC), DIRAC's ``YYYY-mm-dd HH:MM:SS`` text with or
    without fractions of a second (``str(datetime)`` as DIRAC's ``Time.toString`` writes it),
    ``T`` instead of the space, an offset or ``Z``, or a date alone (midnight UTC). Fractions
    of a text are dropped, as the job tables keep whole seconds. Anything else (trailing text
    included) is an :class:`InvalidArgumentError` naming ``name``.

    >>> wire_time("2026-12-04 10:20:30.123456")
    datetime.datetime(2026, 12, 4, 10, 20, 30, tzinfo=datetime.timezone.utc)
    >>> wire_time("2026-12-04T11:20:30+01:00", "StartTime").hour
    10
    >>> wire_time("2026-12-04garbage", "StartTime")
    Traceback (most recent call last):
    ...
    core.exceptions.InvalidArgumentError: bad StartTime '2026-12-04garbage'
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
    if not isinstance(value, str) or not _WIRE_TIME.fullmatch(value):
        raise InvalidArgumentError(f"bad {name} {value!r:.60}")
    text = value[:-1] + "+00:00" if value[-1] in "Zz" else value
    try:
        when = datetime.fromisoformat(text)
    except ValueError:  # the shape is right, a field is out of range (month 13)
        raise InvalidArgumentError(f"bad {name} {value!r:.60}") from None
    if when.tzinfo is None:
        return when.replace(microsecond=0, tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).replace(microsecond=0)


def typed_job_filters(filters: Sequence[Filter]) -> list[Filter]:
    """Job filters with each value of its attribute's column type (a list of them for
    ``in``/``not in``): times through :func:`wire_time`, whole numbers (or their decimal text)
    for the integer columns, text for the others and for ``like`` patterns (numbers written
    as text); None is NULL.
    Anything else (a dict, a nested list, a boolean) is an :class:`InvalidArgumentError`
    naming the attribute, not a database error. Unknown attributes are left to
    :mod:`wms.db.filters`, which refuses them with the known names."""
    out: list[Filter] = []
    for name, op, value in filters:
        column = JOB_ATTRIBUTES.get(name) if isinstance(name, str) else None
        if column is None:
            out.append((name, op, value))
            continue
        kind = sa.String() if op == "like" else column.type  # a pattern is text
        if isinstance(value, list | tuple):
            value = [_job_value(name, kind, v) for v in value]
        else:
            value = _job_value(name, kind, value)
        out.append((name, op, value))
    return out


def _job_value(name: str, kind: Any, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(kind, UTCDateTime):
        if isinstance(value, str | datetime) and value != "":
            return wire_time(value, name)
        raise InvalidArgumentError(f"{name}: a time is expected, not {value!r:.40}")
    if isinstance(kind, sa.Integer):
        whole = value if isinstance(value, int) and not isinstance(value, bool) else (
            as_id(value.strip()) if isinstance(value, str) else None)
        if whole is None:
            raise InvalidArgumentError(f"{name}: {value!r:.40} is not a whole number")
        return whole
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise InvalidArgumentError(f"{name}: text is expected, not {type(value).__name__}")
