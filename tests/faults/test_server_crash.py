"""``kill -9`` of server processes during bulk submission, matching, heartbeats and sandbox
uploads, then a restart: everything a client was told had been accepted is there and coherent,
and what a crash left half-way is repaired at start-up, not after the periodic sweep."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import sqlalchemy as sa

from core.cli.instance import Instance
from core.config.loader import load_config
from core.db import make_engine
from tests.faults.conftest import (
    PENDING,
    Load,
    Served,
    check_consistency,
    pending_jobs,
    server_config,
    wait_for,
)
from tests.support.credentials import Creds
from tests.support.mariadb import fresh_database
from tests.support.servers import ThreadedServer
from wms.db.tables import jobs
from wms.logic.submission import DEFAULT_LIMITS, Submitter, confirm_bulk, submit
from wms.service.job_manager import JobManagerService


def _progress(load: Load, what: str, more: int = 3, timeout: float = 180.0) -> None:
    """Wait until the load has had ``more`` jobs accepted and matched again."""
    accepted, matched = len(load.accepted), len(load.matched)
    wait_for(lambda: len(load.accepted) >= accepted + more
             and len(load.matched) >= matched + 1, timeout, what)


def test_kill9_of_workers_and_server_under_load(instance: Instance, creds: Creds,
                                                mariadb_admin_url: str, tmp_path: Path) -> None:
    with fresh_database(mariadb_admin_url) as url:
        config = server_config(instance, url, tmp_path)
        served = Served(config, processes=2, base=tmp_path).start()
        load = Load(lambda: served.url, creds).start()
        engine = make_engine(url)
        try:
            _progress(load, "the first accepted and matched jobs", more=10)
            wait_for(lambda: load.uploads, 120, "a first sandbox upload")
            # one worker dies: the supervisor starts another, the other worker serves on
            victim = served.workers()[0]
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: len(served.workers()) == 2 and victim not in served.workers(),
                     60, "a new worker")
            _progress(load, "work after a worker was killed")
            # the whole server dies at once, and comes back
            uploads = len(load.uploads)
            served.kill()
            time.sleep(0.5)
            served.start()
            _progress(load, "work after the restart")
            wait_for(lambda: len(load.uploads) > uploads, 120, "an upload after the restart")
        finally:
            load.finish()
        try:
            # anything a crash left in Received/Checking moves on at once (the sweep would
            # take 20 s + 30 s of age)
            wait_for(lambda: not pending_jobs(engine), 15, "no job left Received/Checking")
            served.stop()
            figures = check_consistency(engine, load, tmp_path / "sandboxes")
        finally:
            served.stop()
            engine.dispose()
    assert 500 not in load.statuses, (load.statuses, (tmp_path / "serve-1.log").read_text())
    assert figures["accepted"] >= 20 and figures["matched"] >= 3, figures
    print(f"\nkill -9 under load: {figures}, HTTP {dict(load.statuses)}, "
          f"connection errors {dict(load.errors)}, refused {dict(load.refused)}")


def test_startup_repairs_what_a_crash_left(instance: Instance, tmp_path: Path) -> None:
    """Jobs a crash left between two transactions (a bulk confirmation committed, its
    optimisation not; a single job stored Received by an old server) are Waiting within
    seconds of the start, although they are younger than the sweep's 30 s age limit."""
    url = f"sqlite:///{tmp_path / 'wms.db'}"
    config_path = server_config(instance, url, tmp_path)
    engine = make_engine(url)
    who = Submitter("alice", "demo_user", "demo")
    bulk = submit(engine, '[Executable = "/bin/echo"; Parameters = {"x","y","z"};]', who,
                  DEFAULT_LIMITS).job_ids
    assert confirm_bulk(engine, bulk) == bulk  # Received, the crash came before Waiting
    [single] = submit(engine, '[Executable = "/bin/true";]', who, DEFAULT_LIMITS).job_ids
    assert sorted(pending_jobs(engine)) == sorted([*bulk, single])
    started = time.monotonic()
    with ThreadedServer(load_config(config_path), [JobManagerService]):
        wait_for(lambda: not pending_jobs(engine), 10, "the start-up repair")
        took = time.monotonic() - started
    with engine.connect() as conn:
        states = dict(conn.execute(sa.select(jobs.c.job_id, jobs.c.status)).all())
    engine.dispose()
    assert {states[j] for j in [*bulk, single]} == {"Waiting"}, states
    assert took < JobManagerService.SWEEP_PERIOD, took
    assert not set(states.values()) & set(PENDING)
