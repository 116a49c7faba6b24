"""Typed Python clients of ``Transformation/TransformationManager`` and
``Production/ProductionManager``.

Methods are snake_case, take and return plain values, and raise the server's exception
classes (:class:`~core.exceptions.InvalidArgumentError` naming the bad field,
:class:`~core.exceptions.AlreadyExistsError`, :class:`~core.exceptions.NotFoundError`,
:class:`~core.exceptions.InvalidTransitionError` ...).

Example::

    from transformation.client import TransformationClient
    with TransformationClient.from_config() as tc:     # $PILOTWMS_CLIENT_CONFIG, your credentials
        tid = tc.create({"Name": "reco", "Type": "Processing", "GroupSize": 5,
                         "Body": '[Executable = "reco.sh";]', "InputMetaQuery": {"kind": "raw"}})
        tc.start(tid)
        tc.files(tid, status="Unused")                 # [{'LFN': ..., 'Status': 'Unused', ...}]
"""

from __future__ import annotations

from typing import Any

from core.client_config import ClientConfig, make_client
from core.rpc.client import Credentials, RPCClient
from core.rpc.jencode import decode

SERVICE = "Transformation/TransformationManager"
PRODUCTION_SERVICE = "Production/ProductionManager"


class _Client:
    service = SERVICE

    def __init__(self, rpc: RPCClient) -> None:
        self.rpc = rpc

    @classmethod
    def from_config(cls, cfg: ClientConfig | None = None,
                    credentials: Credentials | None = None) -> Any:
        return cls(make_client(cls.service, cfg, credentials))

    def close(self) -> None:
        self.rpc.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class TransformationClient(_Client):
    service = SERVICE

    # -- transformations
    def create(self, description: dict[str, Any]) -> int:
        return int(self.rpc.call("createTransformation", description))

    def transformations(self, cond: dict[str, Any] | None = None, *, limit: int | None = None,
             offset: int | None = None, extra_params: bool = False) -> list[dict[str, Any]]:
        return list(self.rpc.call("getTransformations", cond or {}, None, None,
                                  "CreationDate", None, limit, extra_params, offset, None))

    def get(self, trans: int | str, extra_params: bool = False) -> dict[str, Any]:
        return dict(self.rpc.call("getTransformation", trans, extra_params))

    def set_parameter(self, trans: int | str, name: str, value: Any) -> None:
        self.rpc.call("setTransformationParameter", trans, name, value)

    def set_status(self, trans: int | str, status: str) -> None:
        self.set_parameter(trans, "Status", status)

    def start(self, trans: int | str) -> None:
        self.set_status(trans, "Active")

    def stop(self, trans: int | str) -> None:
        self.set_status(trans, "Stopped")

    def flush(self, trans: int | str) -> None:
        self.set_status(trans, "Flush")

    def complete(self, trans: int | str) -> None:
        self.rpc.call("completeTransformation", trans)

    def clean(self, trans: int | str) -> None:
        self.rpc.call("cleanTransformation", trans)

    def extend(self, trans: int | str, tasks: int) -> list[int]:
        return [int(t) for t in self.rpc.call("extendTransformation", trans, tasks)]

    def logging(self, trans: int | str) -> list[dict[str, Any]]:
        return list(self.rpc.call("getTransformationLogging", trans))

    def parameters(self, trans: int | str) -> dict[str, Any]:
        return dict(self.rpc.call("getAdditionalParameters", trans))

    # -- files
    def add_files(self, trans: int | str, lfns: list[str]) -> dict[str, Any]:
        return dict(self.rpc.call("addFilesToTransformation", trans, lfns))

    def files(self, trans: int | str | None = None, *, status: str | list[str] | None = None,
              cond: dict[str, Any] | None = None, limit: int | None = None,
              offset: int | None = None) -> list[dict[str, Any]]:
        where = dict(cond or {})
        if trans is not None:
            where["TransformationID"] = self._id(trans)
        if status is not None:
            where["Status"] = status
        text = self.rpc.call("getTransformationFiles", where, None, None, "LastUpdate", None,
                             limit, offset, None)
        reply = decode(text) if isinstance(text, str) else text
        return list(reply["Value"])

    def set_file_status(self, trans: int | str, statuses: dict[str, str]) -> dict[str, str]:
        """``{lfn: status}``; returns ``{lfn: status set}``."""
        rows = self.files(trans, cond={"LFN": list(statuses)})
        by_id = {int(r["FileID"]): r["LFN"] for r in rows}
        wire = {fid: [statuses[lfn], False] for fid, lfn in by_id.items()}
        done = self.rpc.call("setFileStatusForTransformation", trans, wire) if wire else {}
        return {by_id[int(k)]: v for k, v in done.items()}

    def reset_files(self, trans: int | str, status: str) -> int:
        return int(self.rpc.call("resetTransformationFiles", trans, status))

    def stats(self, trans: int | str) -> dict[str, int]:
        return dict(self.rpc.call("getTransformationStats", trans))

    # -- tasks
    def tasks(self, trans: int | str | None = None, *, status: str | list[str] | None = None,
              input_vector: bool = False, limit: int | None = None) -> list[dict[str, Any]]:
        where: dict[str, Any] = {}
        if trans is not None:
            where["TransformationID"] = self._id(trans)
        if status is not None:
            where["ExternalStatus"] = status
        return list(self.rpc.call("getTransformationTasks", where, None, None, "CreationTime",
                                  None, limit, input_vector, None))

    def task_stats(self, trans: int | str) -> dict[str, int]:
        return dict(self.rpc.call("getTransformationTaskStats", trans))

    def summary(self, cond: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        reply = self.rpc.call("getTransformationSummaryWeb", cond or {}, [], 0, 0)
        names = reply["ParameterNames"]
        return [dict(zip(names, record, strict=True)) for record in reply["Records"]]

    def _id(self, trans: int | str) -> int:
        if isinstance(trans, int) or str(trans).isdigit():
            return int(trans)
        return int(self.get(trans)["TransformationID"])


class ProductionClient(_Client):
    service = PRODUCTION_SERVICE

    def create(self, description: dict[str, Any]) -> int:
        return int(self.rpc.call("addProduction", description))

    def productions(self) -> list[dict[str, Any]]:
        return list(self.rpc.call("getProductions", {}))

    def get(self, prod: int | str) -> dict[str, Any]:
        return dict(self.rpc.call("getProduction", prod))

    def start(self, prod: int | str) -> None:
        self.rpc.call("startProduction", prod)

    def stop(self, prod: int | str) -> None:
        self.rpc.call("stopProduction", prod)

    def clean(self, prod: int | str) -> None:
        self.rpc.call("cleanProduction", prod)

    def summary(self, prod: int | str) -> list[dict[str, Any]]:
        return list(self.rpc.call("getProductionSummary", prod))
