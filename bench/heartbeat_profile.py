"""Where the server's CPU goes under ``sendHeartBeat``/``sendHeartBeats`` calls: the
harness of ``bench/heartbeats.py --profile`` (run it from there).

Usage::

    python bench/heartbeats.py --profile --bulk 100 [--profile-mariadb --driver mysqldb]
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.heartbeats import _https, make_jobs
from core.db import make_engine
from wms.logic import reports


def profile_server(calls: int, clients: int, base: Path, *, bulk: int = 1,
                   database: str | None = None, top: int = 18,
                   sort: str = "tottime") -> list[str]:
    """Where ``sendHeartBeat`` (``bulk`` 1) or ``sendHeartBeats`` of ``bulk`` jobs spends the
    server's CPU: a one-process server in a thread of this process (SQLite unless
    ``database``), its IOLoop thread and its write-behind flusher thread each under cProfile
    (thread CPU time), driven by ``clients`` kept-alive connections from this process's main
    thread. Printed: CPU per heartbeat of each thread, and their top functions."""
    import cProfile
    import io
    import pstats
    import threading

    from tests.support.servers import ThreadedServer

    from bench.load_server import prepare
    from core.security.tokens import TokenIssuer
    from wms.service import job_state_update

    config_path, config, _ = prepare(base, users=1, shares=(70, 30), processes=1,
                                     database=database or f"sqlite:///{base / 'profile.db'}")
    assert config.auth.signing is not None
    token = TokenIssuer(config.auth.signing).issue("pilot", group="demo_pilot", vo="demo",
                                                   lifetime=3600)
    engine = make_engine(str(config.database))
    ids = make_jobs(engine, max(1000, clients * bulk))
    profiler = cProfile.Profile(time.thread_time)  # CPU of the IOLoop thread, not waits
    flusher = cProfile.Profile(time.thread_time)  # CPU of the flusher thread
    flushing = {"on": False, "profile": False, "cpu": 0.0, "flushes": 0}
    apply_reports = reports.apply_reports

    def measured_apply(*args: Any, **kwargs: Any) -> Any:
        if not flushing["on"]:
            return apply_reports(*args, **kwargs)
        began = time.thread_time()
        if flushing["profile"]:
            flusher.enable()
        try:
            return apply_reports(*args, **kwargs)
        finally:
            if flushing["profile"]:
                flusher.disable()
            flushing["cpu"] += time.thread_time() - began
            flushing["flushes"] += 1

    job_state_update.reports.apply_reports = measured_apply  # type: ignore[assignment]
    lines: list[str] = []
    try:
        with ThreadedServer(config, [job_state_update.JobStateUpdateService]) as server:
            assert server._loop is not None
            loop = server._loop
            switched = threading.Event()
            spent: dict[str, float] = {}
            ca = config.server.ca_dir or base

            def enable(profile: bool) -> None:
                spent["cpu0"] = time.thread_time()
                flushing.update(on=True, profile=profile, cpu=0.0, flushes=0)
                if profile:
                    profiler.enable()
                switched.set()

            def disable() -> None:
                profiler.disable()
                spent["cpu"] = time.thread_time() - spent["cpu0"]
                switched.set()

            def run(profile: bool) -> None:
                switched.clear()
                loop.call_soon_threadsafe(enable, profile)
                switched.wait(10)
                switched.clear()
                got = asyncio.run(_https(server.port, ca, token, ids, clients=clients,
                                         seconds=calls / clients / 200 if bulk == 1 else 4.0,
                                         bulk=bulk))
                loop.call_soon_threadsafe(disable)
                switched.wait(10)
                time.sleep(0.5)  # the last flush ends
                flushing["on"] = False
                done, beats = max(got["calls"], 1), max(got["beats"], 1)
                method = "sendHeartBeat" if bulk == 1 else f"sendHeartBeats x{beats // done}"
                lines.append(
                    f"  {method}, {done} calls, {beats} heartbeats, errors {got['errors']}"
                    f" ({'profiled' if profile else 'no profiler'}): IOLoop thread CPU "
                    f"{spent['cpu'] / done * 1e3:.2f} ms per call, "
                    f"{spent['cpu'] / beats * 1e6:.0f} us per heartbeat; flusher thread "
                    f"{flushing['cpu'] / beats * 1e6:.0f} us per heartbeat "
                    f"({flushing['flushes']} flushes)")

            asyncio.run(_https(server.port, ca, token, ids, clients=clients, seconds=1.0,
                               bulk=bulk))  # connections and caches warm
            run(profile=False)
            run(profile=True)
    finally:
        job_state_update.reports.apply_reports = apply_reports  # type: ignore[assignment]
    engine.dispose()
    for label, prof in (("IOLoop thread", profiler), ("flusher thread", flusher)):
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats(sort).print_stats(top)
        lines.append(f"  {label}, top functions by {sort}:")
        lines += ["    " + line for line in out.getvalue().splitlines() if line.strip()][4:]
    return lines
