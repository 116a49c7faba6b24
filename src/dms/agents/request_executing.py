"""``RequestExecutingAgent``: runs the failover requests of ``RequestManagement/ReqManager``.

Each cycle claims due requests (Waiting and past their ``not_before``, or Assigned to a dead
agent for ``StaleMinutes``), executes them with a data manager acting for the request's owner
(:func:`dms.logic.rms.execute`), and stores the outcome: Done, Failed after
``MaxAttempts``, or Waiting again with exponential back-off (``RetryDelaySeconds`` doubling up
to ``MaxRetryDelaySeconds``). Options: ``Systems.RequestManagement.Services.ReqManager.Options``.

The catalog is used directly (server side) with the owner's identity, so files registered by a
request belong to the user, and the catalog's rights apply as if the user acted. Storage is
reached with the server's host certificate (trusted hosts may write every HTTPS SE path).

Run: ``pilotwms agent RequestExecutingAgent --config config.yaml [--once]``.

Example::

    >>> RequestExecutingAgent.name, RequestExecutingAgent.system
    ('RequestExecutingAgent', 'RequestManagement')
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine

from core.agent import Agent
from core.config.schema import Config
from core.rpc.client import Credentials
from core.rpc.server import ca_directory
from dms.bulk import BulkResult
from dms.db import rms as db
from dms.logic import directories, namespace
from dms.logic import replicas as replica_ops
from dms.logic import rms as logic
from dms.logic.data_manager import DataManager
from dms.logic.rights import CatalogSettings, Requester
from dms.storage import StorageElements

log = logging.getLogger("pilotwms.agents.requests")
DataManagerFactory = Callable[[db.RequestRow], DataManager]


class OwnerCatalog:
    """The catalog calls the data manager needs, run in this process as ``requester``."""

    def __init__(self, engine: Engine, settings: CatalogSettings, requester: Requester) -> None:
        self.engine, self.settings, self.req = engine, settings, requester

    def add_file(self, files: Mapping[str, Mapping[str, Any]]) -> BulkResult:
        return namespace.add_files(self.engine, self.settings, self.req, files)

    def add_replica(self, replicas: Mapping[str, Mapping[str, Any]]) -> BulkResult:
        return replica_ops.add_replicas(self.engine, self.req, replicas)

    def remove_file(self, lfns: str | Iterable[str]) -> BulkResult:
        return namespace.remove_files(self.engine, self.req, namespace.as_list(lfns))

    def remove_replica(self, replicas: Mapping[str, Any]) -> BulkResult:
        return replica_ops.remove_replicas(self.engine, self.req, replicas)

    def get_replicas(self, lfns: str | Iterable[str], all_status: bool = False) -> BulkResult:
        return replica_ops.get_replicas(self.engine, self.req, namespace.as_list(lfns),
                                      all_status)

    def get_file_metadata(self, lfns: str | Iterable[str]) -> BulkResult:
        return namespace.get_file_metadata(self.engine, self.req, namespace.as_list(lfns))

    def list_directory(self, paths: str | Iterable[str], verbose: bool = False) -> BulkResult:
        return directories.list_directory(self.engine, self.req, namespace.as_list(paths),
                                          verbose)

    def is_directory(self, lfns: str | Iterable[str]) -> BulkResult:
        return namespace.is_directory(self.engine, self.req, namespace.as_list(lfns))

    def remove_directory(self, paths: str | Iterable[str]) -> BulkResult:
        return namespace.remove_directories(self.engine, self.req, namespace.as_list(paths))


def host_storage_elements(config: Config) -> StorageElements:
    """The configured SEs, reached with the server's host certificate (agents)."""
    server = config.server
    creds = Credentials(cert=server.host_cert, key=server.host_key) \
        if server.host_cert else None
    return StorageElements.from_config(config, credentials=creds,
                                       ca_dir=ca_directory(config))


def owner_data_manager(config: Config, catalog_engine: Engine, ses: StorageElements,
                       owner: str, owner_group: str, vo: str | None, *,
                       job_id: int | None = None,
                       work_dir: str | None = None) -> DataManager:
    """A data manager acting in the catalog as ``owner`` (server side, in this process) and
    reaching storage through ``ses``; the transfer agent uses it too."""
    registry = config.registry
    vo_groups = {v: (conf.default_group or registry.default_group or v)
                 for v, conf in registry.vos.items()}
    settings = CatalogSettings.from_options(
        config.service_config("DataManagement", "FileCatalog").options, vo_groups)
    groups = frozenset(n for n, g in registry.groups.items() if owner in g.users)
    props = registry.groups[owner_group].properties if owner_group in registry.groups else []
    requester = Requester(owner, owner_group, vo,
                          bool(settings.admin_properties & set(props)), groups)
    catalog = OwnerCatalog(catalog_engine, settings, requester)
    return DataManager(catalog, ses, job_id=job_id, work_dir=work_dir)


class RequestExecutingAgent(Agent):
    name = "RequestExecutingAgent"
    system = "RequestManagement"
    period = 30.0

    def __init__(self, config: Config, *, instance: str | None = None,
                 period: float | None = None,
                 data_manager_factory: DataManagerFactory | None = None) -> None:
        super().__init__(config, instance=instance, period=period)
        options = config.service_config("RequestManagement", "ReqManager").options
        self.max_attempts = int(options.get("MaxAttempts", 10))
        self.retry_delay = float(options.get("RetryDelaySeconds", 60))
        self.max_delay = float(options.get("MaxRetryDelaySeconds", 3600))
        self.stale = timedelta(minutes=float(options.get("StaleMinutes", 30)))
        self.batch = int(options.get("RequestsPerCycle", 20))
        self.factory = data_manager_factory or self.default_data_manager
        self._ses: StorageElements | None = None

    def storage_elements(self) -> StorageElements:
        if self._ses is None:
            self._ses = host_storage_elements(self.config)
        return self._ses

    def default_data_manager(self, req: db.RequestRow) -> DataManager:
        return owner_data_manager(self.config, self.engine("DataManagement"),
                                  self.storage_elements(), req.owner, req.owner_group, req.vo,
                                  job_id=req.job_id)

    def run_once(self) -> bool:
        engine = self.engine()
        claimed = db.claim(engine, self.instance, self.batch, self.stale)
        for req in claimed:
            if self.stopping:
                req.status = db.WAITING  # give it back untouched
                db.save_outcome(engine, req)
                continue
            try:
                logic.execute(self.factory(req), req, max_attempts=self.max_attempts,
                              retry_delay=self.retry_delay, max_delay=self.max_delay)
            except Exception as exc:  # noqa: BLE001 - one bad request must not stop the rest
                log.exception("request %d could not be executed", req.request_id)
                req.attempts += 1
                req.status = db.FAILED if req.attempts >= self.max_attempts else db.WAITING
                req.error = f"{type(exc).__name__}: {exc}"
                req.not_before = req.not_before + timedelta(
                    seconds=logic.backoff(req.attempts - 1, self.retry_delay, self.max_delay))
            db.save_outcome(engine, req)
            log.info("request %d (%s): %s", req.request_id, req.name, req.status)
        return len(claimed) < self.batch
