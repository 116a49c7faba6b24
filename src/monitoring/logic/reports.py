"""Reports: the numbers behind ``dacct``, ``getReport`` and the plots.

A report is named as in DIRAC's plotters (``NumberOfJobs``, ``CPUEfficiency``,
``TotalCPUUsed``, ...) and has a *kind* that says how it is drawn: ``bars`` (stacked bars over
time), ``cumulative`` (lines rising over time), ``quality`` (a ratio in percent per interval,
e.g. CPU/wall efficiency), ``pie`` (totals per group). Accounting reports read the hourly
buckets (never the raw records); history reports average the snapshots in each interval, as
DIRAC does for WMSHistory.

The result has DIRAC's shape (``{"data": {group: {epoch: value}}, "granularity": seconds,
"unit": ...}``; pies have ``{"data": {group: value}}``) plus ``kind``, ``title`` and
``totals`` (one number per group), so the RPC service, the command and the portal share it.

Example::

    >>> sorted(REPORTS["Job"])[:3]
    ['AccumulatedWallTime', 'CPUEfficiency', 'CPUUsage']
    >>> default_granularity(timedelta(days=30))
    86400
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.exceptions import InvalidArgumentError
from monitoring.db.base import Aggregation, Backend, epoch
from monitoring.logic.history import slot_of
from monitoring.types import BUCKET_SECONDS, TYPES, RecordType, as_utc, record_type


@dataclass(frozen=True)
class ReportSpec:
    name: str
    title: str
    kind: str  # bars | cumulative | quality | pie
    #: summed field ("Entries": number of records); quality: numerator
    value: str
    unit: str
    #: quality reports: denominator
    per: str = ""
    #: multiply the value (quality: 100 for percent)
    scale: float = 1.0


def _specs(*specs: ReportSpec) -> dict[str, ReportSpec]:
    return {s.name: s for s in specs}


REPORTS: dict[str, dict[str, ReportSpec]] = {
    "Job": _specs(
        ReportSpec("NumberOfJobs", "Job execution rate", "bars", "Entries", "jobs"),
        ReportSpec("CumulativeNumberOfJobs", "Cumulative executed jobs", "cumulative",
                   "Entries", "jobs"),
        ReportSpec("TotalNumberOfJobs", "Pie plot of executed jobs", "pie", "Entries", "jobs"),
        ReportSpec("CPUUsage", "CPU time", "bars", "CPUTime", "s"),
        ReportSpec("CPUUsed", "Cumulative CPU time", "cumulative", "CPUTime", "s"),
        ReportSpec("TotalCPUUsed", "Pie plot of CPU used", "pie", "CPUTime", "s"),
        ReportSpec("NormCPUUsage", "Normalized CPU power", "bars", "NormCPUTime", "HS23 s"),
        ReportSpec("NormCPUUsed", "Cumulative Normalized CPU", "cumulative", "NormCPUTime",
                   "HS23 s"),
        ReportSpec("WallTime", "Wall time", "bars", "ExecTime", "s"),
        ReportSpec("AccumulatedWallTime", "Cumulative wall time", "cumulative", "ExecTime",
                   "s"),
        ReportSpec("TotalWallTime", "Pie plot of wall time usage", "pie", "ExecTime", "s"),
        ReportSpec("CPUEfficiency", "CPU efficiency", "quality", "CPUTime", "%",
                   per="ExecTime", scale=100.0),
        ReportSpec("InputDataSize", "Input data", "bars", "InputDataSize", "bytes"),
        ReportSpec("OutputDataSize", "Output data", "bars", "OutputDataSize", "bytes"),
    ),
    "Pilot": _specs(
        ReportSpec("NumberOfPilots", "Pilots", "bars", "Entries", "pilots"),
        ReportSpec("TotalNumberOfPilots", "Pie plot of pilots", "pie", "Entries", "pilots"),
        ReportSpec("CumulativeNumberOfPilots", "Cumulative pilots", "cumulative", "Entries",
                   "pilots"),
        ReportSpec("JobsPerPilot", "Jobs per pilot", "quality", "Jobs", "jobs",
                   per="Entries"),
    ),
    "DataOperation": _specs(
        ReportSpec("DataTransferred", "Data transferred", "bars", "TransferSize", "bytes"),
        ReportSpec("TotalDataTransferred", "Pie plot of data transferred", "pie",
                   "TransferSize", "bytes"),
        ReportSpec("CumulativeDataTransferred", "Cumulative data transferred", "cumulative",
                   "TransferSize", "bytes"),
        ReportSpec("TransferQuality", "Transfer quality", "quality", "TransferOK", "%",
                   per="TransferTotal", scale=100.0),
    ),
    "WMSHistory": _specs(
        ReportSpec("NumberOfJobs", "Jobs", "bars", "Jobs", "jobs"),
        ReportSpec("NumberOfReschedules", "Reschedules", "bars", "Reschedules",
                   "reschedules"),
        ReportSpec("AverageNumberOfJobs", "Average number of jobs", "pie", "Jobs", "jobs"),
    ),
    "PilotsHistory": _specs(
        ReportSpec("NumberOfPilots", "Pilots", "bars", "NumOfPilots", "pilots"),
    ),
    "ComponentMonitoring": _specs(
        ReportSpec("Requests", "Requests", "bars", "Requests", "requests"),
        ReportSpec("Errors", "Errors", "bars", "Errors", "errors"),
        ReportSpec("ResponseTime", "Average response time", "quality", "ResponseTime", "s",
                   per="Requests"),
    ),
}

#: what the command calls a report (``dacct jobs ...``) -> (type, default report)
ALIASES = {"jobs": ("Job", "NumberOfJobs"), "pilots": ("Pilot", "NumberOfPilots"),
           "transfers": ("DataOperation", "DataTransferred"),
           "history": ("WMSHistory", "NumberOfJobs"),
           "pilotshistory": ("PilotsHistory", "NumberOfPilots"),
           "components": ("ComponentMonitoring", "Requests")}

GRANULARITIES = {"hour": 3600, "day": 86400, "week": 604800}


def default_granularity(span: timedelta) -> int:
    """One hour up to two days, one day up to two months, then one week."""
    if span <= timedelta(days=2):
        return 3600
    if span <= timedelta(days=62):
        return 86400
    return 604800


@dataclass(frozen=True)
class ReportRequest:
    """What to report: DIRAC's ``typeName``, ``reportName``, ``startTime``, ``endTime``,
    ``condDict`` and ``grouping``."""

    type: str
    report: str
    start: datetime
    end: datetime
    grouping: str
    filters: Mapping[str, Sequence[str]] = field(default_factory=dict)
    granularity: int | None = None

    @classmethod
    def from_wire(cls, request: Mapping[str, Any]) -> ReportRequest:
        """From DIRAC's report request dict (``extraArgs.granularity`` may give seconds)."""
        try:
            type_name = str(request["typeName"])
            report = str(request["reportName"])
            grouping = request.get("grouping") or ""
            cond = request.get("condDict") or {}
        except KeyError as exc:
            raise InvalidArgumentError(f"report request needs {exc.args[0]}") from None
        if not isinstance(cond, Mapping):
            raise InvalidArgumentError("condDict must map fields to lists of values")
        filters = {str(k): [str(v) for v in (vals if isinstance(vals, list | tuple)
                                             else [vals])]
                   for k, vals in cond.items() if k != "grouping"}
        if isinstance(grouping, list | tuple):
            grouping = grouping[0] if grouping else ""
        extra = request.get("extraArgs") or {}
        end = as_utc(request.get("endTime") or datetime.now().astimezone(), "endTime")
        if "lastSeconds" in extra:
            start = end - timedelta(seconds=int(extra["lastSeconds"]))
        else:
            start = as_utc(request.get("startTime"), "startTime")
        gran = extra.get("granularity")
        return cls(type_name, report, start, end, str(grouping), filters,
                   int(gran) if gran else None)


