"""The agent loop, written once: ``run_once()``, a graceful stop, a heartbeat row, ``--once``.

An agent is a class with a ``name`` and a :meth:`Agent.run_once` that does one cycle of work
and returns True when there is nothing more to do right now (the loop then sleeps ``period``
seconds) or False to run again at once. :meth:`Agent.run` loops until :meth:`Agent.stop` (or
SIGTERM/SIGINT through ``pilotwms agent``) and writes a heartbeat row per cycle in
``component_heartbeats``. Several copies of an agent can run: each sees its live peers
(heartbeat younger than three periods) and :meth:`Agent.mine` splits keys (job IDs, queue
names, ...) between them, so two copies never work on the same item at once; the work itself
still re-checks state in its transactions, so an overlap during a peer change is harmless.

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
from abc import ABC, abstractmethod
from datetime import timedelta
from typing import ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.config.schema import Config
from core.db import init_schema, make_engine, retry_conflicts, utcnow, write_transaction
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

    # -- the loop ----------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> None:
        """Loop until stopped (or one cycle with ``once``); a failing cycle is logged and the
        loop goes on after a period."""
        try:
            while not self.stopping:
                self.beat()
                try:
                    idle = self.run_once()
                except Exception:  # noqa: BLE001 - one bad cycle must not end the agent
                    log.exception("%s: cycle failed", self.name)
                    idle = True
                if once:
                    break
                if idle:
                    self._stop.wait(self.period)
        finally:
            self._leave()
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()
            self._schema_ready = False
