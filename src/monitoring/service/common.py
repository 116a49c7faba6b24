"""What both report services share: the backend (one per process), who sees what, and the
report methods with DIRAC's names (``listUniqueKeyValues``, ``listReports``, ``getReport``,
``generatePlot``).

Who sees what (DIRAC's accounting policies, simplified): holders of ``JobAdministrator``,
``JobMonitor``, ``Operator``, ``ServiceAdministrator``, ``ProductionManagement`` or
``Monitoring`` see every record; other users see their own jobs and transfers (``User`` is
forced to them), the pilot types, and not the component monitoring.

Example::

    >>> from core.security.identity import Identity
    >>> bob = Identity(auth_method="x509", username="bob", group="g", vo="v", valid_dn=True,
    ...                valid_group=True, properties=frozenset({"NormalUser"}))
    >>> scoped_filters(bob, "Job", {"Site": ["A"]})
    {'Site': ['A'], 'User': ['bob']}
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from core.exceptions import NotAuthorizedError
from core.rpc.context import ServerContext
from core.rpc.service import Call, Service, rpc_method
from core.security.identity import Identity
from monitoring.db import SYSTEM, make_backend
from monitoring.db.base import Backend
from monitoring.logic import plots
from monitoring.logic.reports import ReportRequest, build_report, list_reports
from monitoring.types import record_type

PRIVILEGED = frozenset({"JobAdministrator", "JobMonitor", "Operator", "ServiceAdministrator",
                        "ProductionManagement", "Monitoring"})
#: types whose records belong to a user
USER_TYPES = frozenset({"Job", "DataOperation", "WMSHistory"})
#: types only the privileged may read
PRIVATE_TYPES = frozenset({"ComponentMonitoring"})
READERS = "authenticated"
WRITERS = ["TrustedHost", "ServiceAdministrator"]


def privileged(ident: Identity) -> bool:
    return bool(PRIVILEGED & set(ident.properties))


def scoped_filters(ident: Identity, type_name: str,
                   filters: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """The filters a caller may use on ``type_name`` (see the module docstring)."""
    out = {str(k): [str(x) for x in v] for k, v in filters.items()}
    if privileged(ident):
        return out
    if type_name in PRIVATE_TYPES:
        raise NotAuthorizedError(f"{type_name} records are for monitoring operators")
    if type_name in USER_TYPES:
        asked = out.get("User")
        if asked and set(asked) - {ident.username}:
            raise NotAuthorizedError(f"{ident.username} may only see their own records")
        out["User"] = [ident.username or ""]
    return out


class ReportService(Service):
    """Base of the two report services; one backend per process, made on first use."""

    def __init__(self, ctx: ServerContext) -> None:
        super().__init__(ctx)
        self._backend: Backend | None = None
        self._lock = threading.Lock()

    def backend(self) -> Backend:
        with self._lock:
            if self._backend is None:
                backend = make_backend(self.ctx.config, self.ctx.engine(SYSTEM))
                backend.setup()
                self._backend = backend
            return self._backend

    def _request(self, call: Call, request: dict[str, Any]) -> ReportRequest:
        parsed = ReportRequest.from_wire(request)
        filters = scoped_filters(call.identity, record_type(parsed.type).name,
                                 parsed.filters)
        return ReportRequest(parsed.type, parsed.report, parsed.start, parsed.end,
                             parsed.grouping, filters, parsed.granularity)

    @rpc_method("listUniqueKeyValues", rights=READERS)
    def list_unique_key_values(self, call: Call, type_name: str) -> dict[str, list[str]]:
        rtype = record_type(type_name)
        scoped_filters(call.identity, rtype.name, {})
        values = self.backend().key_values(rtype)
        if not privileged(call.identity) and "User" in values:
            values["User"] = [u for u in values["User"] if u == call.identity.username]
        return values

    @rpc_method("listReports", rights=READERS)
    def list_reports(self, call: Call, type_name: str) -> list[str]:
        return list(list_reports(type_name))

    @rpc_method("getReport", rights=READERS)
    def get_report(self, call: Call, request: dict[str, Any]) -> dict[str, Any]:
        """DIRAC's report request (``typeName``, ``reportName``, ``startTime``, ``endTime``,
        ``condDict``, ``grouping``, ``extraArgs``) -> the report's data."""
        report = build_report(self.backend(), self._request(call, request))
        report["data"] = _wire_data(report["data"])
        return report

    @rpc_method("generatePlot", rights=READERS)
    def generate_plot(self, call: Call, request: dict[str, Any]) -> dict[str, Any]:
        """The plot itself (``extraArgs.format``: png or svg) with the data behind it:
        ``{"plot": bytes, "format": ..., "series": ..., "reportData": ...}``."""
        extra = request.get("extraArgs") or {}
        report = build_report(self.backend(), self._request(call, request))
        plot = plots.draw(report, str(extra.get("format", "png")))
        report["data"] = _wire_data(report["data"])
        return {"plot": plot.image, "format": plot.format, "series": plot.series,
                "reportData": report}


def _wire_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """JSON object keys are text: interval starts become strings of epoch seconds (as DIRAC's
    report data arrive on the wire)."""
    return {group: ({str(k): v for k, v in values.items()} if isinstance(values, dict)
                    else values) for group, values in data.items()}

