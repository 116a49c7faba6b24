"""``WorkloadManagement/PilotManager``: the pilots, as DIRAC's PilotManager exposes them.

* site directors (TrustedHost/Operator): ``addPilotReferences``, ``setPilotStatus``,
  ``storePilotOutput``;
* pilots (GenericPilot): ``registerPilot``, ``storePilotOutput`` (their log at the end);
* administrators: ``getPilotInfo``, ``getPilotOutput``, ``selectPilots(conditions)``
  (references of the pilots whose attributes match), ``getPilotSummary(start, end)``
  (``{site: {status: count}, "Total": {...}}`` of the pilots submitted in that interval);
  job owners: ``getPilots(jobID)`` and ``getJobPilotOutput(jobID)`` for the pilots that ran
  their jobs;
* any registered user (the pilot monitor): ``searchPilots(filters, sort, descending, page,
  per_page)`` -> ``{"Total", "Records"}`` and ``getPilotCounters(attributes, filters)`` ->
  ``[[{attribute: value}, count], ...]``, filters being ``{attribute: value or [values]}`` on
  GridSite, DestinationSite (the CE), Queue, Status, GridType, OwnerGroup, VO, ...

Example (wire)::

    {"method": "registerPilot", "args": '["local://h/12", {"Site": "S", "CE": "ce"}]'}
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from core.db import write_transaction
from core.exceptions import InvalidArgumentError, NotFoundError
from core.ids import as_id
from core.rpc.service import Call, Service, rpc_method
from wms.db import pilots as pilots_db
from wms.logic import pilots
from wms.logic.job_policy import job_ids_argument
from wms.service.common import SYSTEM, engine_of, wire_time

DIRECTORS = ["TrustedHost", "Operator", "JobAdministrator"]
MAX_PILOT_PAGE = 1000
REPORTERS = [*DIRECTORS, "GenericPilot"]

#: a pilot filter's value, or a list of them (the RPC layer checks the shape)
FilterValue = str | int | float | bool | datetime
Filters = dict[str, FilterValue | list[FilterValue]]
_TIMES = ("SubmissionTime", "LastUpdateTime")


def typed_filters(filters: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{attribute: value or [values]}`` with each value of its column's type: the times
    as datetimes (:func:`wire_time`), ``PilotID`` as an ID, ``OutputReady`` a boolean, the
    rest text; anything else an :class:`InvalidArgumentError` naming the attribute."""
    out: dict[str, Any] = {}
    for name, value in (filters or {}).items():
        many = isinstance(value, list | tuple)
        typed = [_typed(name, v) for v in (value if many else [value])]
        out[name] = typed if many else typed[0]
    return out


def _typed(name: str, value: Any) -> Any:
    if name in _TIMES:
        if not isinstance(value, str | datetime) or value == "":
            raise InvalidArgumentError(f"filter {name!r}: a time is expected, "
                                       f"not {value!r:.40}")
        return wire_time(value, name)
    if name == "PilotID":
        found = as_id(value)
        if found is None:
            raise InvalidArgumentError(f"filter 'PilotID': {value!r:.40} is not a pilot ID")
        return found
    if (name == "OutputReady") != isinstance(value, bool) or isinstance(value, datetime):
        raise InvalidArgumentError(f"filter {name!r}: {value!r:.40} is not a "
                                   f"{'boolean' if name == 'OutputReady' else 'text'}")
    return value if isinstance(value, bool | str) else str(value)


