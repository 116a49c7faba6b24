"""The WMS hooks that events, schedules and dataset jobs share, for services and agents alike.

Services hold a :class:`~core.rpc.context.ServerContext`; agents hold a config and their own
engines. :class:`Wiring` gives both the same three things the WMS helpers of
:mod:`wms.service.common` read (``config``, ``engine(system)``, ``database_url(system)``), so
a job released by an agent is optimised, queued and given its sandboxes exactly as one
released by a service.

Example::

    >>> from core.config.schema import Config
    >>> from core.db import make_engine
    >>> w = Wiring(Config.model_validate({"Database": "sqlite://"}),
    ...            lambda system: make_engine("sqlite://"))
    >>> w.database_url("WorkloadManagement")
    'sqlite://'
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy.engine import Connection, Engine, Row

from core.config.schema import Config
from core.exceptions import InvalidArgumentError, NotFoundError
from core.rpc.context import ServerContext
from core.security.identity import Identity
from wms.db import jobs as jobs_db
from wms.logic import capacity, events, sandboxes, submission
from wms.logic.jdl import JDL, parse_jdl
from wms.logic.job_description import JobDescription
from wms.logic.optimizer import OptimiseResult
from wms.service import common

DMS = "DataManagement"


class Wiring:
    """A config and a way to get engines: what the WMS helpers need of a context."""

    def __init__(self, config: Config, engine: Callable[[str], Engine]) -> None:
        self.config = config
        self._engine = engine

    def engine(self, system: str) -> Engine:
        return self._engine(system)

    def database_url(self, system: str) -> str:
        return self.config.database_url(system)


Context = ServerContext | Wiring


def _ctx(ctx: Context) -> ServerContext:
    return cast(ServerContext, ctx)  # the helpers only use config/engine/database_url


def optimise_new(ctx: Context) -> Callable[[Connection, Mapping[int, JobDescription], datetime],
                                           OptimiseResult]:
    def run(conn: Connection, described: Mapping[int, JobDescription],
            now: datetime) -> OptimiseResult:
        return common.optimise_new(_ctx(ctx), conn, described, now)
    return run


def assign_input_sandboxes(ctx: Context) -> Callable[..., None]:
    """``(conn, owner, group, vo, {job_id: [SB: refs]}, now)``: the owner's sandboxes become
    the jobs' input sandboxes (as at submission)."""
    def run(conn: Connection, owner: str, group: str, vo: str,
            refs: Mapping[int, list[str]], now: datetime) -> None:
        if refs:
            sandboxes.assign_in(conn, common.sandbox_settings(_ctx(ctx)),
                                sandboxes.Requester(owner, group, vo),
                                {f"Job:{job_id}": r for job_id, r in refs.items()}, "Input",
                                now)
    return run


def release_hooks(ctx: Context) -> events.ReleaseHooks:
    return events.ReleaseHooks(optimise_new=optimise_new(ctx),
                               assign_sandboxes=assign_input_sandboxes(ctx),
                               limits=common.limits_from(ctx.config))


def store_jobs(ctx: Context, conn: Connection, jdls: list[JDL], who: submission.Submitter,
               now: datetime, *, parameters: Mapping[str, str] | None = None,
               check_capacity: bool = True) -> submission.SubmitResult:
    """Store jobs made by the server on a user's behalf (schedule runs, dataset jobs,
    restarts) in ``conn``'s transaction, as a submission would: validated, capacity
    checked, input sandboxes assigned, optimised to Waiting; ``parameters`` are set on each."""
    limits = common.limits_from(ctx.config)
    descriptions = [submission.describe(jdl, who, limits) for jdl in jdls]
    if check_capacity:
        capacity.check_jobs(ctx.config, descriptions)

    def stored(conn: Connection, result: submission.SubmitResult, now: datetime) -> None:
        assign_input_sandboxes(ctx)(conn, who.owner, who.owner_group, who.vo,
                                    result.input_sandboxes, now)
        if parameters:
            jobs_db.set_parameters(conn, {j: dict(parameters) for j in result.job_ids},
                                   {j: 0 for j in result.job_ids})
        common.optimise_new(_ctx(ctx), conn, result.descriptions, now, stored_here=True)

    return submission.store_in(conn, jdls, descriptions, who, limits, now, on_stored=stored)


def schedule_submitter(ctx: Context) -> Callable[[Connection, Row[Any], datetime, datetime],
                                                 int]:
    """The ``submit`` of :func:`wms.logic.schedules.run_due`: one job of the schedule's JDL
    for its owner, with parameters ``Schedule`` and ``ScheduleSlot``."""
    def run(conn: Connection, sched: Row[Any], slot: datetime, now: datetime) -> int:
        who = submission.Submitter(sched.owner, sched.owner_group, sched.vo)
        result = store_jobs(ctx, conn, [parse_jdl(sched.jdl)], who, now, parameters={
            "Schedule": sched.name, "ScheduleSlot": slot.strftime("%Y-%m-%d %H:%M:%S")},
            check_capacity=False)  # checked when the schedule was made
        return result.job_ids[0]
    return run


def dataset_files(ctx: Context, ident: Identity, source: Mapping[str, Any]
                  ) -> tuple[dict[str, list[str]], str]:
    """({lfn: [SEs]}, label) of a dataset (``{"Dataset": path}``) or a metadata query
    (``{"Query": {...}, "Path": "/"}``), read with the caller's catalog rights; a dataset
    that does not exist or a query without files is an error."""
    from dms.logic import datasets, metadata
    from dms.logic.replicas import get_replicas
    from dms.logic.rights import CatalogSettings
    from dms.service.file_catalog import requester_of

    if DMS not in ctx.config.systems:
        raise InvalidArgumentError("this instance has no file catalog (Systems.DataManagement)")
    unknown = set(source) - {"Dataset", "Query", "Path"}
    if unknown or (("Dataset" in source) == ("Query" in source)):
        raise InvalidArgumentError("give either {'Dataset': path} or {'Query': {...}, "
                                   "'Path': '/'}")
    vo_groups = {name: vo.default_group for name, vo in ctx.config.registry.vos.items()
                 if vo.default_group}
    settings = CatalogSettings.from_options(
        ctx.config.service_config(DMS, "FileCatalog").options, vo_groups)
    req = requester_of(ident, settings, _ctx(ctx))
    dms_engine = ctx.engine(DMS)
    if "Dataset" in source:
        path = str(source["Dataset"])
        found = datasets.get_dataset_files(dms_engine, req, [path])
        if path not in found.successful:
            reason = next(iter(found.failed.values()), "not found")
            raise NotFoundError(f"dataset {path}: {reason}")
        lfns = list(found.successful[path])
        label = path
    else:
        query = source["Query"]
        if not isinstance(query, dict) or not query:
            raise InvalidArgumentError("Query must be a non-empty metadata query")
        path = str(source.get("Path") or "/")
        lfns = metadata.find_files(dms_engine, req, query, path)
        label = f"query {json.dumps(query, sort_keys=True)} in {path}"[:255]
    if not lfns:
        raise InvalidArgumentError(f"{label}: no files")
    replicas = get_replicas(dms_engine, common.CATALOG_READER, lfns,
                                      all_status=False)
    return {lfn: list(replicas.successful.get(lfn, {})) for lfn in lfns}, label


def engine(ctx: Context) -> Engine:
    return ctx.engine(common.SYSTEM)


def known_groups(ctx: Context) -> list[str]:
    return sorted(ctx.config.registry.groups)
