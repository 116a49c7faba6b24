"""Streaming uploads: a request body written to disk piece by piece, never held whole.

:class:`StreamingUploadHandler` is the base of the upload routes (the sandbox store's PUT, the
storage element's PUT). Tornado hands the body over in 64 KiB pieces
(``@stream_request_body``); they are gathered up to :data:`CHUNK` (1 MiB) and written by the
server's executor, so memory per upload is bounded and the event loop never blocks on disk.
A subclass makes ``self.writer`` in ``prepare()`` (any object with ``write(bytes)`` and
``abort()``) and, in its ``put()``, calls :meth:`~StreamingUploadHandler.take_writer` and
finishes it. A refusal while writing (a :class:`~core.exceptions.PilotWMSError`, e.g. over the
size limit) is kept in ``self.failure``: the rest of the body is drained, then raised by
:meth:`take_writer`. Whatever ends the request early (error, client gone) aborts the writer,
which removes its partial file.

Example::

    @tornado.web.stream_request_body
    class Upload(StreamingUploadHandler):
        async def prepare(self):
            super().prepare()
            self.writer = await self.blocking(MyWriter, "/data/x")

        async def put(self):
            writer = await self.take_writer()
            await self.blocking(writer.finish)
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from core.exceptions import PilotWMSError, StorageFullError
from core.faults import service_error
from core.rpc.server import RPCHandler

T = TypeVar("T")
#: bytes gathered before one hop to the executor
CHUNK = 1024 * 1024


class Writer(Protocol):
    def write(self, data: bytes) -> Any: ...

    def abort(self) -> Any: ...


class StreamingUploadHandler(RPCHandler):
    """An RPC-style handler whose PUT body is streamed to ``self.writer``."""

    writer: Writer | None = None
    failure: PilotWMSError | None = None

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.writer = None
        self.failure = None
        self.pending = bytearray()

    async def blocking(self, func: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run ``func`` in the server's executor (disk and database work)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.ctx.executor,
                                          functools.partial(func, *args, **kw))

    async def data_received(self, chunk: bytes) -> None:
        if self.failure is not None or self.writer is None:
            return  # refused already (or not an upload): drain without storing
        self.pending += chunk
        if len(self.pending) >= CHUNK:
            await self._flush()

    async def _flush(self) -> None:
        data, self.pending = bytes(self.pending), bytearray()
        if not data or self.writer is None or self.failure is not None:
            return
        try:
            await self.blocking(self.writer.write, data)
        except Exception as exc:  # noqa: BLE001 - a full disk is refused, bugs are re-raised
            failure = service_error(exc)
            if failure is None:
                raise
            self.failure = failure
            self._release()

    async def take_writer(self) -> Any:
        """The writer with the whole body written (raises the refusal met on the way); the
        handler no longer aborts it."""
        await self._flush()
        if self.failure is not None:
            raise self.failure
        writer, self.writer = self.writer, None
        if writer is None:
            raise RuntimeError("no upload in progress")  # a subclass bug, not a client's
        return writer

    def _release(self) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            self.ctx.executor.submit(writer.abort)

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        if exc_info and isinstance(exc_info[1], StorageFullError):
            status_code = 507  # HTTP's "Insufficient Storage", same envelope
        super().send_error(status_code, **kwargs)

    def on_finish(self) -> None:
        self._release()
        super().on_finish()

    def on_connection_close(self) -> None:
        self._release()
        super().on_connection_close()
