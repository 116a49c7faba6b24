"""A pilotwms server running in a thread of the test process, on 127.0.0.1 and a free port.

In-process servers start in milliseconds and let tests host their own test services; the
multi-process and end-to-end tests run ``pilotwms serve`` as a real subprocess instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from core.config.schema import Config
from core.rpc.context import ServerContext
from core.rpc.server import make_http_server
from core.rpc.service import Service


class ThreadedServer:
    def __init__(self, config: Config, services: Iterable[type[Service]], *,
                 tls: bool = True, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.services = list(services)
        self.tls = tls
        self.host = host
        self.ctx: ServerContext | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.port = port

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self.ctx = ServerContext(self.config)
            sockets = bind_sockets(self.port, self.host)
            self.port = sockets[0].getsockname()[1]

            async def start() -> None:
                self._server = make_http_server(self.ctx, self.services, tls=self.tls)  # type: ignore[arg-type]
                self._server.add_sockets(sockets)

            loop.run_until_complete(start())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._shutdown())
        loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()

    def start(self) -> ThreadedServer:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(30)
        if self.ctx is not None:
            self.ctx.close()

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
