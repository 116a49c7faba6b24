"""``Transformation/TransformationManager``: DIRAC's TransformationManager, same method names
and the argument order DIRAC's ``TransformationClient`` sends.

Rights: reading needs an identity of the VO (callers see their VO's transformations); creating
needs ``ProductionManagement``, ``ProductionSharing`` or ``ProductionUser``; modifying needs
``ProductionManagement``, or ``ProductionSharing`` in the author's group, or
``ProductionUser`` as the author (DIRAC's ``checkPermissions``); the owner of a
transformation may always stop (or flush) it. Transformations are addressed by ID or name
(``transName``), as in DIRAC.

Example (the real DIRAC client)::

    from DIRAC.TransformationSystem.Client.TransformationClient import TransformationClient
    tc = TransformationClient()
    tc.addTransformation("reco", "d", "long", "Processing", "Standard", "Manual", "",
                         groupSize=5, body=jdl_template, inputMetaQuery={"kind": "raw"})
    tc.getTransformations({"Status": "Active"})
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy.engine import Engine

from core.db import utcnow, write_transaction
from core.exceptions import InvalidArgumentError, NotAuthorizedError, NotFoundError
from core.ids import as_id
from core.rpc.jencode import encode
from core.rpc.service import Call, Service, rpc_method
from transformation.db import queries as db
from transformation.logic import files as files_logic
from transformation.logic import selection
from transformation.logic import tasks as task_logic
from transformation.logic import transformations as logic
from transformation.logic.catalog import CatalogView
from transformation.service.common import SYSTEM, actor_of, catalog_of, known_ses

Ident = int | str
CREATORS = list(logic.CREATORS)


def _tid(value: Ident) -> int | str:
    if isinstance(value, bool):
        raise InvalidArgumentError("transName must be an ID or a name")
    return value


def _task_ids(value: object) -> list[int]:
    """One task ID or a list of them: whole numbers that fit the database's IDs."""
    ids = value if isinstance(value, list) else [value]
    out = [t for t in ids if isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 2**63]
    if len(out) != len(ids):
        raise InvalidArgumentError("taskID must be a task ID or a list of task IDs")
    return out


