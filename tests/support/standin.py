"""Run a Tornado application in a thread on 127.0.0.1 and a free port (for REST stand-ins),
and run a stand-in's "payload" (a batch job, a VM's boot script) as a local process group."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback
from tornado.netutil import bind_sockets
from tornado.web import Application


class ThreadedApp:
    def __init__(self, app: Application, ssl_ctx: ssl.SSLContext | None = None,
                 tick: Callable[[], None] | None = None) -> None:
        """``tick`` is called every 0.1 s in the server's thread (time passing for it)."""
        self.app = app
        self.tick = tick
        self.ssl_ctx = ssl_ctx
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        sockets = bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]

        async def start() -> None:
            self._server = HTTPServer(self.app, ssl_options=self.ssl_ctx)
            self._server.add_sockets(sockets)
            if self.tick is not None:
                PeriodicCallback(self.tick, 100).start()

        loop.run_until_complete(start())
        self._ready.set()
        loop.run_forever()
        if self._server is not None:
            self._server.stop()
            loop.run_until_complete(self._server.close_all_connections())
        loop.close()

    def start(self) -> ThreadedApp:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("stand-in server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(30)


class Payload:
    """A script run as its own process group, output to files; killable as a whole."""

    def __init__(self, script: Path, cwd: Path, stdout: Path, stderr: Path | None,
                 env: dict[str, str]) -> None:
        script.chmod(0o700)
        out = stdout.open("ab")
        err = stderr.open("ab") if stderr is not None else subprocess.STDOUT
        self.proc = subprocess.Popen(  # noqa: S603 - the stand-in runs what it was given
            [str(script)], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=err, start_new_session=True, close_fds=True)
        out.close()
        if stderr is not None and not isinstance(err, int):
            err.close()
        self.started = time.monotonic()

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        """TERM the process group, wait up to 5 s, then KILL it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


def json_error(handler: Any, status: int, message: str) -> None:
    handler.set_status(status)
    handler.finish({"message": message, "code": status})
