"""The agent loop (core.agent): a copy busy with one long cycle stays alive to its peers,
and its heartbeat row goes when it stops; no keep-alive thread on an in-memory database."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from core.agent import Agent
from core.config.schema import Config
from core.db import make_engine
from core.tables import component_heartbeats


class Slow(Agent):
    """One cycle that lasts ``seconds`` (or until stopped)."""

    name = "Slow"
    seconds = 4.5

    def run_once(self) -> bool:
        self.running.set()
        self._stop.wait(self.seconds)
        return True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.running = threading.Event()


def test_a_long_cycle_keeps_the_copy_alive_to_its_peers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'framework.db'}"
    config = Config.model_validate({"Database": url})
    busy = Slow(config, instance="busy", period=0.05)
    peer = Slow(config, instance="peer", period=0.05)
    thread = threading.Thread(target=busy.run, daemon=True)
    thread.start()
    try:
        assert busy.running.wait(10)
        assert "Slow-keep-alive" in {t.name for t in threading.enumerate()}
        # live peers: heartbeat younger than 3 * max(period, 1 s) = 3 s; the busy copy's
        # cycle began with its only beat() more than 3 s ago
        time.sleep(4)
        assert peer.beat() == ["busy", "peer"]
    finally:
        busy.stop()
        thread.join(30)
    assert not thread.is_alive()
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(component_heartbeats.c.instance)).scalars().all()
    engine.dispose()
    assert rows == ["peer"]  # the stopped copy removed its row; the peer's is left


def test_no_keep_alive_thread_on_an_in_memory_database() -> None:
    """No peer can see an in-memory database, and its one connection is shared by the
    threads: a keep-alive transaction there would end the cycle's own."""
    agent = Slow(Config.model_validate({"Database": "sqlite://"}), instance="alone")
    agent.seconds = 0.2
    thread = threading.Thread(target=agent.run, kwargs={"once": True}, daemon=True)
    thread.start()
    try:
        assert agent.running.wait(10)
        assert "Slow-keep-alive" not in {t.name for t in threading.enumerate()}
    finally:
        thread.join(30)
    assert not thread.is_alive()
