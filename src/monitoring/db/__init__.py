"""Monitoring storage: the backend interface, its SQL and OpenSearch implementations, and the
state tables.

Example::

    >>> from core.config.schema import Config
    >>> backend = make_backend(Config.model_validate({"Database": "sqlite://"}))
    >>> backend.name
    'SQL'
"""

from __future__ import annotations

import os

from sqlalchemy.engine import Engine

from core.config.schema import Config
from core.db import make_engine
from core.exceptions import ConfigError
from monitoring.db.base import Backend

SYSTEM = "Monitoring"
ENV_URL = "PILOTWMS_OPENSEARCH_URL"


def make_backend(config: Config, engine: Engine | None = None) -> Backend:
    """The configured backend; ``engine`` is the Monitoring database (made when not given)."""
    section = config.monitoring
    if section.backend == "OpenSearch":
        from monitoring.db.search import OpenSearchBackend

        env = os.environ.get(ENV_URL, "")
        hosts = [h.strip() for h in env.split(",") if h.strip()] or section.open_search.hosts
        if not hosts:
            raise ConfigError("Monitoring.Backend is OpenSearch but OpenSearch.Hosts is empty "
                              f"(and {ENV_URL} is not set)")
        conf = section.open_search
        return OpenSearchBackend(
            hosts, prefix=conf.index_prefix, timeout=conf.timeout,
            ca_file=str(conf.ca_file) if conf.ca_file else None,
            verify_certs=conf.verify_certs, shards=conf.shards, replicas=conf.replicas)
    from monitoring.db.sql import SQLBackend

    return SQLBackend(engine or make_engine(config.database_url(SYSTEM)))