def _validate(request: ReportRequest) -> tuple[RecordType, ReportSpec]:
    rtype = record_type(request.type)
    specs = REPORTS.get(rtype.name)
    if not specs:
        raise InvalidArgumentError(f"no reports for {rtype.name}")
    spec = specs.get(request.report)
    if spec is None:
        raise InvalidArgumentError(f"unknown report {request.report!r} for {rtype.name}; "
                                   f"known: {', '.join(sorted(specs))}")
    if request.grouping and request.grouping not in rtype.keys:
        raise InvalidArgumentError(f"cannot group {rtype.name} by {request.grouping!r}; "
                                   f"use one of {', '.join(rtype.keys)}")
    for name in request.filters:
        if name not in rtype.keys:
            raise InvalidArgumentError(f"cannot select {rtype.name} by {name!r}; "
                                       f"use one of {', '.join(rtype.keys)}")
    if request.end <= request.start:
        raise InvalidArgumentError("the report's end must be after its start")
    if request.end - request.start > timedelta(days=3 * 366):
        raise InvalidArgumentError("a report covers at most three years")
    return rtype, spec


def build_report(backend: Backend, request: ReportRequest) -> dict[str, Any]:
    """The report's data (see the module docstring for its shape)."""
    rtype, spec = _validate(request)
    source = TYPES[rtype.buckets] if rtype.buckets else rtype
    timed = spec.kind != "pie"
    gran = request.granularity or default_granularity(request.end - request.start)
    if rtype.buckets and gran % BUCKET_SECONDS:
        raise InvalidArgumentError("accounting reports have a granularity of whole hours")
    if gran <= 0 or (request.end - request.start).total_seconds() / gran > 5000:
        raise InvalidArgumentError(f"granularity {gran} s gives too many intervals")
    # interval starts cover the whole requested range
    start = slot_of(request.start, gran) if timed else request.start
    # "Entries" counts records: a summed field of bucket types, the row count otherwise
    sums = tuple(f for f in (spec.value, spec.per) if f and (f != "Entries" or rtype.buckets))
    group_by = (request.grouping,) if request.grouping else ()
    rows = backend.aggregate(source, Aggregation(
        start=start, end=request.end, filters=request.filters, group_by=group_by, sums=sums,
        interval=gran if timed else None))

    def amount(row: Any, name: str) -> float:
        if name == "Entries" and not rtype.buckets:
            return float(row.count)
        return float(row.sums.get(name, 0.0))

    snapshots: Counter[int] = Counter()
    if rtype.snapshot:
        for when in backend.times(source, start, request.end):
            snapshots[epoch(slot_of(when, gran)) if timed else 0] += 1

    data: dict[str, Any] = {}
    numer: dict[str, dict[int, float]] = {}
    denom: dict[str, dict[int, float]] = {}
    for row in rows:
        group = row.keys[0] if row.keys else "Total"
        slot = epoch(row.time) if row.time is not None else 0
        value = amount(row, spec.value)
        if rtype.snapshot and spec.kind != "quality":
            value /= max(1, snapshots.get(slot, 1))
        numer.setdefault(group, {}).setdefault(slot, 0.0)
        numer[group][slot] += value
        if spec.per:
            denom.setdefault(group, {}).setdefault(slot, 0.0)
            denom[group][slot] += amount(row, spec.per)
    slots = []
    if timed:
        slot = epoch(start)
        while slot < epoch(request.end):
            slots.append(slot)
            slot += gran
    totals: dict[str, float] = {}
    for group in sorted(numer):
        series = numer[group]
        if spec.kind == "pie":
            data[group] = series.get(0, 0.0) * spec.scale
            totals[group] = data[group]
        elif spec.kind == "quality":
            ratio = {s: spec.scale * series[s] / denom[group][s]
                     for s in sorted(series) if denom[group].get(s)}
            data[group] = ratio
            total_den = sum(denom[group].values())
            totals[group] = spec.scale * sum(series.values()) / total_den if total_den else 0.0
        elif spec.kind == "cumulative":
            running, filled = 0.0, {}
            for s in slots:
                running += series.get(s, 0.0)
                filled[s] = running
            data[group] = filled
            totals[group] = running
        else:
            data[group] = {s: series.get(s, 0.0) for s in slots}
            totals[group] = sum(series.values())
    return {"type": rtype.name, "report": spec.name, "title": spec.title, "kind": spec.kind,
            "unit": spec.unit, "grouping": request.grouping or "Total",
            "granularity": gran if timed else None, "start": request.start,
            "end": request.end, "data": data, "totals": totals}


