"""The typed client of ``RequestManagement/ReqManager`` (failover requests).

Example::

    from dms.request_client import ReqManagerClient
    client = ReqManagerClient(rpc)      # an RPCClient for "RequestManagement/ReqManager"
    rid = client.put_request({"RequestName": "job12", "JobID": 12, "Operations": [
        {"Type": "ReplicateAndRegister", "TargetSE": "DISK-A", "SourceSE": "FAILOVER",
         "Files": [{"LFN": "/demo/user/a/alice/out"}]}]})
    client.get_request_status(rid)      # 'Waiting'

``put_request`` is what :class:`dms.logic.data_manager.DataManager` takes as
``submit_request``.
"""

from __future__ import annotations

from typing import Any

from core.client_config import ClientConfig, make_client
from core.rpc.client import Credentials, RPCClient

SERVICE = "RequestManagement/ReqManager"


class ReqManagerClient:
    def __init__(self, rpc: RPCClient) -> None:
        self.rpc = rpc

    @classmethod
    def from_config(cls, cfg: ClientConfig | None = None,
                    credentials: Credentials | None = None) -> ReqManagerClient:
        return cls(make_client(SERVICE, cfg, credentials))

    def put_request(self, request: dict[str, Any]) -> int:
        return int(self.rpc.call("putRequest", request))

    def get_request(self, request_id: int) -> dict[str, Any]:
        return dict(self.rpc.call("getRequest", request_id))

    def get_request_status(self, request_id: int) -> str:
        return str(self.rpc.call("getRequestStatus", request_id))

    def get_request_ids_for_jobs(self, job_ids: list[int]) -> dict[int, int]:
        reply = self.rpc.call("getRequestIDsForJobs", job_ids)
        return {int(k): int(v) for k, v in reply["Successful"].items()}

    def cancel_request(self, request_id: int) -> bool:
        return bool(self.rpc.call("cancelRequest", request_id))

    def close(self) -> None:
        self.rpc.close()