class TransformationManagerService(Service):
    system = SYSTEM
    name = "TransformationManager"

    @property
    def engine(self) -> Engine:
        return self.ctx.engine(SYSTEM)

    @property
    def catalog(self) -> CatalogView:
        return catalog_of(self.ctx)

    @property
    def settings(self) -> Any:
        return self.ctx.config.operations.transformations

    def _vo(self, call: Call) -> str | None:
        return call.identity.vo or None

    def _row(self, call: Call, trans: Ident) -> Any:
        return logic.find(self.engine, _tid(trans), self._vo(call))

    # -- transformations ------------------------------------------------------------------------

    @rpc_method("addTransformation", rights=CREATORS)
    def add_transformation(self, call: Call, trans_name: str, description: str,
                           long_description: str, trans_type: str, plugin: str,
                           agent_type: str, file_mask: str,
                           transformation_group: str = "General", group_size: Any = 1,
                           inherited_from: int = 0, body: str = "", max_tasks: int = 0,
                           events_per_task: int = 0, add_files: bool = True,
                           input_meta_query: Any = None, output_meta_query: Any = None
                           ) -> int:
        data: dict[str, Any] = {
            "TransformationName": trans_name, "Description": description,
            "LongDescription": long_description, "Type": trans_type, "Plugin": plugin,
            "AgentType": agent_type or "Automatic", "FileMask": file_mask,
            "TransformationGroup": transformation_group, "GroupSize": group_size,
            "InheritedFrom": inherited_from, "Body": body, "MaxNumberOfTasks": max_tasks,
            "EventsPerTask": events_per_task, "InputMetaQuery": input_meta_query,
            "OutputMetaQuery": output_meta_query}
        return self.create_transformation(call, data)

    @rpc_method("createTransformation", rights=CREATORS)
    def create_transformation(self, call: Call, description: dict) -> int:
        """pilotwms: the whole description as one dict (``dtrans create FILE.yaml``)."""
        return logic.create(self.engine, self.catalog, self.settings, actor_of(call.identity),
                            description, known_ses=known_ses(self.ctx.config))

    @rpc_method("getTransformations")
    def get_transformations(self, call: Call, cond_dict: dict | None = None,
                            older: Any = None, newer: Any = None,
                            time_stamp: str | None = "CreationDate",
                            order_attribute: str | list | None = None,
                            limit: int | None = None, extra_params: bool = False,
                            offset: int | None = None, columns: list | None = None
                            ) -> list[dict[str, Any]]:
        return logic.listing(self.engine, self._vo(call), cond_dict or {}, older=older,
                             newer=newer, time_stamp=time_stamp or "CreationDate",
                             order=order_attribute, limit=limit, offset=offset,
                             extra_params=extra_params, columns=columns)

    @rpc_method("getTransformation")
    def get_transformation(self, call: Call, trans_name: Ident, extra_params: bool = False
                           ) -> dict[str, Any]:
        return logic.get(self.engine, _tid(trans_name), self._vo(call), extra_params)

    @rpc_method("getTransformationParameters")
    def get_transformation_parameters(self, call: Call, trans_name: Ident,
                                      parameters: str | list) -> Any:
        info = logic.get(self.engine, _tid(trans_name), self._vo(call), True)
        names = [parameters] if isinstance(parameters, str) else list(parameters)
        missing = [n for n in names if n not in info]
        if missing:
            raise NotFoundError(f"Parameter {missing[0]} not defined for transformation")
        if isinstance(parameters, str):
            return info[parameters]
        return {n: info[n] for n in names}

    @rpc_method("getTransformationWithStatus")
    def get_transformation_with_status(self, call: Call, status: str | list) -> list[int]:
        wanted = [status] if isinstance(status, str) else list(status)
        return [t["TransformationID"] for t in logic.listing(
            self.engine, self._vo(call), {"Status": wanted})]

    @rpc_method("setTransformationParameter")
    def set_transformation_parameter(self, call: Call, trans_name: Ident, param_name: str,
                                     param_value: Any) -> None:
        logic.set_parameter(self.engine, self.catalog, self.settings, actor_of(call.identity),
                            _tid(trans_name), param_name, param_value)

    @rpc_method("deleteTransformationParameter")
    def delete_transformation_parameter(self, call: Call, trans_name: Ident,
                                        param_name: str) -> None:
        logic.delete_parameter(self.engine, actor_of(call.identity), _tid(trans_name),
                               param_name)

    @rpc_method("getAdditionalParameters")
    def get_additional_parameters(self, call: Call, trans_name: Ident) -> dict[str, Any]:
        row = self._row(call, trans_name)
        return logic.parameters_of(self.engine, row.transformation_id)

    @rpc_method("completeTransformation")
    def complete_transformation(self, call: Call, trans_name: Ident) -> None:
        logic.set_status(self.engine, actor_of(call.identity), _tid(trans_name), "Completed")

    @rpc_method("cleanTransformation")
    def clean_transformation(self, call: Call, trans_name: Ident) -> None:
        """Status Cleaning: the TransformationCleaningAgent kills the jobs, cancels the
        requests, removes the outputs when asked (additional parameter ``RemoveOutputs``)
        and ends with Cleaned."""
        logic.set_status(self.engine, actor_of(call.identity), _tid(trans_name), "Cleaning")

    @rpc_method("getTransformationLogging")
    def get_transformation_logging(self, call: Call, trans_name: Ident
                                   ) -> list[dict[str, Any]]:
        return logic.logging(self.engine, _tid(trans_name), self._vo(call))

    @rpc_method("getTransformationMetaQuery")
    def get_transformation_meta_query(self, call: Call, trans_name: Ident, query_type: str
                                      ) -> dict[str, Any]:
        if query_type not in ("Input", "Output"):
            raise InvalidArgumentError("queryType must be Input or Output")
        info = logic.get(self.engine, _tid(trans_name), self._vo(call))
        query = info[f"{query_type}MetaQuery"]
        if not query:
            raise NotFoundError(f"No {query_type} MetaQuery found for transformation "
                                f"{info['TransformationID']}")
        return dict(query)

    @rpc_method("createTransformationMetaQuery")
    def create_transformation_meta_query(self, call: Call, trans_name: Ident, query: dict,
                                         query_type: str) -> None:
        if query_type not in ("Input", "Output"):
            raise InvalidArgumentError("queryType must be Input or Output")
        if query_type == "Input":
            self.set_transformation_parameter(call, trans_name, "InputMetaQuery", query)
            return
        row = self._row(call, trans_name)
        if not logic.may_modify(actor_of(call.identity), row):
            raise NotAuthorizedError("You do not have permissions for transformation "
                                     f"{row.transformation_id}")
        from transformation.logic.definition import check_query

        checked = check_query(query, self.catalog.fields(), "OutputMetaQuery")
        import json

        now = utcnow()
        with write_transaction(self.engine) as conn:
            db.update_transformation(conn, row.transformation_id, {
                "output_query": json.dumps(checked, sort_keys=True) if checked else None}, now)
            db.add_log(conn, row.transformation_id, ["OutputMetaQuery set"],
                       call.identity.username or "", now)

    @rpc_method("deleteTransformationMetaQuery")
    def delete_transformation_meta_query(self, call: Call, trans_name: Ident,
                                         query_type: str) -> None:
        self.create_transformation_meta_query(call, trans_name, {}, query_type) \
            if query_type == "Output" else self.set_transformation_parameter(
                call, trans_name, "InputMetaQuery", None)

    # -- files ----------------------------------------------------------------------------------

    @rpc_method("addFilesToTransformation")
    def add_files_to_transformation(self, call: Call, trans_name: Ident, lfns: list
                                    ) -> dict[str, Any]:
        if not all(isinstance(x, str) for x in lfns):
            raise InvalidArgumentError("lfns must be a list of LFNs")
        return files_logic.add_files(self.engine, self.catalog, actor_of(call.identity),
                               _tid(trans_name), lfns)

    @rpc_method("setFileStatusForTransformation")
    def set_file_status_for_transformation(self, call: Call, trans_name: Ident,
                                           new_statuses: dict) -> dict[str, Any]:
        """``{fileID: [status, failed]}`` as DIRAC's client sends it."""
        parsed: dict[int, tuple[str, bool]] = {}
        for key, value in new_statuses.items():
            file_id = as_id(key)
            if file_id is None:
                raise InvalidArgumentError(f"bad FileID {key!r:.40}")
            if not isinstance(value, (list, tuple)) or len(value) != 2:
                raise InvalidArgumentError("Status field should be two values")
            parsed[file_id] = (str(value[0]), bool(value[1]))
        done = files_logic.set_file_status(
            self.engine, actor_of(call.identity), _tid(trans_name), parsed,
            max_reset=self.settings.files_max_reset_counter)
        return {str(k): v for k, v in done.items()}

    @rpc_method("resetTransformationFiles")
    def reset_transformation_files(self, call: Call, trans_name: Ident, status: str) -> int:
        """pilotwms: every file in ``status`` back to Unused with no errors."""
        return files_logic.reset_files(self.engine, actor_of(call.identity), _tid(trans_name),
                                 status)

    @rpc_method("getTransformationStats")
    def get_transformation_stats(self, call: Call, trans_name: Ident) -> dict[str, int]:
        return logic.file_stats(self.engine, self._row(call, trans_name).transformation_id)

    @rpc_method("getTransformationFilesCount")
    def get_transformation_files_count(self, call: Call, trans_name: Ident, field: str,
                                       selection: dict | None = None) -> dict[str, int]:
        row = self._row(call, trans_name)
        if field not in files_logic.FILE_COLUMNS:
            raise InvalidArgumentError(f"bad field {field!r}")
        cond = dict(selection or {})
        cond["TransformationID"] = row.transformation_id
        counts = Counter(str(f[field]) for f in files_logic.get_files(
            self.engine, None, self._vo(call), cond, columns=[field]))
        out = dict(counts)
        out["Total"] = sum(counts.values())
        return out

    @rpc_method("getTransformationFiles")
    def get_transformation_files(self, call: Call, cond_dict: dict | None = None,
                                 older: Any = None, newer: Any = None,
                                 time_stamp: str | None = "LastUpdate",
                                 order_attribute: str | list | None = None,
                                 limit: int | None = None, offset: int | None = None,
                                 columns: list | None = None
                                 ) -> str:
        """As DIRAC: the value is the JEncoded ``{"OK": true, "Value": [...]}`` text."""
        found = files_logic.get_files(self.engine, self.catalog, self._vo(call), cond_dict or {},
                                older=older, newer=newer,
                                time_stamp=time_stamp or "LastUpdate",
                                order=order_attribute, limit=limit, offset=offset,
                                columns=columns)
        return encode({"OK": True, "Value": found})

    # -- tasks ----------------------------------------------------------------------------------

    @rpc_method("getTransformationTasks")
    def get_transformation_tasks(self, call: Call, cond_dict: dict | None = None,
                                 older: Any = None, newer: Any = None,
                                 time_stamp: str | None = "CreationTime",
                                 order_attribute: str | list | None = None,
                                 limit: int | None = None, input_vector: bool = False,
                                 offset: int | None = None) -> list[dict[str, Any]]:
        return logic.get_tasks(self.engine, self._vo(call), cond_dict or {}, older=older,
                               newer=newer, time_stamp=time_stamp or "CreationTime",
                               limit=limit, offset=offset, input_vector=input_vector,
                               order=order_attribute)

    @rpc_method("getTransformationTaskStats")
    def get_transformation_task_stats(self, call: Call, trans_name: Ident) -> dict[str, int]:
        return logic.task_stats(self.engine, self._row(call, trans_name).transformation_id)

    @rpc_method("extendTransformation")
    def extend_transformation(self, call: Call, trans_name: Ident, n_tasks: int) -> list[int]:
        return logic.extend(self.engine, actor_of(call.identity), _tid(trans_name), n_tasks)

    @rpc_method("addTaskForTransformation")
    def add_task_for_transformation(self, call: Call, trans_name: Ident,
                                    lfns: list | None = None, se: str = "Unknown") -> int:
        return task_logic.add_task(self.engine, self.catalog, actor_of(call.identity),
                                   _tid(trans_name), list(lfns or []),
                                   "" if se == "Unknown" else se)

    @rpc_method("setTaskStatus")
    def set_task_status(self, call: Call, trans_name: Ident, task_id: int | list,
                        status: str) -> None:
        task_logic.set_task_status(self.engine, actor_of(call.identity), _tid(trans_name),
                                   _task_ids(task_id), status)

    @rpc_method("setTaskStatusAndWmsID")
    def set_task_status_and_wms_id(self, call: Call, trans_name: Ident, task_id: int,
                                   status: str, task_wms_id: str) -> None:
        task_logic.set_task_status(self.engine, actor_of(call.identity), _tid(trans_name),
                                   [task_id], status, external_id=task_wms_id)

    @rpc_method("deleteTasks")
    def delete_tasks(self, call: Call, trans_name: Ident, task_min: int, task_max: int
                     ) -> int:
        return task_logic.delete_tasks(self.engine, actor_of(call.identity), _tid(trans_name),
                                       task_min, task_max)

    # -- summaries ------------------------------------------------------------------------------

    @rpc_method("getTransformationSummary")
    def get_transformation_summary(self, call: Call) -> dict[str, Any]:
        out = {}
        for info in logic.listing(self.engine, self._vo(call)):
            tid = info["TransformationID"]
            info["JobStats"] = logic.task_stats(self.engine, tid)
            info["NumberOfFiles"] = logic.file_stats(self.engine, tid)["Total"]
            out[str(tid)] = info
        return out

    @rpc_method("getTransformationSummaryWeb")
    def get_transformation_summary_web(self, call: Call, select: dict | None = None,
                                       sort: list | None = None, start: int = 0,
                                       max_items: int = 0) -> dict[str, Any]:
        """DIRAC's web table: ``ParameterNames``, ``Records``, ``TotalRecords``."""
        vo = self._vo(call)
        order = selection.sort_order(sort)
        selection.check_page(max_items, start, names=("maxItems", "startItem"))
        with self.engine.connect() as conn:
            where = selection.conditions(select or {}, logic.TRANS_SELECT)
            if vo:
                where.append(logic.trans_t.c.vo == vo)
            rows = db.find_transformations(conn, where)
        lines = [logic.summary(self.engine, row) for row in rows]
        if order is not None:
            key, descending = order
            lines.sort(key=lambda x: str(x.get(key, "")), reverse=descending)
        total = len(lines)
        lines = lines[start:start + max_items] if max_items else lines[start:]
        names = sorted({k for line in lines for k in line})
        return {"ParameterNames": names,
                "Records": [[line.get(n, 0) for n in names] for line in lines],
                "TotalRecords": total, "Extras": {}}
