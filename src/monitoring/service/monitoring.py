"""``Monitoring/Monitoring``: the monitoring records and reports (DIRAC's MonitoringHandler
names: ``listUniqueKeyValues``, ``listReports``, ``getReport``, ``generatePlot``,
``getLimitedData``, ``getDataForAGivenPeriod``, ``put``), plus ``getLatestSnapshot`` (live
counts from the newest WMS history snapshot, for ``dstat --summary`` and the portal) and
``getStatus`` (backend, outbox backlog).

With ``Monitoring.RunInServer`` (the default), every process of this service also ships the
accounting outbox and takes the history snapshots in the background, so the embedded instance
needs no agent; larger sites run ``AccountingAgent`` and ``WMSHistoryAgent`` instead.

Example::

    pilotwms call Monitoring/Monitoring getLatestSnapshot WMSHistory
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from core.db import utcnow
from core.exceptions import InvalidArgumentError
from core.rpc.context import ServerContext
from core.rpc.service import Call, rpc_method
from monitoring.db import SYSTEM
from monitoring.logic import accounting, history
from monitoring.logic.cycles import Cycles
from monitoring.service.common import READERS, WRITERS, ReportService, scoped_filters
from monitoring.types import ACCOUNTING, TYPES, as_utc, doc_id, normalise, record_type

log = logging.getLogger("pilotwms.monitoring")
WMS_SYSTEM = "WorkloadManagement"
MAX_RECORDS = 10_000


class MonitoringService(ReportService):
    system = "Monitoring"
    name = "Monitoring"

    def __init__(self, ctx: ServerContext) -> None:
        super().__init__(ctx)
        self._cycles: Cycles | None = None
        self._cycle_lock = threading.Lock()

    def cycles(self) -> Cycles:
        if self._cycles is None:
            # a backend of its own, made (and remade after an outage) inside the cycles'
            # guard, so an unreachable cluster is a logged retry, never an error here
            self._cycles = Cycles(self.ctx.config, self.ctx.engine(WMS_SYSTEM),
                                  self.ctx.engine(SYSTEM),
                                  rms=self.ctx.engine("RequestManagement"),
                                  xfer=self.ctx.engine("Transfer"))
        return self._cycles

    def background_tasks(self) -> list[tuple[float, Callable[[], None]]]:
        section = self.ctx.config.monitoring
        if not section.run_in_server:
            return []
        return [(15.0, self._ship), (max(5.0, section.history_period / 5), self._history)]

    def _ship(self) -> None:
        if not self._cycle_lock.acquire(blocking=False):
            return
        try:
            for _ in range(10):  # at most ten batches per tick
                result = self.cycles().ship()
                if result is None or not result.more:
                    break
        finally:
            self._cycle_lock.release()

    def _history(self) -> None:
        with self._cycle_lock:
            self.cycles().history()

    # -- records -------------------------------------------------------------------------

    def _records(self, call: Call, type_name: str, cond: dict[str, Any], start: datetime,
                 end: datetime, size: int) -> list[dict[str, Any]]:
        rtype = record_type(type_name)
        filters = {k: v if isinstance(v, list) else [v] for k, v in cond.items()}
        for name in filters:
            if name not in rtype.keys:
                raise InvalidArgumentError(f"cannot select {rtype.name} by {name!r}")
        filters = scoped_filters(call.identity, rtype.name, filters)
        size = max(1, min(int(size), MAX_RECORDS))
        docs = self.backend().records(rtype, start, end, filters, limit=size)
        return [{k: v for k, v in doc.items() if k not in ("_index",)} for doc in docs]

    @rpc_method("getLimitedData", rights=READERS)
    def get_limited_data(self, call: Call, type_name: str, cond: dict[str, Any],
                         size: int) -> list[dict[str, Any]]:
        """The newest ``size`` records (at most 10,000) matching ``cond``."""
        return self._records(call, type_name, cond, datetime.fromtimestamp(0, timezone.utc),
                             utcnow() + timedelta(days=1), size)

    @rpc_method("getDataForAGivenPeriod", rights=READERS)
    def get_data_for_a_given_period(self, call: Call, type_name: str, cond: dict[str, Any],
                                    initial_date: str | datetime = "",
                                    end_date: str | datetime = "") -> list[dict[str, Any]]:
        """Records between two dates (DIRAC's ``DD/MM/YYYY hh:mm`` or ISO)."""
        return self._records(call, type_name, cond, _date(initial_date, utcnow() -
                                                          timedelta(days=1)),
                             _date(end_date, utcnow()), MAX_RECORDS)

    @rpc_method("put", rights=WRITERS)
    def put(self, call: Call, records: list[Any], type_name: str) -> int:
        """Store records of a type (components, data operations); the buckets of accounting
        types follow at the next shipping cycle."""
        rtype = record_type(type_name)
        if rtype.name.endswith("Buckets"):
            raise InvalidArgumentError("buckets are computed, not written")
        if len(records) > MAX_RECORDS:
            raise InvalidArgumentError(f"at most {MAX_RECORDS} records per call")
        if not all(isinstance(r, dict) for r in records):
            raise InvalidArgumentError("records must be dicts")
        if rtype in ACCOUNTING:  # buckets: rebuilt by the next shipping cycle
            return accounting.store(self.backend(), self.ctx.engine(SYSTEM), rtype, records,
                                    buckets="defer")
        docs = []
        for record in records:
            norm = normalise(rtype, record)
            docs.append({**norm, "_id": doc_id(rtype, norm)})
        return self.backend().put(rtype, docs)

    # -- live views ----------------------------------------------------------------------

    @rpc_method("getLatestSnapshot", rights=READERS)
    def get_latest_snapshot(self, call: Call, type_name: str = "WMSHistory",
                            group_by: list[str] | None = None) -> dict[str, Any]:
        """Counts from the newest history snapshot (no scan of the jobs table), summed over
        ``group_by`` (default: Status): ``{"time": ..., "counts": {"Running": 3, ...},
        "rows": [["Running", 3], ...]}`` (counts' keys join several fields with "/")."""
        rtype = record_type(type_name)
        if rtype.name not in ("WMSHistory", "PilotsHistory"):
            raise InvalidArgumentError("snapshots exist for WMSHistory and PilotsHistory")
        fields = group_by or ["Status"]
        for name in fields:
            if name not in rtype.keys:
                raise InvalidArgumentError(f"cannot group {rtype.name} by {name!r}")
        filters = scoped_filters(call.identity, rtype.name, {})
        within = timedelta(seconds=3 * self.ctx.config.monitoring.history_period)
        when, docs = history.latest_snapshot(self.backend(), rtype, within=within)
        value = rtype.values[0]
        counts: dict[tuple[str, ...], float] = {}
        for doc in docs:
            if any(doc.get(k) not in v for k, v in filters.items()):
                continue
            key = tuple(str(doc[f]) for f in fields)
            counts[key] = counts.get(key, 0) + float(doc[value])
        ordered = sorted(counts.items())
        return {"time": when, "fields": fields,
                "counts": {"/".join(k): int(v) for k, v in ordered},
                "rows": [[*k, int(v)] for k, v in ordered]}

    @rpc_method("getStatus", rights=["Monitoring", "ServiceAdministrator", "Operator"])
    def get_status(self, call: Call) -> dict[str, Any]:
        """Backend, whether it answers, and the accounting outbox backlog."""
        waiting, oldest = accounting.backlog(self.ctx.engine(WMS_SYSTEM))
        return {"backend": self.backend().name, "reachable": self.backend().ping(),
                "outboxRows": waiting, "oldestRow": oldest,
                "types": sorted(t for t in TYPES if not t.endswith("Buckets"))}


def _date(value: str | datetime, default: datetime) -> datetime:
    if isinstance(value, datetime):
        return as_utc(value)
    if not value:
        return default
    for fmt in ("%d/%m/%Y %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    return as_utc(value)

