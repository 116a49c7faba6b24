"""``WorkloadManagement/JobStateUpdate``: what running jobs report (statuses, parameters,
heartbeats). Callers are pilots (``GenericPilot``) and whoever may manage the job.

Heartbeats, ``setJobStatus``, ``setJobApplicationStatus`` and ``setJobParameter(s)`` go through
the process's write-behind queue (:mod:`wms.logic.reports`): the reports of concurrent
requests are written in one transaction every few milliseconds, and each request is answered
once its own report is committed (or refused, alone). ``sendHeartBeats`` carries the
heartbeats of many jobs (a pilot running several payloads) in one call, each checked as a
``sendHeartBeat`` of its own would be, optionally with the job's own token (``Token``).
``Options.GroupCommit: false`` writes each report in its own transaction instead.

Example (wire)::

    {"method": "sendHeartBeat", "args": '[12, {"CPUConsumed": 3.2}, {}]'}
    # {"OK": true, "Value": {"Kill": ""}}   when the job was killed meanwhile
    {"method": "sendHeartBeats", "args": '[[{"JobID": 12, "Dynamic": {"CPUConsumed": 3.2}},
                                            {"JobID": 13, "Dynamic": {}, "Token": "ey..."}]]'}
    # {"OK": true, "Value": {"Successful": {"12": {"Kill": ""}}, "Failed": {"13": {
    #     "Message": "...", "Errno": 1505, "ExceptionClass": "JobNotActiveError"}}}}
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from prometheus_client import Gauge, Histogram

from core.db import utcnow
from core.exceptions import (
    DatabaseUnavailableError,
    InvalidArgumentError,
    NotAuthorizedError,
    PilotWMSError,
)
from core.group_commit import CommitterClosedError, GroupCommitter
from core.rpc.context import ServerContext
from core.rpc.service import Call, Service, rpc_method
from core.security.identity import Identity
from core.security.rights import allowed
from wms.logic import parameter_store, reports, state_update
from wms.logic.job_policy import MAX_JOB_ID, job_ids_argument
from wms.service.common import SYSTEM, engine_of, wire_time

log = logging.getLogger("pilotwms.wms.state_update")


class _QueueMetrics:
    """Prometheus view of the queue: reports waiting (all processes summed), batches written
    and their sizes."""

    def __init__(self) -> None:
        self.queued = Gauge("pilotwms_job_reports_queued",
                            "Job reports (heartbeats, statuses, parameters) waiting to be "
                            "written", multiprocess_mode="livesum")
        self.batch_size = Histogram("pilotwms_job_report_batch_size",
                                    "Job reports written per transaction",
                                    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000))


_metrics: _QueueMetrics | None = None
_metrics_lock = threading.Lock()


def _queue_metrics() -> _QueueMetrics:
    global _metrics
    with _metrics_lock:
        if _metrics is None:
            _metrics = _QueueMetrics()
        return _metrics

REPORTERS = ["GenericPilot", "NormalUser", "ProductionManagement", "JobAdministrator"]
#: heartbeats in one ``sendHeartBeats`` call
MAX_BULK_HEARTBEATS = 10_000


_MIN_JOB_ID = -MAX_JOB_ID - 1


def _job(job_id: int | str) -> int:
    [jid] = job_ids_argument(job_id)
    return jid


_time = wire_time


class JobStateUpdateService(Service):
    system = SYSTEM
    name = "JobStateUpdate"

    def __init__(self, ctx: ServerContext) -> None:
        super().__init__(ctx)
        options = ctx.config.service_config(SYSTEM, self.name).options
        self.group_commit = reports.GroupCommitSettings.from_options(options)
        self._committer: GroupCommitter[reports.Report, Any] | None = None
        self._lock = threading.Lock()
        self._stopped = False

    def _store(self) -> parameter_store.ParameterStore | None:
        return parameter_store.store_for(self.ctx.config)

    # -- the write-behind queue -------------------------------------------------------------

    def reports_queue(self) -> GroupCommitter[reports.Report, Any] | None:
        """This process's queue of reports (made on first use); None when disabled."""
        if not self.group_commit.enabled:
            return None
        with self._lock:
            if self._committer is None:
                if self._stopped:
                    raise DatabaseUnavailableError(
                        "this server is stopping: nothing was changed, try again")
                engine, store = engine_of(self.ctx), self._store()
                sizes = _queue_metrics().batch_size

                def flush(items: Sequence[reports.Report]) -> list[Any]:
                    sizes.observe(len(items))
                    return reports.apply_reports(engine, items, store=store)

                self._committer = GroupCommitter(
                    flush, max_batch=self.group_commit.max_batch,
                    linger=self.group_commit.linger_ms / 1000, name=f"{self.name}-reports")
            return self._committer

    def stop(self) -> None:
        """Write every queued report, then refuse new ones (HTTP 503: the client retries)."""
        with self._lock:
            self._stopped = True
            committer = self._committer
        if committer is not None:
            committer.close()

    def _submit(self, report: reports.Report) -> asyncio.Future[Any]:
        queue = self.reports_queue()
        if queue is None:
            loop = asyncio.get_running_loop()
            return loop.run_in_executor(self.ctx.executor, self._write_one, report)
        try:
            future = queue.submit(report)
        except CommitterClosedError:
            raise DatabaseUnavailableError(
                "this server is stopping: nothing was changed, try again") from None
        queued = _queue_metrics().queued
        queued.inc()
        future.add_done_callback(lambda _: queued.dec())
        return asyncio.wrap_future(future)

    def _write_one(self, report: reports.Report) -> Any:
        [result] = reports.apply_reports(engine_of(self.ctx), [report], store=self._store())
        return result

    async def _report(self, report: reports.Report) -> Any:
        result = await self._submit(report)
        if isinstance(result, BaseException):
            raise result
        return result

    # -- methods ----------------------------------------------------------------------------

    @rpc_method("setJobStatus", rights=REPORTERS)
    async def set_job_status(self, call: Call, job_id: int | str, status: str = "",
                             minor_status: str = "", source: str = "Unknown",
                             when: datetime | str | None = None, force: bool = False) -> None:
        if force and "JobAdministrator" not in call.identity.properties:
            force = False
        await self._report(reports.StatusReport(
            call.identity, _job(job_id), status, minor_status, source=source,
            when=_time(when) or utcnow(), force=force))

    @rpc_method("setJobStatusBulk", rights=REPORTERS)
    def set_job_status_bulk(self, call: Call, job_id: int | str,
                            updates: dict[str, Any], force: bool = False) -> None:
        parsed = {}
        for when, item in updates.items():
            stamp = _time(when)
            if stamp is None or not isinstance(item, dict):
                raise InvalidArgumentError("updates must map 'YYYY-mm-dd HH:MM:SS' to dicts")
            parsed[stamp] = item
        force = force and "JobAdministrator" in call.identity.properties
        state_update.set_status_bulk(engine_of(self.ctx), call.identity, _job(job_id), parsed,
                                     force=force)

    @rpc_method("setJobApplicationStatus", rights=REPORTERS)
    async def set_job_application_status(self, call: Call, job_id: int | str, status: str,
                                         source: str = "Unknown") -> None:
        await self._report(reports.StatusReport(call.identity, _job(job_id),
                                                application=status, source=source))

    @rpc_method("setJobAttribute", rights=REPORTERS)
    def set_job_attribute(self, call: Call, job_id: int | str, name: str, value: Any) -> None:
        """One of DIRAC's mutable attributes (statuses still follow the transition table)."""
        state_update.set_attribute(engine_of(self.ctx), call.identity, _job(job_id), name,
                                   _time(value) if name.endswith("Time") else value)

    @rpc_method("setJobSite", rights=REPORTERS)
    def set_job_site(self, call: Call, job_id: int | str, site: str) -> None:
        state_update.set_attribute(engine_of(self.ctx), call.identity, _job(job_id), "Site",
                                   site)

    @rpc_method("setJobParameter", rights=REPORTERS)
    async def set_job_parameter(self, call: Call, job_id: int | str, name: str,
                                value: Any) -> None:
        await self._report(reports.ParameterReport(call.identity, _job(job_id),
                                                   {name: value}))

    @rpc_method("setJobParameters", rights=REPORTERS)
    async def set_job_parameters(self, call: Call, job_id: int | str,
                                 params: list[Any]) -> None:
        try:
            values = {str(name): value for name, value in params}
        except (TypeError, ValueError):
            raise InvalidArgumentError("parameters must be a list of [name, value]") from None
        await self._report(reports.ParameterReport(call.identity, _job(job_id), values))

    @rpc_method("setJobsParameter", rights=REPORTERS)
    def set_jobs_parameter(self, call: Call, params: dict[str, Any]) -> None:
        values: dict[int, dict[str, Any]] = {}
        for job_id, pair in params.items():
            if not (isinstance(pair, list | tuple) and len(pair) == 2):
                raise InvalidArgumentError("each job maps to [name, value]")
            values.setdefault(_job(job_id), {})[str(pair[0])] = pair[1]
        state_update.set_parameters(engine_of(self.ctx), call.identity, values,
                                    store=self._store())

    @rpc_method("sendHeartBeat", rights=REPORTERS)
    async def send_heartbeat(self, call: Call, job_id: int | str, dynamic: dict[str, Any],
                             static: dict[str, Any] | None = None) -> dict[str, str]:
        result: dict[str, str] = await self._report(
            reports.Heartbeat(call.identity, _job(job_id), dynamic, static or {}))
        return result

    @rpc_method("sendHeartBeats", rights=REPORTERS)
    async def send_heartbeats(self, call: Call, beats: list[dict[str, Any]]
                              ) -> dict[str, dict[int, Any]]:
        """Heartbeats of many jobs (``[{"JobID", "Dynamic", "Static", "Token"}]``; the last two
        optional): each is checked and answered as its own ``sendHeartBeat`` would be, with
        the job's ``Token`` as credential when given, else the caller's. Returns
        ``{"Successful": {job: commands}, "Failed": {job: {"Message", "Errno",
        "ExceptionClass"}}}``."""
        if len(beats) > MAX_BULK_HEARTBEATS:
            raise InvalidArgumentError(f"{len(beats)} heartbeats in one call, at most "
                                       f"{MAX_BULK_HEARTBEATS}")
        now = utcnow()
        job_ids: list[int] = []
        queued: list[reports.Report] = []
        refused: dict[int, Exception] = {}
        for item in beats:
            job_id, found = self._bulk_item(call, item)
            job_ids.append(job_id)
            if isinstance(found, Exception):
                refused[job_id] = found
            else:
                queued.append(reports.Heartbeat(found[0], job_id, found[1], found[2],
                                                when=now))
        if len(set(job_ids)) != len(job_ids):
            raise InvalidArgumentError("each job may appear once per sendHeartBeats call")
        results = iter(await self._submit_many(queued))
        out: dict[str, dict[int, Any]] = {"Successful": {}, "Failed": {}}
        successful, failed = out["Successful"], out["Failed"]
        for job_id in job_ids:
            result = refused[job_id] if job_id in refused else next(results)
            if isinstance(result, BaseException):
                failed[job_id] = _failure(result, call)
            else:
                successful[job_id] = result
        return out

    async def _submit_many(self, items: Sequence[reports.Report]) -> list[Any]:
        """Results of ``items`` (an exception instance for each one refused), written through
        the queue behind one future, or each in its own transaction when it is off."""
        if not items:
            return []
        queue = self.reports_queue()
        if queue is None:
            return await asyncio.gather(*(self._submit(item) for item in items),
                                        return_exceptions=True)
        try:
            future = queue.submit_many(items)
        except CommitterClosedError:
            raise DatabaseUnavailableError(
                "this server is stopping: nothing was changed, try again") from None
        queued, count = _queue_metrics().queued, len(items)
        queued.inc(count)
        future.add_done_callback(lambda _: queued.dec(count))
        return await asyncio.wrap_future(future)

    def _bulk_item(self, call: Call, item: Any
                   ) -> tuple[int, tuple[Identity, dict[str, Any], dict[str, Any]] | Exception]:
        """(job, (identity, dynamic, static)) of one bulk heartbeat, or (job, the error that
        refuses it); a malformed item fails the whole call."""
        if not isinstance(item, dict) or "JobID" not in item:
            raise InvalidArgumentError("each heartbeat must be a dict with JobID, Dynamic "
                                       "and optionally Static and Token")
        job_id = item["JobID"]
        if type(job_id) is not int or not _MIN_JOB_ID <= job_id <= MAX_JOB_ID:
            job_id = _job(job_id)  # digit strings; anything else refused there
        dynamic, static = item.get("Dynamic"), item.get("Static")
        if dynamic is None:
            dynamic = {}
        if static is None:
            static = {}
        token = item.get("Token")
        if not isinstance(dynamic, dict) or not isinstance(static, dict) \
                or not (token is None or isinstance(token, str)):
            raise InvalidArgumentError(f"heartbeat of job {job_id}: Dynamic and Static must "
                                       "be dicts, Token a string")
        ident = call.identity
        if token:
            try:
                ident = self.ctx.authenticator.from_token(token)
            except PilotWMSError as exc:
                return job_id, exc
            hosted = self.ctx.hosted.get(self.path())
            rules = hosted.rules["sendHeartBeat"] if hosted is not None else None
            if rules is not None and not allowed(ident, rules):
                return job_id, NotAuthorizedError(
                    f"{ident.username}@{ident.group} may not call sendHeartBeat")
        return job_id, (ident, dynamic, static)


def _failure(exc: BaseException, call: Call) -> dict[str, Any]:
    """DIRAC's error fields for one refused item of a bulk call."""
    if isinstance(exc, PilotWMSError):
        return {"Message": exc.wire_message(), "Errno": exc.errno,
                "ExceptionClass": type(exc).__name__}
    log.error("request %s: a bulk heartbeat failed", call.request_id,
              exc_info=(type(exc), exc, exc.__traceback__))
    return {"Message": f"Internal server error (request id {call.request_id})", "Errno": 5}