def list_reports(type_name: str) -> dict[str, str]:
    """Report name -> title for a type (DIRAC's ``listReports`` gives the names)."""
    rtype = record_type(type_name)
    return {name: spec.title for name, spec in sorted(REPORTS.get(rtype.name, {}).items())}


def report_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The report as a table: one row per group and interval (or per group for pies)."""
    grouping = str(report["grouping"])
    value = f"{report['report']} ({report['unit']})"
    rows: list[list[Any]] = []
    if report["kind"] == "pie":
        for group, number in sorted(report["data"].items()):
            rows.append([group, round(float(number), 3)])
        return [grouping, value], rows
    for group, series in sorted(report["data"].items()):
        for slot, number in sorted(series.items()):
            rows.append([group, as_utc(int(slot)), round(float(number), 3)])
    return [grouping, "Time", value], rows


def report_grid(report: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The report for people: time series as one row per interval and one column per group
    (plus Total); pies as group, value and share."""
    if report["kind"] == "pie":
        total = sum(float(v) for v in report["data"].values()) or 1.0
        rows = [[group, _number(value), f"{100 * float(value) / total:.1f}%"]
                for group, value in sorted(report["data"].items(),
                                           key=lambda kv: (-float(kv[1]), kv[0]))]
        return [str(report["grouping"]), f"{report['report']} ({report['unit']})", "Share"], rows
    groups = sorted(report["data"])
    slots = sorted({int(s) for series in report["data"].values() for s in series})
    rows = []
    for slot in slots:
        values = [float(report["data"][g].get(slot, 0.0)) for g in groups]
        row: list[Any] = [as_utc(slot), *(_number(v) for v in values)]
        if report["kind"] != "quality":
            row.append(_number(sum(values)))
        rows.append(row)
    headers = ["Time", *groups] + ([] if report["kind"] == "quality" else ["Total"])
    return headers, rows


def _number(value: Any) -> int | float:
    """Whole numbers as integers (tables align them right), others to three decimals."""
    number = round(float(value), 3)
    return int(number) if number.is_integer() else number
