"""``WorkloadManagement/JobStateUpdate``: what running jobs report (statuses, parameters,
heartbeats). Callers are pilots (``GenericPilot``) and whoever may manage the job.

Example (wire)::

    {"method": "sendHeartBeat", "args": '[12, {"CPUConsumed": 3.2}, {}]'}
    # {"OK": true, "Value": {"Kill": ""}}   when the job was killed meanwhile
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.exceptions import InvalidArgumentError
from core.rpc.service import Call, Service, rpc_method
from wms.logic import parameter_store, state_update
from wms.logic.job_policy import job_ids_argument
from wms.service.common import SYSTEM, engine_of, wire_time

REPORTERS = ["GenericPilot", "NormalUser", "ProductionManagement", "JobAdministrator"]


def _job(job_id: int | str) -> int:
    [jid] = job_ids_argument(job_id)
    return jid


_time = wire_time


class JobStateUpdateService(Service):
    system = SYSTEM
    name = "JobStateUpdate"

    def _store(self) -> parameter_store.ParameterStore | None:
        return parameter_store.store_for(self.ctx.config)

    @rpc_method("setJobStatus", rights=REPORTERS)
    def set_job_status(self, call: Call, job_id: int | str, status: str = "",
                       minor_status: str = "", source: str = "Unknown",
                       when: datetime | str | None = None, force: bool = False) -> None:
        if force and "JobAdministrator" not in call.identity.properties:
            force = False
        state_update.set_status(engine_of(self.ctx), call.identity, _job(job_id), status,
                                minor_status, source=source, when=_time(when), force=force)

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
    def set_job_application_status(self, call: Call, job_id: int | str, status: str,
                                   source: str = "Unknown") -> None:
        state_update.set_status(engine_of(self.ctx), call.identity, _job(job_id),
                                application=status, source=source)

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
    def set_job_parameter(self, call: Call, job_id: int | str, name: str, value: Any) -> None:
        state_update.set_parameters(engine_of(self.ctx), call.identity,
                                    {_job(job_id): {name: value}}, store=self._store())

    @rpc_method("setJobParameters", rights=REPORTERS)
    def set_job_parameters(self, call: Call, job_id: int | str, params: list[Any]) -> None:
        try:
            values = {str(name): value for name, value in params}
        except (TypeError, ValueError):
            raise InvalidArgumentError("parameters must be a list of [name, value]") from None
        state_update.set_parameters(engine_of(self.ctx), call.identity, {_job(job_id): values},
                                    store=self._store())

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
    def send_heartbeat(self, call: Call, job_id: int | str, dynamic: dict[str, Any],
                       static: dict[str, Any] | None = None) -> dict[str, str]:
        return state_update.heartbeat(engine_of(self.ctx), call.identity, _job(job_id),
                                      dynamic, static or {}, store=self._store())
