"""``WorkloadManagement/JobMonitoring``: read-only views of jobs, DIRAC's method names.

Dictionaries keyed by job ID travel with string keys (JSON), as DIRAC's do.

Example (wire)::

    {"method": "getJobsStatus", "args": "[[12, 13]]"}
    # {"OK": true, "Value": {"12": {"Status": "Waiting"}, "13": {"Status": "Done"}}}
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from core.exceptions import InvalidArgumentError, JobNotFoundError
from core.rpc.jencode import Records
from core.rpc.service import Call, Service, rpc_method
from wms.db import job_queries
from wms.db import jobs as jobs_db
from wms.logic import monitoring, parameter_store
from wms.logic.job_policy import job_ids_argument
from wms.service.common import SYSTEM, engine_of, typed_job_filters

IDS = int | str | list[Any]
MAX_PAGE = 10_000


class JobMonitoringService(Service):
    system = SYSTEM
    name = "JobMonitoring"
    #: seconds between folds of the job count deltas into the counters
    FOLD_PERIOD = 2.0

    def background_tasks(self) -> list[tuple[float, Callable[[], None]]]:
        return [(self.FOLD_PERIOD, self._fold)]

    def _fold(self) -> None:
        monitoring.fold_counters(engine_of(self.ctx))

    def _attrs(self, call: Call, job_ids: IDS, names: list[str] | None
               ) -> dict[int, dict[str, Any]]:
        with engine_of(self.ctx).connect() as conn:
            return monitoring.attributes(conn, call.identity, job_ids_argument(job_ids), names)

    def _one(self, call: Call, job_id: int | str) -> int:
        [jid] = job_ids_argument(job_id)
        if not self._attrs(call, jid, ["JobID"]):
            raise JobNotFoundError(f"Job {jid} not found")
        return jid

    @rpc_method("getJobsStatus")
    def get_jobs_status(self, call: Call, job_ids: IDS) -> dict[int, dict[str, Any]]:
        return self._attrs(call, job_ids, ["Status"])

    @rpc_method("getJobsMinorStatus")
    def get_jobs_minor_status(self, call: Call, job_ids: IDS) -> dict[int, dict[str, Any]]:
        return self._attrs(call, job_ids, ["MinorStatus"])

    @rpc_method("getJobsApplicationStatus")
    def get_jobs_application_status(self, call: Call, job_ids: IDS
                                    ) -> dict[int, dict[str, Any]]:
        return self._attrs(call, job_ids, ["ApplicationStatus"])

    @rpc_method("getJobsStates")
    def get_jobs_states(self, call: Call, job_ids: IDS) -> dict[int, dict[str, Any]]:
        return self._attrs(call, job_ids, ["Status", "MinorStatus", "ApplicationStatus"])

    @rpc_method("getJobsSites")
    def get_jobs_sites(self, call: Call, job_ids: IDS) -> dict[int, dict[str, Any]]:
        return self._attrs(call, job_ids, ["Site"])

    @rpc_method("getJobSummary")
    def get_job_summary(self, call: Call, job_id: int | str) -> dict[str, Any]:
        found = self._attrs(call, job_id, None)
        if not found:
            raise JobNotFoundError(f"Job {job_id} not found")
        return next(iter(found.values()))

    @rpc_method("getJobsSummary")
    def get_jobs_summary(self, call: Call, job_ids: IDS) -> dict[int, dict[str, Any]]:
        return self._attrs(call, job_ids, None)

    @rpc_method("getJobAttributes")
    def get_job_attributes(self, call: Call, job_id: int | str,
                           names: list[str] | None = None) -> dict[str, Any]:
        found = self._attrs(call, job_id, names or None)
        if not found:
            raise JobNotFoundError(f"Job {job_id} not found")
        return next(iter(found.values()))

    @rpc_method("getJobAttribute")
    def get_job_attribute(self, call: Call, job_id: int | str, name: str) -> Any:
        """One attribute's value (DIRAC's ``getJobAttribute``)."""
        found = self.get_job_attributes(call, job_id, [name])
        if name not in found:
            raise InvalidArgumentError(f"no job attribute {name!r}")
        return found[name]

    @rpc_method("getJobs")
    def get_jobs(self, call: Call, cond: dict[str, Any] | None = None,
                 cut_date: datetime | str | None = None) -> list[int]:
        filters = typed_job_filters(monitoring.filters_from_dict(cond))
        if cut_date:
            filters.append(("LastUpdateTime", "ge", _when(cut_date)))
        with engine_of(self.ctx).connect() as conn:
            _, rows = job_queries.search_jobs(conn, filters,
                                              scope=monitoring.scope_for(call.identity))
        return [int(r["JobID"]) for r in rows]

    @rpc_method("getCounters")
    def get_counters(self, call: Call, attributes: list[str],
                     cond: dict[str, Any] | None = None,
                     cut_date: datetime | str | None = None) -> list[list[Any]]:
        filters = typed_job_filters(monitoring.filters_from_dict(cond))
        if cut_date:
            filters.append(("LastUpdateTime", "ge", _when(cut_date)))
        with engine_of(self.ctx).connect() as conn:
            counts = job_queries.counters(conn, attributes, filters,
                                          monitoring.scope_for(call.identity))
        return [[values, count] for values, count in counts]

    @rpc_method("search")
    def search(self, call: Call, parameters: list[str] | None = None,
               search: list[Any] | None = None, sort: list[Any] | None = None,
               page: int = 1, per_page: int = 100, with_total: bool = True,
               as_lists: bool = False) -> dict[str, Any]:
        """Paged search: ``search`` = [{parameter, operator, value(s)}], ``sort`` =
        [{parameter, direction}]; returns {"Total": n, "TotalIsExact": bool, "Records": [...]}
        (page from 1). The total is exact from the job counters for filters on owner, group,
        VO, status, minor status, site and job group; other filters count up to
        ``job_queries.TOTAL_CAP`` + 1 jobs and then say ``TotalIsExact: false``. Without
        ``with_total`` (keyset paging: filter on JobID instead of asking page N) Total is -1.
        With ``as_lists``, records are lists of values in the order of ``ParameterNames``
        (DIRAC's web summaries do the same): a third of the bytes to encode and decode.
        """
        if page < 1 or not 1 <= per_page <= MAX_PAGE:
            raise InvalidArgumentError(f"page must be >= 1 and per_page in 1..{MAX_PAGE}")
        order = [(str(s["parameter"]), str(s.get("direction", "asc"))) for s in sort or []
                 if isinstance(s, dict) and "parameter" in s] or [("JobID", "asc")]
        filters = typed_job_filters(monitoring.filters_from_search(search or []))
        scope = monitoring.scope_for(call.identity)
        columns = parameters or ["JobID", "Status", "MinorStatus", "Owner", "Site"]
        with engine_of(self.ctx).connect() as conn:
            total, rows = job_queries.search_jobs(
                conn, filters, columns=columns, sort=order, scope=scope, limit=per_page,
                offset=(page - 1) * per_page, with_total=with_total, datetimes_as_text=True)
        # the records straight from the cursor's tuples to their JEncode text (datetimes as
        # the database wrote them): the bytes of encoding them as dicts, without the dicts
        records = Records(columns, rows, job_queries.datetime_positions(columns),
                          as_lists=as_lists)
        reply = {"Total": total, "Records": records,
                 "TotalIsExact": with_total and job_queries.total_is_exact(total, filters, scope)}
        if as_lists:
            reply["ParameterNames"] = columns
        return reply

    def _distinct(self, call: Call, name: str, cond: dict[str, Any] | None = None
                  ) -> list[Any]:
        filters = typed_job_filters(monitoring.filters_from_dict(cond))
        with engine_of(self.ctx).connect() as conn:
            return job_queries.distinct(conn, name, filters, monitoring.scope_for(call.identity))

    @rpc_method("getStates")
    def get_states(self, call: Call) -> list[Any]:
        return self._distinct(call, "Status")

    @rpc_method("getSites")
    def get_sites(self, call: Call) -> list[Any]:
        return self._distinct(call, "Site")

    @rpc_method("getOwners")
    def get_owners(self, call: Call) -> list[Any]:
        return self._distinct(call, "Owner")

    @rpc_method("getJobGroups")
    def get_job_groups(self, call: Call, cond: dict[str, Any] | None = None,
                       cut_date: datetime | str | None = None) -> list[Any]:
        return self._distinct(call, "JobGroup", cond)

    @rpc_method("getJobParameters")
    def get_job_parameters(self, call: Call, job_ids: IDS,
                           names: list[str] | None = None) -> dict[int, dict[str, str]]:
        with engine_of(self.ctx).connect() as conn:
            visible = monitoring.attributes(conn, call.identity, job_ids_argument(job_ids),
                                            ["JobID"])
            params = parameter_store.read(conn, parameter_store.store_for(self.ctx.config),
                                          list(visible))
        return {job_id: {k: v for k, v in params.get(job_id, {}).items()
                         if not names or k in names} for job_id in visible}

    @rpc_method("getJobParameter")
    def get_job_parameter(self, call: Call, job_id: int | str, name: str) -> dict[str, str]:
        """``{name: value}`` (empty when the job has no such parameter), as DIRAC."""
        return next(iter(self.get_job_parameters(call, [job_id], [name]).values()), {})

    @rpc_method("getJobsParameters")
    def get_jobs_parameters(self, call: Call, job_ids: IDS,
                            names: list[str] | None = None) -> dict[int, dict[str, str]]:
        return self.get_job_parameters(call, job_ids, names)

    @rpc_method("getJobLoggingInfo")
    def get_job_logging_info(self, call: Call, job_id: int | str) -> list[Any]:
        jid = self._one(call, job_id)
        with engine_of(self.ctx).connect() as conn:
            return list(jobs_db.logging_of(conn, jid))

    @rpc_method("getJobJDL")
    def get_job_jdl(self, call: Call, job_id: int | str, original: bool = False) -> str:
        jid = self._one(call, job_id)
        with engine_of(self.ctx).connect() as conn:
            texts = jobs_db.jdls_of(conn, [jid], processed=not original)
            if jid not in texts:  # not yet processed: the original is what exists
                texts = jobs_db.jdls_of(conn, [jid], processed=False)
        return texts.get(jid, "")

    @rpc_method("getInputData")
    def get_input_data(self, call: Call, job_id: int | str) -> list[str]:
        jid = self._one(call, job_id)
        with engine_of(self.ctx).connect() as conn:
            return jobs_db.input_data_of(conn, [jid]).get(jid, [])

    @rpc_method("getJobHeartBeatData")
    def get_job_heartbeat_data(self, call: Call, job_id: int | str) -> list[Any]:
        jid = self._one(call, job_id)
        with engine_of(self.ctx).connect() as conn:
            return [heartbeat_row(*row) for row in jobs_db.heartbeats_of(conn, jid)]


def heartbeat_row(name: str, value: str, when: datetime) -> tuple[str, str, str]:
    """A heartbeat value as DIRAC's ``getJobHeartBeatData`` sends it: numbers with one decimal
    ("%.01f", quotes dropped first), the time as ``YYYY-MM-DD HH:MM:SS`` text (UTC). DIRAC
    fails the whole call on a value that is not a number; it is sent as stored here.

    >>> heartbeat_row("CPUConsumed", "12.25", datetime(2026, 12, 4, 4, 5, 6, 789))
    ('CPUConsumed', '12.2', '2026-12-04 04:05:06')
    >>> heartbeat_row("Site", "LCG.CERN.cern", datetime(2026, 12, 4))[1]
    'LCG.CERN.cern'
    """
    try:
        text = "%.01f" % float(value.replace('"', ""))  # noqa: UP031 - DIRAC's exact format
    except ValueError:
        text = value
    return name, text, when.strftime("%Y-%m-%d %H:%M:%S")


def _when(value: datetime | str) -> datetime:
    if isinstance(value, datetime):
        return value
    from datetime import timezone

    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    raise InvalidArgumentError(f"bad date {value!r}: use YYYY-mm-dd [HH:MM:SS]")