class PilotManagerService(Service):
    system = SYSTEM
    name = "PilotManager"

    @rpc_method("addPilotReferences", rights=DIRECTORS)
    def add_pilot_references(self, call: Call, refs: list[str], owner_group: str,
                             grid_type: str = "DIRAC", stamps: dict[str, Any] | None = None,
                             site: str = "Unknown", ce: str = "Unknown",
                             queue: str = "Unknown") -> None:
        group = self.ctx.authenticator.registry.group(owner_group)
        pilots.add_pilots(engine_of(self.ctx), [str(r) for r in refs],
                          vo=group.vo if group else "", owner_group=owner_group,
                          grid_type=grid_type, site=site, ce=ce, queue=queue,
                          stamps={str(k): str(v) for k, v in (stamps or {}).items()})

    @rpc_method("setPilotStatus", rights=DIRECTORS)
    def set_pilot_status(self, call: Call, ref: str, status: str,
                         destination: str | None = None, reason: str | None = None,
                         grid_site: str | None = None, queue: str | None = None) -> list[str]:
        return pilots.set_status(engine_of(self.ctx), [ref], status, reason=reason or "",
                                 ce=destination or "", site=grid_site or "",
                                 queue=queue or "")

    @rpc_method("registerPilot", rights=REPORTERS)
    def register_pilot(self, call: Call, ref: str, info: dict[str, Any]) -> None:
        ident = call.identity
        pilots.register(engine_of(self.ctx), ref, info, vo=ident.vo or "",
                        owner_group=ident.group or "")

    @rpc_method("storePilotOutput", rights=REPORTERS)
    def store_pilot_output(self, call: Call, ref: str, output: str, error: str = "") -> None:
        # a read then writes: the write lock is taken first (SQLite cannot upgrade a read
        # transaction while another writes; it answers "database is locked" at once)
        with write_transaction(engine_of(self.ctx)) as conn:
            if not pilots_db.store_output(conn, ref, output, error):
                raise NotFoundError(f"unknown pilot {ref}")

    @rpc_method("getPilotInfo", rights=DIRECTORS)
    def get_pilot_info(self, call: Call, refs: str | list[str]) -> dict[str, Any]:
        wanted = [refs] if isinstance(refs, str) else [str(r) for r in refs]
        with engine_of(self.ctx).connect() as conn:
            info = pilots_db.pilot_info(conn, wanted)
            jobs = pilots_db.jobs_of_pilots(conn, list(info))
        for ref, row in info.items():
            row["Jobs"] = jobs.get(ref, [])
        return info

    @rpc_method("getPilotOutput", rights=DIRECTORS)
    def get_pilot_output(self, call: Call, ref: str) -> dict[str, str]:
        with engine_of(self.ctx).connect() as conn:
            found = pilots_db.output_of(conn, ref)
        if found is None:
            raise NotFoundError(f"no output stored for pilot {ref}")
        return {"StdOut": found[0], "StdErr": found[1]}

    @rpc_method("selectPilots", rights=DIRECTORS)
    def select_pilots(self, call: Call, conditions: Filters | None = None) -> list[str]:
        with engine_of(self.ctx).connect() as conn:
            try:
                return pilots_db.select_pilots(conn, typed_filters(conditions))
            except KeyError as exc:
                raise InvalidArgumentError(f"no pilot attribute {exc.args[0]!r}") from None

    @rpc_method("getPilotSummary", rights=DIRECTORS)
    def get_pilot_summary(self, call: Call, start: datetime | str = "",
                          end: datetime | str = "") -> dict[str, dict[str, int]]:
        with engine_of(self.ctx).connect() as conn:
            counts = pilots_db.pilot_counts(conn, wire_time(start), wire_time(end))
        summary: dict[str, dict[str, int]] = {"Total": dict.fromkeys(pilots.PILOT_STATUSES, 0)}
        for site, status, count in counts:
            summary.setdefault(site, {})[status] = count
            summary["Total"][status] = summary["Total"].get(status, 0) + count
        return summary

    def _owned_job(self, call: Call, job_id: int | str) -> int:
        [jid] = job_ids_argument(job_id)
        return pilots.owned_job(engine_of(self.ctx), call.identity, jid)

    @rpc_method("getPilots")
    def get_pilots(self, call: Call, job_id: int | str) -> dict[str, Any]:
        jid = self._owned_job(call, job_id)
        with engine_of(self.ctx).connect() as conn:
            return pilots_db.pilot_info(conn, pilots_db.pilots_of_job(conn, jid))

    @rpc_method("getJobPilotOutput")
    def get_job_pilot_output(self, call: Call, job_id: int | str) -> dict[str, str]:
        [jid] = job_ids_argument(job_id)
        return pilots.job_pilot_output(engine_of(self.ctx), call.identity, jid)

    @rpc_method("searchPilots", rights="authenticated")
    def search_pilots(self, call: Call, filters: Filters | None = None,
                      sort: str = "PilotID", descending: bool = True, page: int = 1,
                      per_page: int = 100) -> dict[str, Any]:
        if page < 1 or not 1 <= per_page <= MAX_PILOT_PAGE:
            raise InvalidArgumentError(f"page must be >= 1 and per_page in 1..{MAX_PILOT_PAGE}")
        try:
            with engine_of(self.ctx).connect() as conn:
                total, rows = pilots_db.search_pilots(
                    conn, typed_filters(filters), sort=sort, descending=descending, limit=per_page,
                    offset=(page - 1) * per_page)
        except ValueError as exc:
            raise InvalidArgumentError(str(exc)) from None
        return {"Total": total, "Records": rows}

    @rpc_method("getPilotCounters", rights="authenticated")
    def get_pilot_counters(self, call: Call, attributes: list[str],
                           filters: Filters | None = None) -> list[list[Any]]:
        try:
            with engine_of(self.ctx).connect() as conn:
                counts = pilots_db.pilot_counters(conn, [str(a) for a in attributes],
                                                  typed_filters(filters))
        except ValueError as exc:
            raise InvalidArgumentError(str(exc)) from None
        return [[values, count] for values, count in counts]
