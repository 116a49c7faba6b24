"""The ``Monitoring`` section: where monitoring and accounting records go, how long they stay,
and who may scrape ``/metrics``.

Two backends behind one interface (``monitoring.db``): ``SQL`` keeps everything in the
Monitoring system's database (``Systems.Monitoring.Database``, else ``Database``: SQLite or
MariaDB), ``OpenSearch`` writes to an OpenSearch / Elasticsearch 7 cluster (one index per
record type and month). Secrets stay out of the YAML: ``PILOTWMS_OPENSEARCH_URL`` overrides
``OpenSearch.Hosts`` (user and password may be in that URL) and ``PILOTWMS_METRICS_TOKEN`` sets
the scrape token.

Example::

    >>> section = MonitoringConfig.model_validate({"Backend": "OpenSearch",
    ...     "OpenSearch": {"Hosts": ["https://os1:9200"]}, "Retention": {"WMSHistory": 30}})
    >>> section.backend, section.retention["WMSHistory"], section.history_period
    ('OpenSearch', 30, 300)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic.alias_generators import to_pascal

from core.config.base import Section


def _alias(name: str) -> str:
    special = {"ca_file": "CAFile", "index_prefix": "IndexPrefix"}
    return special.get(name, to_pascal(name))


class _Section(Section):
    model_config = ConfigDict(alias_generator=_alias, populate_by_name=True, extra="forbid",
                              frozen=True)


class OpenSearchConfig(_Section):
    """How to reach the search cluster (``opensearch-py``; OpenSearch or Elasticsearch 7)."""

    hosts: list[str] = Field(default_factory=list)
    #: every index and template name starts with this (``<prefix>_job-2026-12``)
    index_prefix: str = Field(default="pilotwms", pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    #: CA bundle for HTTPS clusters (default: the system's)
    ca_file: Path | None = None
    verify_certs: bool = True
    #: seconds per request; a monitoring write never waits longer than this
    timeout: float = Field(default=10.0, gt=0)
    #: shards and replicas of new indices (a single-node cluster needs 0 replicas)
    shards: int = Field(default=1, ge=1)
    replicas: int = Field(default=0, ge=0)


class MetricsConfig(_Section):
    """Who may read ``/metrics`` on servers and agents."""

    #: access rules, as a service method's (``all`` opens it to anonymous scrapers)
    authorization: list[str] = Field(
        default_factory=lambda: ["Monitoring", "ServiceAdministrator"])
    #: a file holding a bearer token that scrapers may send instead of a credential
    #: (``PILOTWMS_METRICS_TOKEN`` in the environment does the same)
    scrape_token_file: Path | None = None
    #: seconds the cached gauges (jobs by status, task queues, sandbox bytes) may be old
    cache_seconds: float = Field(default=30.0, ge=0)
    #: agents: serve ``/metrics`` on this port of ``Host`` (None: no listener)
    agent_port: int | None = Field(default=None, ge=0, le=65535)
    agent_host: str = "127.0.0.1"


class MonitoringConfig(_Section):
    backend: Literal["SQL", "OpenSearch"] = "SQL"
    open_search: OpenSearchConfig = Field(default_factory=OpenSearchConfig,
                                          alias="OpenSearch")
    #: seconds between two WMS/pilot history snapshots (DIRAC's StatesAccountingAgent: 15 min)
    history_period: int = Field(default=300, ge=10)
    #: intervals a restarted history agent fills in from the job logging (0: none)
    history_backfill: int = Field(default=288, ge=0)
    #: record type -> days kept (0: forever); whole indices/months are dropped on OpenSearch
    retention: dict[str, int] = Field(default_factory=lambda: {
        "WMSHistory": 90, "PilotsHistory": 90, "ComponentMonitoring": 30})
    #: records shipped per agent cycle at most
    batch_size: int = Field(default=5000, ge=1)
    #: seconds between retries while the backend is down: doubling up to this
    max_backoff: float = Field(default=300.0, ge=1)
    #: per-process queue of component-monitoring samples kept while the backend is down
    queue_size: int = Field(default=1000, ge=1)
    #: seconds between two component-monitoring records of each server process and agent
    #: (0: none)
    component_period: float = Field(default=60.0, ge=0)
    #: run the shipping and history cycles in the Monitoring service's processes (embedded
    #: default); set false when the agents run on their own
    run_in_server: bool = True
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    #: where job parameters live: the WMS table (SQL) or the search backend (OpenSearch: one
    #: index per million job IDs; the WMS table takes them while the cluster is down)
    job_parameters: Literal["SQL", "OpenSearch"] = "SQL"

    @model_validator(mode="after")
    def _hosts(self) -> MonitoringConfig:
        for name, days in self.retention.items():
            if days < 0:
                raise ValueError(f"Retention.{name}: days must be >= 0")
        return self
