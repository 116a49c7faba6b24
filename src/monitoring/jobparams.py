"""Job parameters in the search backend (``Monitoring.JobParameters: OpenSearch``; entry point
``pilotwms.job_parameter_stores``), as DIRAC's JobParameters indices.

One index per million job IDs (``<prefix>_jobparameters-12m`` holds jobs 12,000,000 to
12,999,999) and one document per job and attempt (id ``<job>-<attempt>``) whose
``Parameters`` object is stored but not indexed (any parameter name, no mapping growth);
writes are bulk partial updates with ``doc_as_upsert``, so they merge into what is there.
``getJobParameters`` is unchanged on the wire (:mod:`wms.logic.parameter_store` merges with
the WMS table, which takes the writes while the cluster is down).

Example::

    >>> index_of("pilotwms", 12_345_678)
    'pilotwms_jobparameters-12m'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opensearchpy import helpers
from opensearchpy.exceptions import NotFoundError

from core.config.schema import Config
from monitoring.db import make_backend
from monitoring.db.base import BackendUnavailable
from monitoring.db.search import OpenSearchBackend

PER_INDEX = 1_000_000


def index_of(prefix: str, job_id: int) -> str:
    return f"{prefix}_jobparameters-{job_id // PER_INDEX}m"


class OpenSearchParameterStore:
    def __init__(self, config: Config) -> None:
        section = config.monitoring
        search_config = config.model_copy(update={"monitoring": section.model_copy(
            update={"backend": "OpenSearch"})})
        backend = make_backend(search_config)
        assert isinstance(backend, OpenSearchBackend)  # noqa: S101 - asked for above
        self.backend = backend
        self.prefix = backend.prefix
        self._ready = False

    def _setup(self) -> None:
        if self._ready:
            return
        body = {"index_patterns": [f"{self.prefix}_jobparameters-*"], "priority": 100,
                "template": {"settings": {"number_of_shards": self.backend.shards,
                                          "number_of_replicas": self.backend.replicas},
                             "mappings": {"dynamic": "strict", "properties": {
                                 "JobID": {"type": "long"}, "Attempt": {"type": "integer"},
                                 "Parameters": {"type": "object", "enabled": False}}}}}
        self.backend._call(self.backend.client.indices.put_index_template,
                           name=f"{self.prefix}_jobparameters", body=body)
        self._ready = True

    def set(self, values: Mapping[int, Mapping[str, str]], attempts: Mapping[int, int]
            ) -> None:
        self._setup()
        actions = [{"_op_type": "update", "_index": index_of(self.prefix, job_id),
                    "_id": f"{job_id}-{attempts[job_id]}", "doc_as_upsert": True,
                    "doc": {"JobID": job_id, "Attempt": attempts[job_id],
                            "Parameters": {str(k): str(v) for k, v in params.items()}}}
                   for job_id, params in values.items() if params]
        if not actions:
            return
        _, errors = self.backend._call(helpers.bulk, self.backend.client, actions,
                                       raise_on_error=False, refresh=True)
        if errors:
            raise BackendUnavailable(f"job parameters refused: {errors[0]}")

    def get(self, job_ids: Iterable[int], attempt: int | None = None
            ) -> dict[int, dict[str, Any]]:
        ids = sorted(set(job_ids))
        out: dict[int, dict[str, Any]] = {}
        best: dict[int, int] = {}
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            indices = sorted({index_of(self.prefix, j) for j in chunk})
            query: dict[str, Any] = {"bool": {"filter": [{"terms": {"JobID": chunk}}]}}
            if attempt is not None:
                query["bool"]["filter"].append({"term": {"Attempt": attempt}})
            try:
                reply = self.backend._call(
                    self.backend.client.search, index=",".join(indices),
                    body={"size": 10_000, "query": query},
                    params={"ignore_unavailable": "true", "allow_no_indices": "true"})
            except NotFoundError:
                continue
            for hit in reply["hits"]["hits"]:
                src = hit["_source"]
                job_id, this = int(src["JobID"]), int(src["Attempt"])
                if job_id not in best or this > best[job_id]:
                    best[job_id] = this
                    out[job_id] = dict(src.get("Parameters") or {})
        return out
