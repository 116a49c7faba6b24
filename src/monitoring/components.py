"""The component-monitoring sink (entry point ``pilotwms.component_sinks``): queues the
records of :class:`core.components.ComponentReporter` and writes them to the monitoring
backend.

The queue holds at most ``Monitoring.QueueSize`` records: while the backend is down records
wait there and every tick retries (with the same bounded back-off as the other cycles); when
the queue is full the oldest records go, counted in :attr:`ComponentSink.dropped`. Writes are
idempotent (the record id is time, component, host and process), so a retried write never
doubles a record.

Example::

    >>> from core.config.schema import Config
    >>> sink = ComponentSink(Config.model_validate({"Database": "sqlite://"}))
    >>> sink([{"Component": "Demo", "ComponentType": "agent", "Host": "h", "Instance": "1",
    ...        "timestamp": 1_780_000_000, "Cycles": 3}])
    >>> sink.written, len(sink.queue)
    (1, 0)
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

from core.config.schema import Config
from core.db import init_schema, make_engine
from monitoring.db import SYSTEM, make_backend
from monitoring.db.base import Backend, BackendUnavailable
from monitoring.db.tables import MONITORING_SCHEMA
from monitoring.logic.cycles import Backoff
from monitoring.types import TYPES, doc_id, normalise

log = logging.getLogger("pilotwms.monitoring.components")
COMPONENT = TYPES["ComponentMonitoring"]


class ComponentSink:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.queue: deque[dict[str, Any]] = deque(maxlen=config.monitoring.queue_size)
        self.backoff = Backoff(config.monitoring.max_backoff)
        self.backend: Backend | None = None
        self.written = 0
        self.dropped = 0
        self._lock = threading.Lock()

    def _backend(self) -> Backend:
        if self.backend is None:
            if self.config.monitoring.backend == "SQL":
                engine = make_engine(self.config.database_url(SYSTEM))
                init_schema(engine, MONITORING_SCHEMA)
                self.backend = make_backend(self.config, engine)
            else:
                self.backend = make_backend(self.config)
                self.backend.setup()
        return self.backend

    def __call__(self, records: list[dict[str, Any]]) -> None:
        with self._lock:
            for record in records:
                if len(self.queue) == self.queue.maxlen:
                    self.dropped += 1
                norm = normalise(COMPONENT, record)
                self.queue.append({**norm, "_id": doc_id(COMPONENT, norm)})
            if not self.queue or not self.backoff.ready():
                return
            batch = list(self.queue)
            try:
                self._backend().put(COMPONENT, batch)
            except BackendUnavailable as exc:
                delay = self.backoff.failed()
                log.warning("component monitoring: backend unavailable (%s); %d record(s) "
                            "queued, retry in %.0f s", exc, len(self.queue), delay)
                return
            self.backoff.succeeded()
            for _ in batch:
                self.queue.popleft()
            self.written += len(batch)
