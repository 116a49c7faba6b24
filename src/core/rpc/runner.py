"""Run services: one process, or N worker processes sharing one listening port.

The listening sockets are bound before forking: one socket per worker on the same port with
``SO_REUSEPORT``, so the kernel spreads new connections evenly over the workers (a single shared
socket lets whichever worker wakes first take everything). Each worker then builds its own
context (engines, thread pool) so nothing crosses a ``fork``. The parent supervises: it
restarts a worker that dies unexpectedly and forwards SIGTERM/SIGINT to all workers for a
graceful stop (in-flight requests finish, new connections are refused).

Services are found through the ``pilotwms.services`` entry points (``"System/Service" =
module:Class``), so ``core`` never imports the systems built on it.

Example::

    pilotwms serve --config /srv/pilotwms/config.yaml --processes 4
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any

from tornado.netutil import bind_sockets

from core import metrics
from core.auth.tables import SYSTEM as AUTH_SYSTEM
from core.config.schema import Config
from core.exceptions import ConfigError
from core.faults import wait_for_databases
from core.rpc.context import ServerContext
from core.rpc.server import make_http_server
from core.rpc.service import Service

log = logging.getLogger("pilotwms.serve")

ENTRY_POINT_GROUP = "pilotwms.services"


def available_services() -> dict[str, type[Service]]:
    """Every installed service class, by ``System/Service``."""
    found: dict[str, type[Service]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Service)):
            raise ConfigError(f"entry point {ep.name} is not a Service class")
        found[cls.path()] = cls
    return found


def select_services(config: Config,
                    available: dict[str, type[Service]] | None = None) -> list[type[Service]]:
    """The services named in ``Server.Services`` (all available ones when empty)."""
    available = available_services() if available is None else available
    wanted = config.server.services or sorted(available)
    missing = [name for name in wanted if name not in available]
    if missing:
        raise ConfigError(
            f"Server.Services: unknown service(s) {', '.join(missing)}; "
            f"available: {', '.join(sorted(available))}"
        )
    return [available[name] for name in wanted]


def database_urls(config: Config, services: Iterable[type[Service]]) -> list[str]:
    """The databases the services (and the login server's revocation list) use."""
    systems = [cls.system for cls in services]
    if config.auth.server is not None:
        systems.append(AUTH_SYSTEM)
    urls = []
    for system in dict.fromkeys(systems):
        try:
            urls.append(config.database_url(system))
        except ConfigError:
            continue  # a service without a database (Framework/Registry)
    return list(dict.fromkeys(urls))


async def _worker_main(config: Config, services: list[type[Service]],
                       sockets: list[socket.socket], tls: bool) -> None:
    ctx = ServerContext(config)
    server = make_http_server(ctx, services, tls=tls)
    # what start-up built (modules, tables, statements, settings) lives as long as the process:
    # out of the collector's sight, a full collection no longer walks ~80,000 objects, which
    # cost a page of 10,000 records 25 ms of every 50 (docs/performance/search.md)
    gc.collect()
    gc.freeze()
    server.add_sockets(sockets)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()
    # queued work (write-behind reports) is written while its requests can still be answered
    await asyncio.to_thread(ctx.stop_services)
    try:
        await asyncio.wait_for(server.close_all_connections(), timeout=10)
    finally:
        ctx.close()


def _run_worker(config: Config, services: list[type[Service]], sockets: list[socket.socket],
                tls: bool) -> None:
    asyncio.run(_worker_main(config, services, sockets, tls))


def serve(
    config: Config,
    services: Iterable[type[Service]],
    *,
    processes: int | None = None,
    tls: bool = True,
    on_listening: Callable[[str], Any] | None = None,
) -> None:
    """Bind ``Server.Host:Server.Port`` and serve until SIGTERM/SIGINT."""
    services = list(services)
    wait_for_databases(database_urls(config, services),
                       timeout=config.server.database_wait_seconds)
    count = config.server.processes if processes is None else processes
    if count == 0:
        count = os.cpu_count() or 1
    reuse = count > 1
    sockets = bind_sockets(config.server.port, config.server.host, reuse_port=reuse)
    port = sockets[0].getsockname()[1]
    per_worker = [sockets] + [bind_sockets(port, config.server.host, reuse_port=True)
                              for _ in range(count - 1)]
    scheme = "https" if tls else "http"
    host = config.server.host
    shown = f"[{host}]" if ":" in host else host
    url = f"{scheme}://{shown}:{port}"
    message = f"pilotwms serving {len(services)} service(s) at {url} with {count} process(es)"
    if on_listening is not None:
        on_listening(url)
    print(message, flush=True)
    if count == 1:
        _run_worker(config, services, sockets, tls)
        return
    # one Prometheus view of all workers: shared memory-mapped value files (core.metrics)
    metrics_dir = metrics.setup_multiprocess()

    def work(slot: int) -> None:
        for index, group in enumerate(per_worker):
            if index != slot:
                for sock in group:
                    sock.close()
        _run_worker(config, services, per_worker[slot], tls)

    try:
        _supervise(count, work)
    finally:
        metrics.cleanup_multiprocess(metrics_dir)


def _supervise(count: int, work: Callable[[int], None]) -> None:
    children: dict[int, tuple[int, float]] = {}
    stopping = False

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                work(slot)
            except BaseException:  # noqa: BLE001 - report anything, then leave the child
                log.exception("worker failed")
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = (slot, time.monotonic())

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for slot in range(count):
        spawn(slot)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        entry = children.pop(pid, None)
        metrics.worker_exited(pid)
        if entry is None or stopping:
            continue
        slot, started = entry
        log.error("worker %d exited with status %d; restarting", pid, status)
        if time.monotonic() - started < 1:
            time.sleep(1)  # do not spin on a worker that cannot start
        spawn(slot)
