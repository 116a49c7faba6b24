"""The OpenSearch backend (``opensearch-py``): OpenSearch and Elasticsearch 7 clusters.

Layout, all through the documented REST API (index templates, ``_bulk``, ``_search`` with
composite aggregations, ``_delete_by_query``, index deletion):

* one index per record type and month (``<prefix>_job-2026-12``) or day for the snapshot types
  (``<prefix>_wmshistory-2026-12-03``), created on first write from an index template with an
  explicit, strict mapping (keys ``keyword``, values ``double``, times ``date``);
* documents are indexed under their record id, so a repeated write replaces the document; a
  record whose time moved to another month (a rescheduled job ending again) is deleted from its
  old index in the same bulk request;
* aggregations are composite aggregations (a ``date_histogram`` source for intervals, a
  ``terms`` source per grouping key) with ``sum`` sub-aggregations, read page by page;
* retention deletes whole indices whose period is over.

Requests time out after ``Monitoring.OpenSearch.Timeout`` seconds; connection failures and
5xx answers raise :class:`~monitoring.db.base.BackendUnavailable`.

Example::

    backend = OpenSearchBackend(["https://os.example.org:9200"], prefix="pilotwms")
    backend.setup()     # index templates
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import (
    ConnectionError as OSConnectionError,
)
from opensearchpy.exceptions import (
    NotFoundError,
    OpenSearchException,
    TransportError,
)

from monitoring.db.base import Aggregation, AggRow, Backend, BackendUnavailable, from_epoch
from monitoring.types import RecordType

log = logging.getLogger("pilotwms.monitoring.opensearch")

_EXTRA = {"int": "long", "date": "date", "float": "double", "text": "keyword"}
PAGE = 1000


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any) -> datetime:
    if isinstance(value, int | float):
        return from_epoch(value / 1000 if value > 1e11 else value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(timezone.utc)


class OpenSearchBackend(Backend):
    name = "OpenSearch"

    def __init__(self, hosts: Sequence[str], *, prefix: str = "pilotwms",
                 timeout: float = 10.0, ca_file: str | None = None,
                 verify_certs: bool = True, shards: int = 1, replicas: int = 0,
                 client: OpenSearch | None = None) -> None:
        if not hosts and client is None:
            raise ValueError("the OpenSearch backend needs Monitoring.OpenSearch.Hosts")
        self.prefix = prefix
        self.shards, self.replicas = shards, replicas
        options: dict[str, Any] = {"timeout": timeout, "max_retries": 0,
                                   "retry_on_timeout": False}
        if any(h.startswith("https") for h in hosts):
            options.update(use_ssl=True, verify_certs=verify_certs)
            if ca_file:
                options["ca_certs"] = ca_file
        self.client = client or OpenSearch(hosts=list(hosts), **options)

    # -- names ---------------------------------------------------------------------------

    def base(self, rtype: RecordType) -> str:
        return f"{self.prefix}_{rtype.name.lower()}"

    def pattern(self, rtype: RecordType) -> str:
        return f"{self.base(rtype)}-*"

    def index_for(self, rtype: RecordType, when: datetime) -> str:
        fmt = "%Y-%m" if rtype.period == "month" else "%Y-%m-%d"
        return f"{self.base(rtype)}-{when.astimezone(timezone.utc).strftime(fmt)}"

    def _period_end(self, rtype: RecordType, index: str) -> datetime | None:
        suffix = index.removeprefix(self.base(rtype) + "-")
        try:
            if rtype.period == "month":
                start = datetime.strptime(suffix, "%Y-%m").replace(tzinfo=timezone.utc)
                return (start + timedelta(days=32)).replace(day=1)
            start = datetime.strptime(suffix, "%Y-%m-%d").replace(tzinfo=timezone.utc)
            return start + timedelta(days=1)
        except ValueError:
            return None

    # -- plumbing ------------------------------------------------------------------------

    def _call(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except OSConnectionError as exc:
            raise BackendUnavailable(f"OpenSearch unreachable: {exc}") from exc
        except TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else 0
            if status >= 500 or status in (0, 429):
                raise BackendUnavailable(f"OpenSearch error {exc.status_code}: {exc}") from exc
            raise

    def mapping(self, rtype: RecordType) -> dict[str, Any]:
        props: dict[str, Any] = {k: {"type": "keyword"} for k in rtype.keys}
        props.update({v: {"type": "double"} for v in rtype.values})
        props[rtype.time_field] = {"type": "date"}
        props.update({name: {"type": _EXTRA[kind]} for name, kind in rtype.extra.items()})
        return {"dynamic": "strict", "properties": props}

    def setup(self) -> None:
        from monitoring.types import TYPES

        for rtype in TYPES.values():
            body = {"index_patterns": [self.pattern(rtype)], "priority": 100, "template": {
                "settings": {"number_of_shards": self.shards,
                             "number_of_replicas": self.replicas},
                "mappings": self.mapping(rtype)}}
            self._call(self.client.indices.put_index_template, name=self.base(rtype),
                       body=body)

    def _source(self, rtype: RecordType, doc: Mapping[str, Any]) -> dict[str, Any]:
        src: dict[str, Any] = {}
        for name in (*rtype.keys, *rtype.values):
            src[name] = doc[name]
        src[rtype.time_field] = _iso(doc[rtype.time_field])
        for name, kind in rtype.extra.items():
            value = doc.get(name)
            src[name] = _iso(value) if kind == "date" and value is not None else value
        return src

    def _doc(self, rtype: RecordType, hit: Mapping[str, Any]) -> dict[str, Any]:
        src = hit["_source"]
        doc: dict[str, Any] = {"_id": hit["_id"], "_index": hit["_index"]}
        for name in rtype.keys:
            doc[name] = src.get(name, "")
        for name in rtype.values:
            doc[name] = float(src.get(name) or 0)
        doc[rtype.time_field] = _parse_time(src[rtype.time_field])
        for name, kind in rtype.extra.items():
            value = src.get(name)
            doc[name] = _parse_time(value) if kind == "date" and value is not None else value
        return doc

    # -- writes --------------------------------------------------------------------------

    def put(self, rtype: RecordType, docs: Sequence[dict[str, Any]]) -> int:
        if not docs:
            return 0
        unique = {doc["_id"]: doc for doc in docs}
        actions: list[dict[str, Any]] = []
        if rtype.mutable_time:
            stored = self._locations(rtype, list(unique))
            for doc_id, index in stored.items():
                if index != self.index_for(rtype, unique[doc_id][rtype.time_field]):
                    actions.append({"_op_type": "delete", "_index": index, "_id": doc_id})
        for doc_id, doc in unique.items():
            actions.append({"_op_type": "index", "_id": doc_id,
                            "_index": self.index_for(rtype, doc[rtype.time_field]),
                            "_source": self._source(rtype, doc)})
        for start in range(0, len(actions), 5000):
            _, errors = self._call(helpers.bulk, self.client, actions[start:start + 5000],
                                   raise_on_error=False, refresh=True)
            bad = [e for e in errors if "delete" not in e]
            if bad:
                raise BackendUnavailable(f"OpenSearch refused {len(bad)} record(s): {bad[0]}")
        return len(docs)

    def _locations(self, rtype: RecordType, ids: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(ids), PAGE):
            chunk = ids[start:start + PAGE]
            reply = self._search(rtype, {"size": len(chunk), "_source": False,
                                         "query": {"ids": {"values": chunk}}})
            for hit in reply["hits"]["hits"]:
                found[hit["_id"]] = hit["_index"]
        return found

    def delete_ids(self, rtype: RecordType, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        where = self._locations(rtype, list(ids))
        actions = [{"_op_type": "delete", "_index": index, "_id": doc_id}
                   for doc_id, index in where.items()]
        if actions:
            self._call(helpers.bulk, self.client, actions, raise_on_error=False,
                       refresh=True)
        return len(actions)

    def delete_range(self, rtype: RecordType, start: datetime, end: datetime) -> int:
        body = {"query": {"range": {rtype.time_field: {"gte": _iso(start), "lt": _iso(end)}}}}
        try:
            reply = self._call(self.client.delete_by_query, index=self.pattern(rtype),
                               body=body, refresh=True, conflicts="proceed",
                               params={"allow_no_indices": "true"})
        except NotFoundError:
            return 0
        return int(reply.get("deleted", 0))

    def drop_before(self, rtype: RecordType, cutoff: datetime) -> int:
        try:
            indices = self._call(self.client.indices.get, index=self.pattern(rtype))
        except NotFoundError:
            return 0
        dropped = 0
        for index in sorted(indices):
            end = self._period_end(rtype, index)
            if end is not None and end <= cutoff:
                self._call(self.client.indices.delete, index=index)
                log.info("retention: dropped index %s", index)
                dropped += 1
        return dropped

    # -- reads ---------------------------------------------------------------------------

    def _search(self, rtype: RecordType, body: dict[str, Any]) -> Any:
        try:
            return self._call(self.client.search, index=self.pattern(rtype), body=body,
                              params={"allow_no_indices": "true",
                                      "ignore_unavailable": "true"})
        except NotFoundError:
            return {"hits": {"hits": [], "total": {"value": 0}}, "aggregations": {}}

    def _filter(self, rtype: RecordType, start: datetime | None, end: datetime | None,
                filters: Mapping[str, Sequence[str]] | None) -> dict[str, Any]:
        clauses: list[dict[str, Any]] = []
        if start is not None or end is not None:
            span: dict[str, str] = {}
            if start is not None:
                span["gte"] = _iso(start)
            if end is not None:
                span["lt"] = _iso(end)
            clauses.append({"range": {rtype.time_field: span}})
        for name, values in (filters or {}).items():
            if values:
                clauses.append({"terms": {name: list(values)}})
        return {"bool": {"filter": clauses}}

    def get(self, rtype: RecordType, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        wanted = list(dict.fromkeys(ids))
        for start in range(0, len(wanted), PAGE):
            chunk = wanted[start:start + PAGE]
            reply = self._search(rtype, {"size": len(chunk),
                                         "query": {"ids": {"values": chunk}}})
            for hit in reply["hits"]["hits"]:
                found[hit["_id"]] = self._doc(rtype, hit)
        return found

    def _composite(self, rtype: RecordType, query: dict[str, Any],
                   sources: list[dict[str, Any]], aggs: dict[str, Any]
                   ) -> Iterator[dict[str, Any]]:
        after: dict[str, Any] | None = None
        while True:
            composite: dict[str, Any] = {"size": PAGE, "sources": sources}
            if after is not None:
                composite["after"] = after
            body = {"size": 0, "query": query,
                    "aggs": {"groups": {"composite": composite, "aggs": aggs}}}
            reply = self._search(rtype, body)
            result = (reply.get("aggregations") or {}).get("groups") or {}
            buckets = result.get("buckets") or []
            yield from buckets
            after = result.get("after_key")
            if not buckets or after is None or len(buckets) < PAGE:
                return

    def aggregate(self, rtype: RecordType, query: Aggregation) -> list[AggRow]:
        filt = self._filter(rtype, query.start, query.end, query.filters)
        aggs = {f"s_{i}": {"sum": {"field": name}} for i, name in enumerate(query.sums)}
        sources: list[dict[str, Any]] = [{f"k_{i}": {"terms": {"field": name}}}
                                         for i, name in enumerate(query.group_by)]
        if query.interval:
            sources.append({"slot": {"date_histogram": {
                "field": rtype.time_field, "fixed_interval": f"{query.interval}s"}}})
        if not sources:
            reply = self._search(rtype, {"size": 0, "track_total_hits": True,
                                         "query": filt, "aggs": aggs})
            count = int(reply["hits"]["total"]["value"])
            if not count:
                return []
            found = reply.get("aggregations") or {}
            return [AggRow((), None, count, {name: float(found[f"s_{i}"]["value"] or 0)
                                             for i, name in enumerate(query.sums)})]
        rows = []
        for bucket in self._composite(rtype, filt, sources, aggs):
            key = bucket["key"]
            rows.append(AggRow(
                keys=tuple(str(key[f"k_{i}"]) for i in range(len(query.group_by))),
                time=_parse_time(key["slot"]) if query.interval else None,
                count=int(bucket["doc_count"]),
                sums={name: float(bucket[f"s_{i}"]["value"] or 0)
                      for i, name in enumerate(query.sums)}))
        return rows

    def times(self, rtype: RecordType, start: datetime, end: datetime) -> list[datetime]:
        filt = self._filter(rtype, start, end, None)
        sources = [{"t": {"terms": {"field": rtype.time_field}}}]
        return sorted(_parse_time(b["key"]["t"])
                      for b in self._composite(rtype, filt, sources, {}))

    def records(self, rtype: RecordType, start: datetime, end: datetime,
                filters: Mapping[str, Sequence[str]] | None = None,
                limit: int = 1000) -> list[dict[str, Any]]:
        body = {"size": min(limit, 10_000), "query": self._filter(rtype, start, end, filters),
                "sort": [{rtype.time_field: {"order": "desc"}}]}
        reply = self._search(rtype, body)
        return [self._doc(rtype, hit) for hit in reply["hits"]["hits"]]

    def key_values(self, rtype: RecordType, start: datetime | None = None
                   ) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        filt = self._filter(rtype, start, None, None)
        for name in rtype.keys:
            values = [str(b["key"]["v"]) for b in self._composite(
                rtype, filt, [{"v": {"terms": {"field": name}}}], {})]
            out[name] = sorted(values)
        return out

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except OpenSearchException:
            return False

    def close(self) -> None:
        try:
            self.client.close()
        except OpenSearchException:  # pragma: no cover - closing is best effort
            pass

