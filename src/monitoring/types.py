"""The record types of monitoring and accounting: their key fields, values and identity.

Every record is a flat dict: key fields (text, used to filter and group), value fields
(numbers, summed by reports), the type's time field (an aware UTC datetime) and a few extra
fields kept with the record. Its identity (:func:`doc_id`) is a hash of the type's id fields,
so writing the same record twice replaces it: the backends upsert by that id. This is what
makes "one accounting record per job" hold across retries, reschedulings and restarts.

Accounting types (``Job``, ``Pilot``, ``DataOperation``) also keep hourly *buckets*
(:func:`buckets_of`): the sums of their values per hour and combination of keys, as DIRAC's
accounting does; reports read buckets, never the raw records, so a 30-day report reads at most
720 hours x the combinations present. History types (``WMSHistory``, ``PilotsHistory``,
``ComponentMonitoring``) are snapshots: one record per key combination and snapshot time.

Names follow DIRAC's accounting and monitoring types where they exist (``User``,
``UserGroup``, ``FinalMajorStatus``, ``NormCPUTime``, ``ExecTime``; ``NumOfPilots``).

Example::

    >>> job = TYPES["Job"]
    >>> job.time_field, "Site" in job.keys, "CPUTime" in job.values
    ('EndTime', True, True)
    >>> doc_id(job, {"JobID": 12}) == doc_id(job, {"JobID": 12, "Site": "x"})
    True
    >>> TYPES["JobBuckets"].values[-1]
    'Entries'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, Literal

from core.exceptions import InvalidArgumentError

#: hourly buckets of accounting types
BUCKET_SECONDS = 3600


@dataclass(frozen=True)
class RecordType:
    name: str
    #: the field giving the record its place in time (indices and retention follow it)
    time_field: str
    keys: tuple[str, ...]
    values: tuple[str, ...]
    #: fields forming the record's identity (its document id / primary key)
    id_fields: tuple[str, ...]
    #: other fields stored with the record: name -> "int" | "date" | "text"
    extra: dict[str, str] = field(default_factory=dict)
    #: one index per "month" or per "day" on the search backend
    period: Literal["month", "day"] = "month"
    #: the name of its hourly bucket type (accounting types only)
    buckets: str | None = None
    #: the time of a record may change under the same id (a rescheduled job ends again)
    mutable_time: bool = False
    #: snapshot types are averaged over their snapshots, not summed, by reports
    snapshot: bool = False

    @property
    def fields(self) -> tuple[str, ...]:
        return (*self.keys, *self.values, self.time_field, *self.extra)

    @cached_property
    def field_set(self) -> frozenset[str]:
        return frozenset(self.fields)


def _bucket_type(base: RecordType) -> RecordType:
    return RecordType(
        name=f"{base.name}Buckets", time_field="BucketStart", keys=base.keys,
        values=(*base.values, "Entries"), id_fields=("BucketStart", *base.keys))


JOB = RecordType(
    name="Job", time_field="EndTime",
    keys=("User", "UserGroup", "VO", "Site", "GridCE", "JobType", "JobGroup",
          "FinalMajorStatus", "FinalMinorStatus"),
    values=("CPUTime", "NormCPUTime", "WallClockTime", "ExecTime", "MemoryPeak", "Processors",
            "InputDataSize", "OutputDataSize", "InputDataFiles", "OutputDataFiles",
            "InputSandBoxSize", "OutputSandBoxSize", "Reschedules"),
    id_fields=("JobID",),
    extra={"JobID": "int", "SubmissionTime": "date", "StartTime": "date", "Attempt": "int",
           "CPUNormalizationFactor": "float", "PilotReference": "text"},
    buckets="JobBuckets", mutable_time=True)

PILOT = RecordType(
    name="Pilot", time_field="EndTime",
    keys=("UserGroup", "VO", "Site", "GridCE", "Queue", "GridType", "GridStatus"),
    values=("Jobs",),
    id_fields=("PilotReference",),
    extra={"PilotReference": "text", "SubmissionTime": "date"},
    buckets="PilotBuckets")

DATA_OPERATION = RecordType(
    name="DataOperation", time_field="EndTime",
    keys=("OperationType", "User", "UserGroup", "Source", "Destination", "Protocol",
          "FinalStatus"),
    values=("TransferSize", "TransferTime", "TransferOK", "TransferTotal", "RegistrationOK",
            "RegistrationTotal"),
    id_fields=("OperationID",),
    extra={"OperationID": "text"},
    buckets="DataOperationBuckets")

WMS_HISTORY = RecordType(
    name="WMSHistory", time_field="timestamp",
    keys=("Status", "Site", "User", "UserGroup", "JobGroup", "JobType", "MinorStatus"),
    values=("Jobs", "Reschedules"),
    id_fields=("timestamp", "Status", "Site", "User", "UserGroup", "JobGroup", "JobType",
               "MinorStatus"),
    period="day", snapshot=True)

PILOTS_HISTORY = RecordType(
    name="PilotsHistory", time_field="timestamp",
    keys=("Status", "GridSite", "GridCE", "GridType"),
    values=("NumOfPilots",),
    id_fields=("timestamp", "Status", "GridSite", "GridCE", "GridType"),
    period="day", snapshot=True)

COMPONENT = RecordType(
    name="ComponentMonitoring", time_field="timestamp",
    keys=("Component", "ComponentType", "Host", "Instance"),
    values=("Requests", "Errors", "ResponseTime", "QueueSize", "Cycles", "CycleTime",
            "MemoryUsage", "CPUTime"),
    id_fields=("timestamp", "Component", "Host", "Instance"),
    period="day", snapshot=True)

ACCOUNTING = (JOB, PILOT, DATA_OPERATION)
TYPES: dict[str, RecordType] = {t.name: t for t in (
    *ACCOUNTING, *(_bucket_type(t) for t in ACCOUNTING), WMS_HISTORY, PILOTS_HISTORY,
    COMPONENT)}
for _t in ACCOUNTING:
    assert _t.buckets in TYPES  # noqa: S101 - a definition error, caught at import

#: the types users report on (bucket types are an implementation detail)
REPORTABLE = ("Job", "Pilot", "DataOperation", "WMSHistory", "PilotsHistory",
              "ComponentMonitoring")


def record_type(name: str) -> RecordType:
    """The type called ``name`` (DIRAC's spelling); unknown names raise InvalidArgumentError."""
    try:
        return TYPES[name]
    except KeyError:
        raise InvalidArgumentError(
            f"unknown monitoring type {name!r}; known: {', '.join(REPORTABLE)}") from None


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return str(int(value.timestamp()))
    return "" if value is None else str(value)


def doc_id(rtype: RecordType, doc: dict[str, Any]) -> str:
    """The record's identity: readable for single-field ids, else a SHA-1 of the fields."""
    parts = [_text(doc.get(name)) for name in rtype.id_fields]
    if len(parts) == 1 and len(parts[0]) <= 200:
        return parts[0]
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()  # noqa: S324 - an id


def normalise(rtype: RecordType, doc: dict[str, Any]) -> dict[str, Any]:
    """A complete record: keys as text ("" when missing), values as numbers (0), the time as
    an aware UTC datetime; unknown fields refused. (On the accounting hot path: kept lean.)"""
    if not doc.keys() <= rtype.field_set:
        unknown = set(doc) - rtype.field_set
        raise InvalidArgumentError(
            f"{rtype.name}: unknown field(s) {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    get = doc.get
    for name in rtype.keys:
        value = get(name)
        if value is None:
            out[name] = ""
        elif type(value) is str and len(value) <= 255:
            out[name] = value
        else:
            out[name] = str(value)[:255]
    try:
        for name in rtype.values:
            value = get(name)
            out[name] = float(value) if value else 0.0
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"{rtype.name}.{name}: not a number: {get(name)!r}") from None
    out[rtype.time_field] = as_utc(get(rtype.time_field),
                                   f"{rtype.name}.{rtype.time_field}")
    for name, kind in rtype.extra.items():
        value = get(name)
        if value is None:
            out[name] = None
        elif kind == "date":
            out[name] = as_utc(value, f"{rtype.name}.{name}")
        elif kind == "int":
            out[name] = int(value)
        elif kind == "float":
            out[name] = float(value)
        else:
            out[name] = str(value)[:255]
    return out


def as_utc(value: Any, what: str = "time") -> datetime:
    """An aware UTC datetime from a datetime (naive means UTC, DIRAC's wire convention), an
    epoch number or ISO text."""
    if isinstance(value, datetime):
        if value.tzinfo is timezone.utc:
            return value
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, timezone.utc)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidArgumentError(f"{what}: not a time: {value!r}") from None
        return as_utc(parsed)
    raise InvalidArgumentError(f"{what} is required")


def bucket_start(when: datetime, seconds: int = BUCKET_SECONDS) -> datetime:
    """The start of the ``seconds``-long bucket holding ``when`` (aligned on the epoch)."""
    stamp = int(when.timestamp())
    return datetime.fromtimestamp(stamp - stamp % seconds, timezone.utc)
