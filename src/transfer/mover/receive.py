"""A mover's HTTPS endpoint for synchronous pushes: ``PUT /push/<ticket>``.

The ticket (from ``DataPush.pushSync``) is checked with the server (``acceptUpload``) before
the body is read; the body is streamed to a temp file (1 MiB per executor hop), hashed, its
size and adler32 compared with what the client declared, stored on the destination SE, and
reported. Only then does the client get ``{"OK": true, "Value": {"FileID": n, "Status":
"Done"}}``: the file is registered and stored. Any failure is reported to the server (the
data file fails) and answered with the usual error envelope.

Example::

    server, port = make_server(mover)   # inside the mover's event loop
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from core.exceptions import InvalidArgumentError, PilotWMSError
from core.rpc.jencode import encode
from dms.storage.base import CHUNK, Adler32, FileInfo, normalise_checksum
from transfer.errors import TransferChecksumError

if TYPE_CHECKING:
    from transfer.mover.process import Mover

log = logging.getLogger("pilotwms.mover.receive")
T = TypeVar("T")


@tornado.web.stream_request_body
class PushHandler(tornado.web.RequestHandler):
    SUPPORTED_METHODS = ("PUT",)

    def initialize(self, mover: Mover) -> None:
        self.mover = mover
        self.work: dict[str, Any] | None = None
        self.stream: IO[bytes] | None = None
        self.tmp: Path | None = None
        self.digest = Adler32()
        self.pending = bytearray()
        self.failure: PilotWMSError | None = None

    async def blocking(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(func, *args))

    async def prepare(self) -> None:
        ticket = self.path_args[0]
        work = await self.blocking(self.mover.rpc().call, "acceptUpload", self.mover.name,
                                   ticket)
        length = self.request.headers.get("Content-Length", "")
        if not length.isdigit() or int(length) != int(work["Size"]):
            raise InvalidArgumentError(f"Content-Length must be the announced {work['Size']}")
        self.request.connection.set_max_body_size(int(length) + 1)  # type: ignore[union-attr]
        self.work = work
        self.tmp = self.mover.cfg.work_dir / f".{work['FileID']}.push.part"
        self.stream = open(self.tmp, "wb")  # noqa: SIM115 - closed in on_finish
        from transfer.mover.process import Task

        if not self.mover.add(Task(work)):
            self.work = None
            raise InvalidArgumentError("this mover is busy: try again")

    async def data_received(self, chunk: bytes) -> None:
        if self.stream is None or self.failure is not None:
            return
        self.pending += chunk
        if len(self.pending) >= CHUNK:
            await self._flush()

    async def _flush(self) -> None:
        data, self.pending = bytes(self.pending), bytearray()
        if data and self.stream is not None:
            self.digest.update(data)
            await self.blocking(self.stream.write, data)

    async def put(self, _ticket: str) -> None:
        await self._flush()
        assert self.work is not None and self.stream is not None and self.tmp is not None  # noqa: S101
        work = self.work
        await self.blocking(self.stream.close)
        info = FileInfo(self.digest.size, self.digest.hexdigest())
        declared = self.request.headers.get("X-Checksum-Adler32")
        try:
            if declared and normalise_checksum(declared) != info.checksum:
                raise TransferChecksumError(f"received adler32 {info.checksum}, the client "
                                            f"declared {declared}")
            self.mover.verify(work, info)
            location = await self.blocking(self.mover.store, work, self.tmp, info)
        except PilotWMSError as exc:
            await self.blocking(self.mover.report, work, {"OK": False, "Error": exc.message,
                                                          "Permanent": True})
            raise
        reply = await self.blocking(self.mover.rpc().call, "reportResult", self.mover.name,
                                    work["Lease"], {"OK": True, "Location": location})
        self.set_header("Content-Type", "application/json")
        self.finish(encode({"OK": True, "Value": reply}))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        exc = exc_info[1] if exc_info else None
        self.set_header("Content-Type", "application/json")
        if isinstance(exc, PilotWMSError):
            self.set_status(exc.http_status if exc.http_status != 200 else 200)
            self.finish(encode({"OK": False, "Message": exc.wire_message(),
                                "Errno": exc.errno, "ExceptionClass": type(exc).__name__}))
            return
        self.finish(encode({"OK": False, "Message": f"mover error (HTTP {status_code})",
                            "Errno": 5}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, PilotWMSError):
            log.warning("push %s refused: %s", self.request.path, value.message)
        else:
            super().log_exception(typ, value, tb)

    def on_finish(self) -> None:
        self._cleanup()

    def on_connection_close(self) -> None:
        if self.work is not None and self.stream is not None and not self.stream.closed:
            work = self.work
            self.mover.workers.submit(self.mover.report, work, {
                "OK": False, "Error": "the client went away during the upload",
                "Permanent": True})
        self._cleanup()

    def _cleanup(self) -> None:
        if self.stream is not None and not self.stream.closed:
            self.stream.close()
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
        if self.work is not None:
            self.mover.done(self.work["Lease"])
            self.work = None


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """The access log line, without the ticket (a one-time credential)."""
    req = handler.request
    log.info("%d %s /push/... (%s) %.1f ms", handler.get_status(), req.method, req.remote_ip,
             1000.0 * req.request_time())


def make_server(mover: Mover) -> tuple[HTTPServer, int]:
    cfg = mover.cfg
    assert cfg.listen is not None  # noqa: S101 - the caller checks
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if cfg.host_cert is None:
        raise InvalidArgumentError("a mover that takes pushes needs HostCert/HostKey")
    context.load_cert_chain(str(cfg.host_cert), str(cfg.host_key or cfg.host_cert))
    app = tornado.web.Application([(r"/push/([A-Za-z0-9_-]{20,64})", PushHandler,
                                    {"mover": mover})], log_function=_log_request)
    server = HTTPServer(app, ssl_options=context, max_body_size=1 << 40)
    sockets = bind_sockets(cfg.listen.port, cfg.listen.host)
    server.add_sockets(sockets)
    return server, int(sockets[0].getsockname()[1])
