"""``RequestManagement/ReqManager``: store failover requests and tell their state.

RPC methods:

* ``putRequest(request)`` -> request ID. The request (wire form: :mod:`dms.logic.rms`)
  is owned by the caller; a trusted host may submit for a user with ``Owner`` and
  ``OwnerGroup`` in the request (a job wrapper running under a pilot's host identity).
* ``getRequest(requestID)`` -> the request with its operations and files, statuses included.
* ``getRequestStatus(requestID)`` -> ``"Waiting"``, ``"Assigned"``, ``"Done"``, ...
* ``getRequestIDsForJobs(jobIDs)`` -> ``{"Successful": {jobID: requestID}, "Failed": {}}``.
* ``cancelRequest(requestID)`` -> True when it was cancelled (False: already final).
* ``readRequestsForJobs(jobIDs)`` -> ``{"Successful": {jobID: request}, "Failed": {...}}``;
  ``getBulkRequestStatus(requestIDs)`` -> ``{requestID: status}``;
  ``getRequestFileStatus(requestID, lfns)`` -> ``{lfn: status}``; ``getDigest(requestID)``;
  ``getRequestInfo(requestID)`` -> DIRAC's row ``[RequestID, Status, RequestName, JobID,
  Owner, OwnerGroup, SourceComponent, CreationTime, SubmitTime, LastUpdate]``;
  ``getRequestIDForName(name)``; ``deleteRequest(requestID)`` (not while Assigned).

Users see and cancel their own requests; ``Operator``, ``JobAdministrator`` and trusted hosts
see and cancel all of them. The database is ``Systems.RequestManagement.Database`` (schema
``RequestManagement``), else the top-level ``Database``.

Example::

    from dms.request_client import ReqManagerClient
    rid = ReqManagerClient(rpc).put_request({"RequestName": "x", "Operations": [...]})
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.engine import Engine

from core.exceptions import InvalidArgumentError, NotAuthorizedError, NotFoundError
from core.ids import as_id
from core.rpc.service import Call, Service, rpc_method
from core.security.identity import Identity
from dms.db import rms as db
from dms.logic import rms as logic

SYSTEM = "RequestManagement"
MANAGERS = frozenset({"Operator", "JobAdministrator", "TrustedHost"})


def _manager(ident: Identity) -> bool:
    return bool(ident.properties & MANAGERS)


class ReqManagerService(Service):
    system = SYSTEM
    name = "ReqManager"

    @property
    def engine(self) -> Engine:
        return self.ctx.engine(SYSTEM)

    def _owner(self, ident: Identity, wire: dict[str, Any]) -> tuple[str, str, str | None]:
        if "TrustedHost" in ident.properties and wire.get("Owner"):
            group = wire.get("OwnerGroup")
            groups = self.ctx.config.registry.groups
            if not isinstance(group, str) or group not in groups or \
                    wire["Owner"] not in groups[group].users:
                raise InvalidArgumentError("Owner/OwnerGroup must name a user of that group")
            return str(wire["Owner"]), group, groups[group].vo
        if not ident.username or not ident.group:
            raise NotAuthorizedError("a request needs a user identity with a group")
        return ident.username, ident.group, ident.vo

    def _visible(self, call: Call, request_id: int) -> db.RequestRow:
        req = db.get_request(self.engine, request_id)
        if req.owner != call.identity.username and not _manager(call.identity):
            raise NotAuthorizedError(f"request {request_id} is not yours")
        return req

    @rpc_method("putRequest")
    def put_request(self, call: Call, request: dict | str) -> int:
        if isinstance(request, str):  # DIRAC's ReqClient sends Request.toJSON() text
            try:
                request = json.loads(request)
            except ValueError:
                raise InvalidArgumentError("the request is not JSON") from None
            if not isinstance(request, dict):
                raise InvalidArgumentError("a request is a JSON object")
        owner, group, vo = self._owner(call.identity, request)
        return db.insert_request(self.engine, logic.parse_request(request, owner, group, vo))

    @rpc_method("getRequest")
    def get_request(self, call: Call, request_id: int) -> dict[str, Any]:
        return logic.to_wire(self._visible(call, request_id))

    @rpc_method("getRequestStatus")
    def get_request_status(self, call: Call, request_id: int) -> str:
        return self._visible(call, request_id).status

    @rpc_method("getRequestIDsForJobs")
    def get_request_ids_for_jobs(self, call: Call, job_ids: list) -> dict[str, Any]:
        ids = [n for n in map(as_id, job_ids) if n is not None]  # others: no such job
        owner = None if _manager(call.identity) else call.identity.username
        found = {r.job_id: r.request_id for r in db.find_requests(
            self.engine, owner=owner, job_ids=ids)}
        return {"Successful": {j: found[j] for j in ids if j in found},
                "Failed": {j: "No request found" for j in ids if j not in found}}

    @rpc_method("cancelRequest")
    def cancel_request(self, call: Call, request_id: int) -> bool:
        self._visible(call, request_id)
        return db.cancel(self.engine, request_id)

    @rpc_method("readRequestsForJobs")
    def read_requests_for_jobs(self, call: Call, job_ids: list) -> dict[str, Any]:
        ids = self.get_request_ids_for_jobs(call, job_ids)
        return {"Successful": {job: logic.to_wire(db.get_request(self.engine, rid))
                               for job, rid in ids["Successful"].items()},
                "Failed": ids["Failed"]}

    @rpc_method("getBulkRequestStatus")
    def get_bulk_request_status(self, call: Call, request_ids: list) -> dict[int, str]:
        out = {}
        for value in request_ids:
            try:
                rid = int(value)
                if not 0 < rid < 2**63:  # beyond the database's IDs: no such request
                    continue
                out[rid] = self._visible(call, rid).status
            except (NotFoundError, NotAuthorizedError, ValueError, TypeError, OverflowError):
                continue
        return out

    @rpc_method("getRequestFileStatus")
    def get_request_file_status(self, call: Call, request_id: int,
                                lfns: str | list) -> dict[str, str]:
        wanted = [lfns] if isinstance(lfns, str) else [str(x) for x in lfns]
        return logic.file_statuses(self._visible(call, request_id), wanted)

    @rpc_method("getDigest")
    def get_digest(self, call: Call, request_id: int) -> str:
        return logic.digest(self._visible(call, request_id))

    @rpc_method("getRequestInfo")
    def get_request_info(self, call: Call, request_id: int) -> list[Any]:
        req = self._visible(call, request_id)
        return [req.request_id, req.status, req.name, req.job_id, req.owner, req.owner_group,
                "", req.created, req.created, req.last_update]

    @rpc_method("getRequestIDForName")
    def get_request_id_for_name(self, call: Call, name: str) -> int:
        owner = None if _manager(call.identity) else call.identity.username
        found = db.request_ids_named(self.engine, name, owner)
        if not found:
            raise NotFoundError(f"No such request {name}")
        if len(found) > 1:
            raise InvalidArgumentError(f"RequestName {name} not unique ({len(found)} matches)")
        return found[0]

    @rpc_method("deleteRequest")
    def delete_request(self, call: Call, request_id: int) -> None:
        self._visible(call, request_id)
        db.delete_request(self.engine, request_id)
