"""The typed Python client of the monitoring services.

Example::

    from monitoring.client import MonitoringClient
    with MonitoringClient() as mon:                       # $PILOTWMS_CLIENT_CONFIG
        report = mon.report("Job", "NumberOfJobs", start, end, grouping="Site")
        png = mon.plot("Job", "TotalCPUUsed", start, end, grouping="User")["plot"]
        mon.latest_snapshot()["counts"]                   # {"Running": 12, "Waiting": 40}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from core.client_config import make_client
from core.rpc.client import RPCClient

MONITORING = "Monitoring/Monitoring"
ACCOUNTING = "Accounting/ReportGenerator"
#: types whose reports live in the accounting service (DIRAC's split)
ACCOUNTING_TYPES = ("Job", "Pilot", "DataOperation")


def report_request(type_name: str, report: str, start: datetime, end: datetime, *,
                   grouping: str = "", filters: Mapping[str, Sequence[str]] | None = None,
                   granularity: int | None = None, fmt: str | None = None
                   ) -> dict[str, Any]:
    """DIRAC's report request dict."""
    extra: dict[str, Any] = {}
    if granularity:
        extra["granularity"] = granularity
    if fmt:
        extra["format"] = fmt
    return {"typeName": type_name, "reportName": report, "startTime": start,
            "endTime": end, "condDict": {k: list(v) for k, v in (filters or {}).items()},
            "grouping": grouping, "extraArgs": extra}


class MonitoringClient:
    def __init__(self, monitoring: RPCClient | None = None,
                 accounting: RPCClient | None = None) -> None:
        self._monitoring = monitoring
        self._accounting = accounting

    def _rpc(self, type_name: str) -> RPCClient:
        if type_name in ACCOUNTING_TYPES:
            if self._accounting is None:
                self._accounting = make_client(ACCOUNTING)
            return self._accounting
        return self.monitoring

    @property
    def monitoring(self) -> RPCClient:
        if self._monitoring is None:
            self._monitoring = make_client(MONITORING)
        return self._monitoring

    def report(self, type_name: str, report: str, start: datetime, end: datetime,
               **options: Any) -> dict[str, Any]:
        request = report_request(type_name, report, start, end, **options)
        return dict(self._rpc(type_name).call("getReport", request))

    def plot(self, type_name: str, report: str, start: datetime, end: datetime,
             fmt: str = "png", **options: Any) -> dict[str, Any]:
        request = report_request(type_name, report, start, end, fmt=fmt, **options)
        return dict(self._rpc(type_name).call("generatePlot", request))

    def reports(self, type_name: str) -> list[str]:
        return list(self._rpc(type_name).call("listReports", type_name))

    def key_values(self, type_name: str) -> dict[str, list[str]]:
        return dict(self._rpc(type_name).call("listUniqueKeyValues", type_name))

    def latest_snapshot(self, type_name: str = "WMSHistory",
                        group_by: Sequence[str] | None = None) -> dict[str, Any]:
        return dict(self.monitoring.call("getLatestSnapshot", type_name,
                                         list(group_by) if group_by else None))

    def put(self, records: Sequence[Mapping[str, Any]], type_name: str) -> int:
        return int(self.monitoring.call("put", [dict(r) for r in records], type_name))

    def close(self) -> None:
        for client in (self._monitoring, self._accounting):
            if client is not None:
                client.close()

    def __enter__(self) -> MonitoringClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
