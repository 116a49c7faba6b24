"""The agent loop, written once: ``run_once()``, a graceful stop, a heartbeat row, ``--once``.

An agent is a class with a ``name`` and a :meth:`Agent.run_once` that does one cycle of work
and returns True when there is nothing more to do right now (the loop then sleeps ``period``
seconds) or False to run again at once. :meth:`Agent.run` loops until :meth:`Agent.stop` (or
SIGTERM/SIGINT through ``pilotwms agent``) and writes a heartbeat row per cycle in
``component_heartbeats``; while a cycle runs, a keep-alive thread refreshes that row every
``max(period, 1)`` seconds, so a copy busy with a long cycle (a submission of thousands of
tasks) never looks dead to its peers, which would take over its claims. Several copies of
an agent can run: each sees its live peers (heartbeat younger than three periods) and
:meth:`Agent.mine` splits keys (job IDs, queue names, ...) between them, so two copies never
work on the same item at once; the work itself still re-checks state in its transactions,
so an overlap during a peer change is harmless.

Example::

    >>> from core.config.schema import Config
    >>> class Counter(Agent):
    ...     name = "Counter"
    ...     cycles = 0
    ...     def run_once(self) -> bool:
    ...         self.cycles += 1
    ...         return True
    >>> agent = Counter(Config.model_validate({"Database": "sqlite://"}), instance="a")
    >>> agent.run(once=True); agent.cycles
    1
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from abc import ABC, abstractmethod
from datetime import timedelta
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.config.schema import Config
from core.db import (
    init_schema,
    make_engine,
    memory_sqlite,
    retry_conflicts,
    utcnow,
    write_transaction,
)
from core.tables import FRAMEWORK_SCHEMA, component_heartbeats

log = logging.getLogger("pilotwms.agent")


class Agent(ABC):
    name: ClassVar[str] = ""
    #: the system whose database the agent works on (engines: :meth:`engine`)
    system: ClassVar[str] = "WorkloadManagement"
    #: seconds between cycles when ``run_once`` says there is nothing more to do
    period: float = 60.0

    def __init__(self, config: Config, *, instance: str | None = None,
                 period: float | None = None) -> None:
        self.config = config
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}"
        if period is not None:
            self.period = period
        self._stop = threading.Event()
        self._engines: dict[str, Engine] = {}
        self._peers: list[str] = [self.instance]
        self._schema_ready = False
        self.started = utcnow()

    def engine(self, system: str | None = None) -> Engine:
        url = self.config.database_url(system or self.system)
        if url not in self._engines:
            self._engines[url] = make_engine(url)
        return self._engines[url]

    @abstractmethod
    def run_once(self) -> bool:
        """One cycle; True means "nothing more to do now: sleep before the next one"."""

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- heartbeat and peers -----------------------------------------------------------------

    @retry_conflicts()
    def beat(self) -> list[str]:
        """Refresh this instance's heartbeat row; returns the live instances, sorted."""
        engine = self.engine("Framework")
        if not self._schema_ready:
            init_schema(engine, FRAMEWORK_SCHEMA)
            self._schema_ready = True
        now = utcnow()
        hb = component_heartbeats
        key = (hb.c.component == self.name, hb.c.instance == self.instance)
        with write_transaction(engine) as conn:
            updated = conn.execute(sa.update(hb).where(*key).values(last_beat=now)).rowcount
            if not updated:
                conn.execute(sa.insert(hb).values(
                    component=self.name, instance=self.instance, hostname=socket.gethostname(),
                    pid=os.getpid(), started=self.started, last_beat=now))
            alive = now - timedelta(seconds=3 * max(self.period, 1.0))
            rows = conn.execute(sa.select(hb.c.instance).where(
                hb.c.component == self.name, hb.c.last_beat >= alive)).scalars().all()
        self._peers = sorted(set(rows) | {self.instance})
        return self._peers

    def _touch(self) -> None:
        """Refresh ``last_beat`` of this instance's row (made by :meth:`beat`), nothing else:
        the peers, and so the split, change only at the start of a cycle."""
        hb = component_heartbeats
        with write_transaction(self.engine("Framework")) as conn:
            conn.execute(sa.update(hb).where(hb.c.component == self.name,
                                             hb.c.instance == self.instance)
                         .values(last_beat=utcnow()))

    def _keep_alive(self, done: threading.Event) -> None:
        interval = max(self.period, 1.0)
        while not done.wait(interval):
            try:
                self._touch()
            except sa.exc.SQLAlchemyError:  # the next cycle's beat() retries; log only
                log.warning("%s: could not refresh the heartbeat row", self.name)

    def _start_keep_alive(self) -> tuple[threading.Event, threading.Thread | None]:
        """The keep-alive thread, except on an in-memory SQLite database: it has no peers
        (no other process sees it), and its one shared connection must not be used by two
        threads at once (a transaction of one would end the other's)."""
        done = threading.Event()
        if memory_sqlite(self.config.database_url("Framework")):
            return done, None
        thread = threading.Thread(target=self._keep_alive, args=(done,), daemon=True,
                                  name=f"{self.name}-keep-alive")
        thread.start()
        return done, thread

    def mine(self, key: int) -> bool:
        """Whether this instance handles ``key`` among its live peers (stable split)."""
        return key % len(self._peers) == self._peers.index(self.instance)

    def _leave(self) -> None:
        hb = component_heartbeats
        try:
            with write_transaction(self.engine("Framework")) as conn:
                conn.execute(sa.delete(hb).where(hb.c.component == self.name,
                                                 hb.c.instance == self.instance))
        except sa.exc.SQLAlchemyError:
            log.warning("%s: could not remove the heartbeat row", self.name)

    # -- metrics -------------------------------------------------------------------------------

    #: the agent's ``/metrics`` listener once started (its ``server_port`` is the bound port)
    metrics_server: Any = None

    def start_metrics(self) -> Any:
        """Serve ``/metrics`` when ``Monitoring.Metrics.AgentPort`` is set (0: any port)."""
        from core import metrics
        from core.security.rights import ALL

        conf = self.config.monitoring.metrics
        if conf.agent_port is None:
            return None
        anonymous = any(rule.strip().lower() in (ALL, "any") for rule in conf.authorization)
        token = metrics.scrape_token(conf.scrape_token_file)
        # the scrape runs in the listener's thread: refreshing there never blocks a cycle
        sources = metrics.CachedSources(self, conf.cache_seconds, refresh_on_collect=True)
        self.metrics_server = metrics.serve_agent_metrics(
            conf.agent_host, conf.agent_port, token=token, anonymous=anonymous, extra=sources)
        log.info("%s: /metrics on %s:%d", self.name, conf.agent_host,
                 self.metrics_server.server_port)
        return self.metrics_server

    def start_component_reports(self) -> threading.Event | None:
        """Component-monitoring records every ``Monitoring.ComponentPeriod`` seconds
        (:mod:`core.components`), from a thread of their own."""
        from core.components import ComponentReporter, load_sink, start_thread

        period = self.config.monitoring.component_period
        sink = load_sink(self.config) if period > 0 else None
        if sink is None:
            return None
        return start_thread(ComponentReporter("agent", self.name, sink=sink), period)

    def _count_cycle(self, seconds: float, result: str) -> None:
        from core.metrics import metrics

        m = metrics()
        m.agent_cycles.labels(self.name, result).inc()
        m.agent_latency.labels(self.name).observe(seconds)
        m.agent_last_cycle.labels(self.name).set_to_current_time()

    # -- the loop ----------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> None:
        """Loop until stopped (or one cycle with ``once``); a failing cycle is logged and the
        loop goes on after a period. Cycles are counted and timed for Prometheus
        (``core.metrics``; ``/metrics`` when ``Monitoring.Metrics.AgentPort`` is set)."""
        listener = self.start_metrics()
        reporting = None if once else self.start_component_reports()
        keep_alive, keeper = self._start_keep_alive()
        try:
            while not self.stopping:
                started = time.monotonic()
                result = "ok"
                try:
                    self.beat()  # copies starting together may race to create the table
                    idle = self.run_once()
                except Exception:  # noqa: BLE001 - one bad cycle must not end the agent
                    log.exception("%s: cycle failed", self.name)
                    idle, result = True, "error"
                self._count_cycle(time.monotonic() - started, result)
                if once:
                    break
                if idle:
                    self._stop.wait(self.period)
        finally:
            keep_alive.set()
            if keeper is not None:
                keeper.join(30)  # a touch in flight ends before the row is removed
            if listener is not None:
                listener.shutdown()
                listener.server_close()
            if reporting is not None:
                reporting.set()
            self._leave()
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()
            self._schema_ready = False
