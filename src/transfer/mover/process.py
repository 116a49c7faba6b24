"""The data mover process: register, heartbeat, take work, retrieve, store, report.

Threads: one sends heartbeats every ``HeartbeatSeconds`` with the leases in progress (the
server answers with the leases this mover no longer holds: those retrievals are cancelled);
one asks for work whenever a slot is free (``getWork(name, free slots)``; the server applies
the per-mover and per-source-host limits); ``Capacity`` workers retrieve, verify (size and,
when declared, adler32), store on the destination SE (verified again by the SE) and report.
The main thread serves synchronous pushes (:mod:`transfer.mover.receive`) when ``Listen`` is
set. SIGTERM/SIGINT: stop taking work, cancel what runs, tell the server (which requeues it
at once). A mover killed outright is declared dead by the server after
``MoverDeadAfterSeconds`` and its files go to the other movers.

Example::

    mover = Mover(load_mover_config(Path("mover.yaml")))
    mover.run()          # until SIGTERM
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.exceptions import NotFoundError, PilotWMSError
from core.rpc.client import Credentials, RPCClient
from dms.storage import StorageElements
from dms.storage.base import FileInfo, normalise_checksum
from transfer.errors import TransferChecksumError, TransferError
from transfer.mover.config import MoverConfig
from transfer.mover.retrieve import RetrievalCancelledError, SourceConnections

log = logging.getLogger("pilotwms.mover")
SERVICE = "Transfer/DataPush"


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class Task:
    work: dict[str, Any]
    cancel: threading.Event = field(default_factory=threading.Event)
    bytes: int = 0


class Mover:
    def __init__(self, cfg: MoverConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.credentials = Credentials(cert=cfg.host_cert, key=cfg.host_key) \
            if cfg.host_cert else None
        self.ca_dir = str(cfg.ca_dir) if cfg.ca_dir else None
        self._local = threading.local()
        self.tasks: dict[str, Task] = {}
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.workers = ThreadPoolExecutor(max_workers=cfg.capacity,
                                          thread_name_prefix="retrieve")
        self.sources = SourceConnections(cfg)
        self._ses: StorageElements | None = None
        self.url = ""
        cfg.work_dir.mkdir(parents=True, exist_ok=True)

    # -- server calls ----------------------------------------------------------------------

    def rpc(self, service: str = SERVICE) -> RPCClient:
        """A client per thread (a requests session is not shared between threads)."""
        clients = getattr(self._local, "clients", None)
        if clients is None:
            clients = self._local.clients = {}
        if service not in clients:
            clients[service] = RPCClient(service, urls=self.cfg.urls,
                                         credentials=self.credentials, ca_dir=self.ca_dir,
                                         timeout=(10.0, 120.0))
        client: RPCClient = clients[service]
        return client

    def storage_elements(self) -> StorageElements:
        if self._ses is None:
            wire = self.rpc("DataManagement/StorageElement").call("getStorageElements")
            self._ses = StorageElements.from_wire(wire, credentials=self.credentials,
                                                  ca_dir=self.ca_dir)
        return self._ses

    def register(self) -> None:
        self.rpc().call("registerMover", self.name, self.url, self.cfg.capacity)
        log.info("mover %s registered with capacity %d%s", self.name, self.cfg.capacity,
                 f", pushes at {self.url}" if self.url else "")

    # -- the work --------------------------------------------------------------------------

    def add(self, task: Task) -> bool:
        with self._lock:
            if len(self.tasks) >= self.cfg.capacity:
                return False
            self.tasks[task.work["Lease"]] = task
            return True

    def done(self, lease: str) -> None:
        with self._lock:
            self.tasks.pop(lease, None)
        self.wake.set()

    def swap(self, lease: str, task: Task) -> None:
        """Replace a finished task by the next one in the same slot (atomically)."""
        with self._lock:
            self.tasks.pop(lease, None)
            self.tasks[task.work["Lease"]] = task

    def free_slots(self) -> int:
        with self._lock:
            return self.cfg.capacity - len(self.tasks)

    def store(self, work: dict[str, Any], local: Path, info: FileInfo) -> str:
        """Put a received file on its SE (verified by the SE); its location."""
        store = work["Store"]
        self.storage_elements()[store["SE"]].put(store["LFN"], local, checksum=info.checksum)
        return f"{store['SE']}:{store['LFN']}"

    def verify(self, work: dict[str, Any], info: FileInfo) -> None:
        if work.get("Size") is not None and info.size != int(work["Size"]):
            raise TransferChecksumError(f"{work['Path']}: {info.size} bytes, "
                                        f"expected {work['Size']}")
        if work.get("Checksum") and normalise_checksum(work["Checksum"]) != info.checksum:
            raise TransferChecksumError(f"{work['Path']}: adler32 {info.checksum}, "
                                        f"expected {work['Checksum']}")

    def report(self, work: dict[str, Any], result: dict[str, Any], *,
               more: bool = False) -> list[dict[str, Any]]:
        """Report a result; with ``more``, ask for one more file in the same call (the slot
        this one frees) and return it."""
        try:
            reply = self.rpc().call("reportResult", self.name, work["Lease"], result,
                                    1 if more and not self.stopping.is_set() else 0)
            log.info("data file %s: %s", work["FileID"], reply["Status"])
            return list(reply.get("Work") or [])
        except NotFoundError:
            log.warning("data file %s: no longer ours, result dropped", work["FileID"])
        except PilotWMSError as exc:
            log.error("data file %s: cannot report (%s)", work["FileID"], exc.message)
        return []

    def retrieve(self, task: Task) -> None:
        """Work on ``task``, then on the files the server hands back with each report (the
        slot stays with this worker while there is work)."""
        while True:
            tmp = self.cfg.work_dir / f".{task.work['Lease']}.part"
            following: list[dict[str, Any]] = []
            try:
                result = self._attempt(task, tmp)
                if result is not None and not task.cancel.is_set():
                    following = self.report(task.work, result, more=True)
            finally:
                tmp.unlink(missing_ok=True)
                if following:  # the slot goes straight to the next file, never freed
                    nxt = Task(following[0])
                    self.swap(task.work["Lease"], nxt)
                else:
                    self.done(task.work["Lease"])
            if not following:
                return
            task = nxt

    def _attempt(self, task: Task, tmp: Path) -> dict[str, Any] | None:
        """Retrieve, verify, store; the result to report (None: cancelled)."""
        work = task.work
        started = now_us()
        try:
            info = self.sources.retrieve(work["SourceHost"], work["User"], work["Path"], tmp,
                                         cancel=task.cancel, ca_dir=self.ca_dir,
                                         progress=lambda n: setattr(task, "bytes", n))
            ended = now_us()
            self.verify(work, info)
            location = self.store(work, tmp, info)
        except RetrievalCancelledError:
            log.info("data file %s: retrieval cancelled", work["FileID"])
            return None
        except TransferError as exc:
            return {"OK": False, "Error": exc.message, "Permanent": exc.permanent,
                    "Started": started, "Ended": now_us()}
        except PilotWMSError as exc:  # storing failed
            return {"OK": False, "Error": f"store: {exc.message}", "Permanent": False,
                    "Started": started, "Ended": now_us()}
        except Exception as exc:  # noqa: BLE001 - reported, never silently lost
            log.exception("data file %s: unexpected failure", work["FileID"])
            return {"OK": False, "Error": f"mover error: {type(exc).__name__}",
                    "Started": started, "Ended": now_us()}
        return {"OK": True, "Location": location, "Started": started, "Ended": ended}

    # -- loops -----------------------------------------------------------------------------

    def heartbeat_loop(self) -> None:
        while not self.stopping.wait(self.cfg.heartbeat_seconds):
            with self._lock:
                progress = {lease: task.bytes for lease, task in self.tasks.items()}
            try:
                revoked = self.rpc().call("moverHeartbeat", self.name, progress)["Revoked"]
            except NotFoundError:
                log.warning("the server forgot this mover: registering again")
                self._safe(self.register)
                continue
            except PilotWMSError as exc:
                log.warning("heartbeat failed: %s", exc.message)
                continue
            for lease in revoked:
                with self._lock:
                    task = self.tasks.get(lease)
                if task is not None:
                    log.warning("data file %s was given to another mover: stopping",
                                task.work["FileID"])
                    task.cancel.set()

    def work_loop(self) -> None:
        while not self.stopping.is_set():
            free = self.free_slots()
            got: list[dict[str, Any]] = []
            if free > 0:
                try:
                    got = self.rpc().call("getWork", self.name, free)
                except NotFoundError:
                    self._safe(self.register)
                except PilotWMSError as exc:
                    log.warning("getWork failed: %s", exc.message)
            for work in got:
                task = Task(work)
                if self.add(task):
                    self.workers.submit(self.retrieve, task)
            self.wake.clear()
            if not got or self.free_slots() == 0:
                self.wake.wait(self.cfg.poll_seconds)

    def _safe(self, func: Any) -> None:
        try:
            func()
        except PilotWMSError as exc:
            log.warning("%s failed: %s", getattr(func, "__name__", func), exc.message)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        with self._lock:
            for task in self.tasks.values():
                task.cancel.set()

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT."""
        from transfer.mover.receive import make_server

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        server = None
        if self.cfg.listen is not None:
            server, port = make_server(self)
            host = self.cfg.listen.host
            shown = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104
            self.url = self.cfg.public_url or f"https://{shown}:{port}"
        while True:
            try:
                self.register()
                break
            except PilotWMSError as exc:
                log.warning("cannot register (%s): retrying", exc.message)
                if self.stopping.wait(self.cfg.poll_seconds):
                    return
        threads = [threading.Thread(target=self.heartbeat_loop, name="heartbeat", daemon=True),
                   threading.Thread(target=self.work_loop, name="work", daemon=True)]
        for thread in threads:
            thread.start()

        def on_signal(*_: Any) -> None:
            self.stop()
            loop.call_soon_threadsafe(loop.stop)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        print(f"mover {self.name} ready (pid {os.getpid()}, {socket.gethostname()}"
              f"{', ' + self.url if self.url else ''})", flush=True)
        try:
            loop.run_forever()
        finally:
            self.stop()
            if server is not None:
                server.stop()
            self.workers.shutdown(wait=True, cancel_futures=True)
            try:
                self.rpc().call("unregisterMover", self.name)
            except PilotWMSError as exc:
                log.warning("could not unregister: %s", exc.message)
            self.sources.close()
            loop.close()
