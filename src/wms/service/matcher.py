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

from sqlalchemy.engine import Connection

from core.db import utcnow
from core.exceptions import NoMatchError, NotAuthorizedError
from core.metrics import metrics
from core.rpc.service import Call, Service, rpc_method
from core.security.tokens import TokenIssuer
from wms.db import pilots as pilots_db
from wms.logic import matching
from wms.logic.job_policy import ATTEMPT_SCOPE, JOB_CREDENTIAL_PROPERTIES, job_scope

SYSTEM = "WorkloadManagement"
PILOTS = ["GenericPilot", "Pilot", "JobSharing"]


class MatcherService(Service):
    system = SYSTEM
    name = "Matcher"

    #: seconds between removals of empty task queues
    CLEANUP_PERIOD = 300.0
    _issuer: TokenIssuer | None = None

    def background_tasks(self) -> list[tuple[float, Callable[[], None]]]:
        return [(self.CLEANUP_PERIOD, self._cleanup)]

    def _cleanup(self) -> None:
        matching.remove_empty_task_queues(self.ctx.engine(SYSTEM))

    def _settings(self) -> matching.MatchSettings:
        return matching.MatchSettings.from_config(self.ctx.config)

    #: lifetime of the job-scoped token given with each match, in seconds
    JOB_TOKEN_LIFETIME = 3 * 86400

    @rpc_method("requestJob", rights=PILOTS)
    def request_job(self, call: Call, resource_description: dict | str) -> dict[str, Any]:
        """The match; with ``PilotReference`` the pilot is recorded as running the job, and
        when the server issues tokens the reply carries ``JobToken``: the job owner's
        credential, scoped to this job for the WMS (status, heartbeats, parameters, its
        sandboxes) and to this attempt of it (``attempt:<reschedule counter>``: once the job
        is rescheduled, its earlier pilot's reports are refused), carrying only the owner's
        ordinary properties (:data:`~wms.logic.job_policy.JOB_CREDENTIAL_PROPERTIES`), so
        the job reads and writes data with its owner's rights and nothing more."""
        if job_scope(call.identity):
            raise NotAuthorizedError("a job-scoped credential cannot request jobs")
        resource = matching.parse_resource(resource_description)
        scope = matching.scope_for(call.identity, resource.vo)
        now = utcnow()

        def record(conn: Connection, result: matching.MatchResult) -> None:
            if resource.pilot_reference:
                pilots_db.add_job(conn, resource.pilot_reference, result.job_id, now)

        counter = metrics().matcher
        try:
            result = matching.match_job(self.ctx.engine(SYSTEM), resource,
                                        settings=self._settings(), scope=scope,
                                        on_match=record)
        except NoMatchError:
            counter.labels("no_match").inc()
            raise
        except Exception:
            counter.labels("error").inc()
            raise
        counter.labels("matched").inc()
        reply = result.as_dirac()
        signing = self.ctx.config.auth.signing
        if signing is not None:
            if self._issuer is None:
                self._issuer = TokenIssuer(signing)
            reply["JobToken"] = self._issuer.issue(
                result.owner, group=result.owner_group, vo=result.vo,
                lifetime=self.JOB_TOKEN_LIFETIME,
                scopes=[f"job:{result.job_id}", f"{ATTEMPT_SCOPE}{result.attempt}"],
                extra_claims={"properties": list(JOB_CREDENTIAL_PROPERTIES)})
        return reply

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
