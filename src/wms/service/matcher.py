"""``WorkloadManagement/Matcher``: pilots ask for a job; administrators look at task queues.

* ``requestJob(resourceDescription)`` (GenericPilot, and private pilots/JobSharing for their
  own jobs): DIRAC's reply ``{"JDL", "JobID", "Owner", "Group", "PilotInfoReportedFlag"}``, or
  ``{"OK": false, "Errno": 1510}`` when nothing fits (:class:`~core.exceptions.NoMatchError`).
* ``getMatchingTaskQueues(resourceDescription)`` (JobAdministrator, TrustedHost, GenericPilot)
  and ``getActiveTaskQueues()`` (JobAdministrator): ``{tq_id: {"Priority", "Jobs", "Owner",
  "OwnerGroup", "VO", "CPUTime", "Sites", ...}}``.

Every worker removes empty task queues every :attr:`MatcherService.CLEANUP_PERIOD` seconds.

Example (wire)::

    requests.post(url + "/WorkloadManagement/Matcher", headers={"Authorization": "Bearer ..."},
                  data={"method": "requestJob",
                        "args": '[{"Site": "LCG.CERN.cern", "CPUTime": 86400}]'})
    # {"OK": true, "Value": {"JDL": "[...]", "JobID": 12, "Owner": "alice", ...}}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.rpc.service import Call, Service, rpc_method
from wms.logic import matching

SYSTEM = "WorkloadManagement"
PILOTS = ["GenericPilot", "Pilot", "JobSharing"]


class MatcherService(Service):
    system = SYSTEM
    name = "Matcher"

    #: seconds between removals of empty task queues
    CLEANUP_PERIOD = 300.0

    def background_tasks(self) -> list[tuple[float, Callable[[], None]]]:
        return [(self.CLEANUP_PERIOD, self._cleanup)]

    def _cleanup(self) -> None:
        matching.remove_empty_task_queues(self.ctx.engine(SYSTEM))

    def _settings(self) -> matching.MatchSettings:
        return matching.MatchSettings.from_config(self.ctx.config)

    @rpc_method("requestJob", rights=PILOTS)
    def request_job(self, call: Call, resource_description: dict | str) -> dict[str, Any]:
        resource = matching.parse_resource(resource_description)
        scope = matching.scope_for(call.identity, resource.vo)
        result = matching.match_job(self.ctx.engine(SYSTEM), resource,
                                    settings=self._settings(), scope=scope)
        return result.as_dirac()

    @rpc_method("getMatchingTaskQueues", rights=["JobAdministrator", "TrustedHost",
                                                 "GenericPilot"])
    def get_matching_task_queues(self, call: Call, resource_description: dict
                                 ) -> dict[int, dict[str, Any]]:
        scope = None
        if "GenericPilot" in call.identity.properties and call.identity.vo:
            scope = matching.MatchScope(call.identity.vo)
        return matching.matching_task_queues(self.ctx.engine(SYSTEM), resource_description,
                                             settings=self._settings(), scope=scope)

    @rpc_method("getActiveTaskQueues", rights="JobAdministrator")
    def get_active_task_queues(self, call: Call) -> dict[int, dict[str, Any]]:
        return matching.active_task_queues(self.ctx.engine(SYSTEM), self._settings())
