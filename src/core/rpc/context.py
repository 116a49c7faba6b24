"""What every service of one server process shares: config, authenticator, executor, engines.

Built once per process by :func:`core.rpc.server.build_application` (after any fork, so that no
database connection or thread crosses a ``fork``).

Example::

    >>> from core.config.schema import Config
    >>> ctx = ServerContext(Config.model_validate({"Database": "sqlite://"}))
    >>> ctx.database_url("WorkloadManagement")
    'sqlite://'
    >>> ctx.close()
"""

from __future__ import annotations

import contextlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.engine import Engine

from core.auth.revocation import RevocationCache
from core.auth.tables import SYSTEM as AUTH_SYSTEM
from core.config.schema import Config
from core.db import make_engine
from core.security.authenticate import Authenticator
from core.security.tokens import TokenVerifier

log = logging.getLogger("pilotwms.rpc")


class ServerContext:
    def __init__(self, config: Config, authenticator: Authenticator | None = None) -> None:
        self.config = config
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()
        #: the revoked-token list every service checks (when the login server is configured)
        self.revocations: RevocationCache | None = None
        if authenticator is None and config.auth.server is not None:
            self.revocations = RevocationCache(self.engine(AUTH_SYSTEM),
                                               config.auth.server.revocation_cache_seconds)
            authenticator = Authenticator(
                config, TokenVerifier(config.auth, is_revoked=self.revocations))
        self.authenticator = authenticator or Authenticator(config)
        self.executor = ThreadPoolExecutor(
            max_workers=config.server.executor_threads, thread_name_prefix="rpc"
        )
        #: service instances and their running periodic callbacks (set by the server)
        self.services: list[Any] = []
        self.background: list[Any] = []
        #: start-up tasks still running (asyncio futures, cancelled on close)
        self.startup: list[Any] = []
        #: ``System/Service`` -> its ``HostedService`` (instance and effective rules), for
        #: routes that call other services of this process in-process (the web portal)
        self.hosted: dict[str, Any] = {}
        #: RPC calls being served by this process (kept by the handlers, on the IOLoop)
        self.calls_in_flight = 0

    def database_url(self, system: str) -> str:
        return self.config.database_url(system)

    def engine(self, system: str) -> Engine:
        """The engine of ``system``'s database; systems sharing a URL share the engine."""
        url = self.database_url(system)
        with self._lock:
            engine = self._engines.get(url)
            if engine is None:
                engine = self._engines[url] = make_engine(url)
            return engine

    def stop_services(self) -> None:
        """Let each service finish its queued work (:meth:`Service.stop`); blocking."""
        for service in self.services:
            try:
                service.stop()
            except Exception:  # noqa: BLE001 - the other services must stop all the same
                log.exception("stopping %s failed", service.path())

    def close(self) -> None:
        self.stop_services()
        for callback in self.background:
            callback.stop()
        for future in self.startup:
            if not future.done():
                with contextlib.suppress(RuntimeError):  # its loop may be closed already
                    future.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()
