"""The periodic work of monitoring, shared by the agents and the Monitoring service's
background tasks: ship the accounting outbox, take history snapshots, apply retention.

A backend outage never propagates: the cycle logs it, keeps its data where it is (outbox rows,
dirty marks, the snapshot to redo) and waits before trying again, doubling the wait up to
``Monitoring.MaxBackoff`` seconds (bounded retry). Jobs are not involved at all: they only
wrote their outbox row.

Example::

    >>> b = Backoff(max_delay=60)
    >>> b.failed(now=0.0), b.failed(now=0.0), b.ready(now=3.9), b.ready(now=4.0)
    (2.0, 4.0, False, True)
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.config.schema import Config
from core.db import init_schema, write_transaction
from core.exceptions import DatabaseError
from monitoring.db import make_backend
from monitoring.db.base import Backend, BackendUnavailable
from monitoring.db.tables import MONITORING_SCHEMA, watermarks
from monitoring.logic import accounting, history, transfers
from wms.logic import parameter_store

log = logging.getLogger("pilotwms.monitoring")


@dataclass
class Backoff:
    """Wait 2, 4, 8, ... seconds (at most ``max_delay``) after consecutive failures."""

    max_delay: float
    failures: int = 0
    not_before: float = 0.0

    def ready(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) >= self.not_before

    def failed(self, now: float | None = None) -> float:
        self.failures += 1
        delay = min(self.max_delay, 2.0 ** self.failures)
        self.not_before = (time.monotonic() if now is None else now) + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.not_before = 0.0


SHIPPER = "lease:accounting"
#: a shipper that died holding the lease is replaced after this long
LEASE_SECONDS = 600


def acquire(state: Engine, name: str, owner: int, seconds: int) -> bool:
    """Take (or renew) the lease ``name`` for ``seconds``; False while another owner holds
    it. Kept in ``mon_watermarks`` (ts: expiry, ref: owner)."""
    now = int(time.time())
    try:
        with write_transaction(state) as conn:
            query = sa.select(watermarks.c.ts, watermarks.c.ref).where(
                watermarks.c.name == name)
            if conn.dialect.name != "sqlite":
                query = query.with_for_update()
            row = conn.execute(query).first()
            if row is None:
                conn.execute(sa.insert(watermarks).values(name=name, ts=now + seconds,
                                                          ref=owner))
                return True
            if row.ref != owner and row.ts > now:
                return False
            conn.execute(sa.update(watermarks).where(watermarks.c.name == name)
                         .values(ts=now + seconds, ref=owner))
            return True
    except sa.exc.IntegrityError:  # another process inserted the row first
        return False


def release(state: Engine, name: str, owner: int) -> None:
    with write_transaction(state) as conn:
        conn.execute(sa.update(watermarks).where(watermarks.c.name == name,
                                                 watermarks.c.ref == owner).values(ts=0))


@dataclass
class Cycles:
    """Monitoring work on the given engines (WMS and Monitoring databases)."""

    config: Config
    wms: Engine
    state: Engine
    backend: Backend | None = None
    #: the RequestManagement and Transfer databases (data-operation records), when present
    rms: Engine | None = None
    xfer: Engine | None = None
    backoff: dict[str, Backoff] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    #: this shipper's identity for the lease
    owner: int = field(default_factory=lambda: random.getrandbits(62))
    _ready: bool = False

    def _backend(self) -> Backend:
        if self.backend is None:
            self.backend = make_backend(self.config, self.state)
        if not self._ready:
            init_schema(self.state, MONITORING_SCHEMA)
            self.backend.setup()
            self._ready = True
        return self.backend

    def _guard(self, name: str, work: Any) -> Any:
        backoff = self.backoff.setdefault(name, Backoff(self.config.monitoring.max_backoff))
        if not backoff.ready():
            return None
        try:
            result = work(self._backend())
        except DatabaseError as exc:  # the monitoring database cannot be set up right now
            delay = backoff.failed()
            log.warning("monitoring %s: %s; retrying in %.0f s", name, exc, delay)
            return None
        except BackendUnavailable as exc:
            delay = backoff.failed()
            self._ready = False  # templates/tables again once it is back
            self.stats[f"{name}_failures"] = self.stats.get(f"{name}_failures", 0) + 1
            log.warning("monitoring %s: backend unavailable (%s); retrying in %.0f s",
                        name, exc, delay)
            return None
        backoff.succeeded()
        return result

    def ship(self) -> accounting.ShipResult | None:
        """One outbox batch (and finished data-management requests); None when the backend
        is down (or backing off)."""

        def work(backend: Backend) -> accounting.ShipResult:
            # one shipper at a time (bucket deltas must not be applied twice)
            if not acquire(self.state, SHIPPER, self.owner, LEASE_SECONDS):
                return accounting.ShipResult()
            try:
                batch = self.config.monitoring.batch_size
                result = accounting.ship(backend, self.state, self.wms, batch=batch,
                                         parameters=parameter_store.store_for(self.config))
                if self.rms is not None:
                    try:
                        result.transfers = transfers.ship(backend, self.state, self.rms,
                                                          self.config, batch=batch)
                    except sa.exc.OperationalError as exc:  # no RequestManagement tables
                        log.debug("no data-management requests to account: %s", exc)
                if self.xfer is not None:
                    try:
                        result.transfers += transfers.ship_xfer(backend, self.state,
                                                                self.xfer, batch=batch)
                    except sa.exc.OperationalError as exc:  # no Transfer tables
                        log.debug("no transfer attempts to account: %s", exc)
                return result
            finally:
                release(self.state, SHIPPER, self.owner)

        return self._guard("accounting", work)

    def history(self, now: datetime | None = None) -> history.HistoryResult | None:
        section = self.config.monitoring

        def work(backend: Backend) -> history.HistoryResult:
            result = history.run_cycle(backend, self.state, self.wms,
                                       period=section.history_period,
                                       backfill=section.history_backfill, now=now)
            history.retention(backend, section.retention)
            return result

        return self._guard("history", work)

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None
            self._ready = False
