"""The one interface both monitoring backends implement (SQL and OpenSearch).

A backend stores records of the types in :mod:`monitoring.types`, upserting by their id, and
answers aggregations: sums of value fields and record counts, filtered by key values and a
time range, grouped by key fields and optionally by time intervals. Nothing here knows about
jobs or reports: that is :mod:`monitoring.logic`.

Example::

    >>> q = Aggregation(start=datetime(2026, 12, 1, tzinfo=timezone.utc),
    ...                 end=datetime(2026, 12, 2, tzinfo=timezone.utc), group_by=("Site",),
    ...                 sums=("CPUTime",), interval=3600)
    >>> q.interval
    3600
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from core.exceptions import ServiceUnavailableError
from monitoring.types import RecordType

__all__ = ["AggRow", "Aggregation", "Backend", "BackendUnavailable"]


class BackendUnavailable(ServiceUnavailableError):  # noqa: N818 - reads well where raised
    """The backend cannot be reached or refused a write: the caller keeps the data and
    retries later (RPC callers see a ServiceUnavailableError)."""


@dataclass(frozen=True)
class Aggregation:
    """Sum ``sums`` over records with time in [start, end) matching ``filters``."""

    start: datetime
    end: datetime
    filters: Mapping[str, Sequence[str]] = field(default_factory=dict)
    group_by: tuple[str, ...] = ()
    sums: tuple[str, ...] = ()
    #: seconds; rows are then per interval (aligned on the epoch), else over the whole range
    interval: int | None = None


@dataclass(frozen=True)
class AggRow:
    keys: tuple[str, ...]
    #: start of the interval (None without an interval)
    time: datetime | None
    count: int
    sums: dict[str, float]


def epoch(when: datetime) -> int:
    return int(when.timestamp())


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


class Backend(ABC):
    """Where monitoring records live. Methods raise :class:`BackendUnavailable` when the store
    cannot be reached; writes are idempotent (same id, same record)."""

    name = ""

    @abstractmethod
    def setup(self) -> None:
        """Create what is missing (tables, or index templates)."""

    @abstractmethod
    def put(self, rtype: RecordType, docs: Sequence[dict[str, Any]]) -> int:
        """Upsert normalised records (each with its ``_id``); returns how many were written."""

    @abstractmethod
    def get(self, rtype: RecordType, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored records with these ids (missing ones are left out)."""

    @abstractmethod
    def aggregate(self, rtype: RecordType, query: Aggregation) -> list[AggRow]:
        """Counts and sums per group (and interval)."""

    @abstractmethod
    def times(self, rtype: RecordType, start: datetime, end: datetime) -> list[datetime]:
        """The distinct record times in [start, end), sorted (snapshot times)."""

    @abstractmethod
    def records(self, rtype: RecordType, start: datetime, end: datetime,
                filters: Mapping[str, Sequence[str]] | None = None,
                limit: int = 1000) -> list[dict[str, Any]]:
        """Records with time in [start, end), newest first, at most ``limit``."""

    @abstractmethod
    def key_values(self, rtype: RecordType, start: datetime | None = None
                   ) -> dict[str, list[str]]:
        """Every value of every key field (since ``start``), sorted."""

    @abstractmethod
    def delete_ids(self, rtype: RecordType, ids: Sequence[str]) -> int:
        """Remove the records with these ids."""

    @abstractmethod
    def delete_range(self, rtype: RecordType, start: datetime, end: datetime) -> int:
        """Remove the records with time in [start, end)."""

    @abstractmethod
    def drop_before(self, rtype: RecordType, cutoff: datetime) -> int:
        """Retention: remove records older than ``cutoff`` (whole indices where the backend
        has them); returns how many records or indices went."""

    def rebuild_buckets(self, rtype: RecordType, btype: RecordType, start: datetime,
                        end: datetime) -> int:
        """Replace the hourly buckets ``btype`` of [start, end) by the sums of the records
        of ``rtype`` there (per hour and combination of keys); returns the buckets written.
        Generic version: one aggregation, then a bulk write."""
        from monitoring.types import BUCKET_SECONDS, doc_id, normalise

        rows = self.aggregate(rtype, Aggregation(start=start, end=end, group_by=rtype.keys,
                                                 sums=rtype.values, interval=BUCKET_SECONDS))
        docs = []
        for row in rows:
            doc = {**dict(zip(rtype.keys, row.keys, strict=True)), **row.sums,
                   "Entries": row.count, "BucketStart": row.time}
            norm = normalise(btype, doc)
            docs.append({**norm, "_id": doc_id(btype, norm)})
        self.delete_range(btype, start, end)
        return self.put(btype, docs)

    @abstractmethod
    def ping(self) -> bool:
        """Whether the store answers."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""
