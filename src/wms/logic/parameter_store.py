"""Where job parameters live: the WMS table (default) or a search backend.

With ``Monitoring.JobParameters: OpenSearch`` the parameters go to the store that the
``pilotwms.job_parameter_stores`` entry point of that name provides (``monitoring.jobparams``:
one index per million job IDs, as DIRAC's JobParameters indices), and ``getJobParameters``
answers the same on the wire. The WMS never imports that code.

A store that cannot be reached never fails the job: the parameters are written to the WMS
table instead (:func:`write`), and :func:`read` merges both, the table winning (it only holds
what was written during an outage and not rewritten since: a successful store write removes
the table's rows of the same names).

Example::

    >>> from core.config.schema import Config
    >>> store_for(Config()) is None     # the default: the WMS table
    True
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from typing import Any, Protocol

from sqlalchemy.engine import Connection, Engine

from core.config.schema import Config
from core.db import write_transaction
from core.exceptions import ConfigError, ServiceUnavailableError
from wms.db import jobs as jobs_db

log = logging.getLogger("pilotwms.wms.parameters")
ENTRY_POINT_GROUP = "pilotwms.job_parameter_stores"


class ParameterStore(Protocol):
    def set(self, values: Mapping[int, Mapping[str, str]], attempts: Mapping[int, int]
            ) -> None:
        """Merge ``values`` into the jobs' parameters of their attempt; raises
        ServiceUnavailableError when the store cannot be reached."""

    def get(self, job_ids: Iterable[int], attempt: int | None = None
            ) -> dict[int, dict[str, str]]:
        """Parameters of the latest (or the given) attempt per job."""


_stores: dict[int, tuple[Config, ParameterStore | None]] = {}


def store_for(config: Config) -> ParameterStore | None:
    """The configured store (None: the WMS table), made once per configuration."""
    kind = config.monitoring.job_parameters
    if kind == "SQL":
        return None
    cached = _stores.get(id(config))
    if cached is not None and cached[0] is config:
        return cached[1]
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if kind not in found:
        raise ConfigError(f"Monitoring.JobParameters: no store {kind!r} is installed")
    store: ParameterStore = found[kind].load()(config)
    _stores[id(config)] = (config, store)
    return store


def write(engine: Engine, store: ParameterStore | None,
          values: Mapping[int, Mapping[str, str]], attempts: Mapping[int, int],
          conn: Connection | None = None) -> None:
    """Store parameters; with no store (or an unreachable one) in the WMS table, within
    ``conn``'s transaction when given."""
    if store is not None:
        try:
            store.set(values, attempts)
        except ServiceUnavailableError as exc:
            log.warning("job parameters store unavailable (%s): kept in the WMS table", exc)
        else:
            with write_transaction(engine) as tx:
                jobs_db.delete_parameters(tx, {j: list(v) for j, v in values.items()},
                                          dict(attempts))
            return
    plain = {j: dict(v) for j, v in values.items()}
    if conn is not None:
        jobs_db.set_parameters(conn, plain, dict(attempts))
        return
    with write_transaction(engine) as tx:
        jobs_db.set_parameters(tx, plain, dict(attempts))


def read(conn: Connection, store: ParameterStore | None, job_ids: Iterable[int], *,
         attempt: int | None = None) -> dict[int, dict[str, Any]]:
    """Parameters of the latest (or given) attempt per job, from the table and the store."""
    ids = list(job_ids)
    table = jobs_db.parameters_of(conn, ids, attempt=attempt)
    if store is None:
        return table
    try:
        found = store.get(ids, attempt=attempt)
    except ServiceUnavailableError as exc:
        log.warning("job parameters store unavailable (%s): WMS table only", exc)
        return table
    for job_id, params in table.items():
        found.setdefault(job_id, {}).update(params)
    return found
