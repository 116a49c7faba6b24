"""``ResourceStatus/ResourceStatus``: the element statuses DIRAC's clients read, from our state.

DIRAC 9 asks its Resource Status System for the status of every storage element before it
builds a ``StorageElement`` object (so before any sandbox download or data command) and for
sites and CEs in its site and resource caches; it has no configuration fallback. This service
answers those reads from the site mask and ``Resources`` (see
:mod:`wms.logic.resource_status`): a ban in the site mask or ``ReadAccess: false`` in the
configuration shows at the next read.

* ``select(table, params)``: DIRAC's ``ResourceStatusClient.select`` (``SiteStatus``,
  ``ResourceStatus``, ``NodeStatus``; ``*Log``/``*History`` are empty here); the reply carries
  DIRAC's extra ``Columns`` key.
* ``insert``/``addOrModify``/``addIfNotThere``/``delete`` refuse (errno 1): site statuses are
  set with ``WMSAdministrator.banSite``/``allowSite``, SE access in the configuration.

Example (DIRAC's own client)::

    ResourceStatus().getElementStatus("ProductionSandboxSE", "StorageElement")
    # S_OK({'ProductionSandboxSE': {'ReadAccess': 'Active', 'WriteAccess': 'Active', ...}})
"""

from __future__ import annotations

from typing import Any

from core.db import utcnow
from core.exceptions import NotAllowedError
from core.rpc.service import Call, Reply, Service, rpc_method
from wms.db import site_mask as mask_db
from wms.logic import resource_status
from wms.logic.sandboxes import DEFAULT_SE_NAME

WMS = "WorkloadManagement"
READ_ONLY = ("the ResourceStatus service of pilotwms is read-only: ban or allow sites with "
             "WorkloadManagement/WMSAdministrator banSite/allowSite (dirac-admin-ban-site), "
             "set storage access in Resources.StorageElements.<SE> "
             "(ReadAccess/WriteAccess/RemoveAccess) of the configuration")


class ResourceStatusService(Service):
    system = "ResourceStatus"
    name = "ResourceStatus"

    def rows(self) -> list[resource_status.ElementRow]:
        config = self.ctx.config
        options = config.service_config(WMS, "SandboxStore").options
        now = utcnow()
        with self.ctx.engine(WMS).connect() as conn:
            mask = mask_db.site_mask_entries(conn)
        return resource_status.element_rows(
            config, mask, sandbox_se=str(options.get("SEName", DEFAULT_SE_NAME)),
            now=now.replace(microsecond=0))

    @rpc_method("select", rights="authenticated")
    def select(self, call: Call, table: str, params: dict[str, Any] | None = None) -> Reply:
        rows, columns = resource_status.select(self.rows(), table, params or {})
        return Reply(rows, {"Columns": columns})

    def _refuse(self) -> None:
        raise NotAllowedError(READ_ONLY)

    @rpc_method("insert", rights="authenticated")
    def insert(self, call: Call, table: str, params: dict[str, Any]) -> None:
        self._refuse()

    @rpc_method("addOrModify", rights="authenticated")
    def add_or_modify(self, call: Call, table: str, params: dict[str, Any]) -> None:
        self._refuse()

    @rpc_method("addIfNotThere", rights="authenticated")
    def add_if_not_there(self, call: Call, table: str, params: dict[str, Any]) -> None:
        self._refuse()

    @rpc_method("delete", rights="authenticated")
    def delete(self, call: Call, table: str, params: dict[str, Any] | None = None) -> None:
        self._refuse()
