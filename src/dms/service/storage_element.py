"""``DataManagement/StorageElement``: pilotwms's own HTTPS disk storage elements.

Serves every SE of ``Resources.StorageElements`` that has an ``HTTPS`` protocol, storing its
files under that protocol's ``Path`` on this server. Data moves on streaming routes, never
held whole in memory:

* ``PUT  /DataManagement/StorageElement/file/<SE>/<lfn>``: the body is the file, written to a
  temp file and hashed (adler32) chunk by chunk; the header ``X-Checksum-Adler32`` (required)
  and ``Content-Length`` are checked before the file becomes visible (a mismatch leaves
  nothing). Reply: the envelope with ``{"Size": n, "Checksum": "..."}``.
* ``GET  .../file/<SE>/<lfn>``: the file, streamed in 1 MiB chunks, with its length.
* RPC (``POST /DataManagement/StorageElement``): ``getStorageElements()`` (the SE and site
  configuration clients build their plugins from), ``checkUpload(se, lfn, size)`` (asked
  before a PUT, so that a refusal comes with its reason), ``getFileInfo(se, lfns)`` and
  ``removeFile(se, lfns)`` (bulk, DIRAC's Successful/Failed), ``listDirectory(se, path)``.

Paths are confined under the SE's directory; rights are :func:`dms.logic.se_store.may_read` /
:func:`~dms.logic.se_store.may_write` (X509 or token identities alike). Refusals are the usual
envelope at HTTP 401; a missing file 404 on GET; an over-size upload 413.

Example (a client, see :mod:`dms.storage.https`)::

    se = HTTPSStorage("DEMO-DISK", host="127.0.0.1", port=8443, credentials=..., ca_dir=...)
    se.put("/demo/user/a/alice/f1", Path("f1"))
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import tornado.web

from core.exceptions import (
    InvalidArgumentError,
    NotAuthenticatedError,
    NotAuthorizedError,
    NotFoundError,
    PilotWMSError,
)
from core.rpc.context import ServerContext
from core.rpc.jencode import encode
from core.rpc.server import HostedService
from core.rpc.service import Call, Service, rpc_method
from core.rpc.streaming import StreamingUploadHandler
from core.security.identity import Identity
from dms.logic import se_store
from dms.paths import normalise_lfn
from dms.service.file_catalog import catalog_settings, requester_of
from dms.storage.base import CHUNK, FileTooBigError, StorageFileNotFoundError

SYSTEM = "DataManagement"
T = TypeVar("T")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
CHECKSUM_HEADER = "X-Checksum-Adler32"


class DiskSE:
    """One HTTPS SE as this server sees it."""

    def __init__(self, name: str, base: Path, max_bytes: int, vos: list[str]) -> None:
        self.name, self.base, self.max_bytes, self.vos = name, base, max_bytes, vos


class StorageElementService(Service):
    system = SYSTEM
    name = "StorageElement"

    def __init__(self, ctx: ServerContext) -> None:
        super().__init__(ctx)
        self.ses: dict[str, DiskSE] = {}
        for se_name, se in ctx.config.resources.storage_elements.items():
            for proto in se.protocols:
                if proto.plugin == "HTTPS":
                    self.ses[se_name] = DiskSE(se_name, Path(proto.path),
                                               proto.max_file_size_mib * 1024 * 1024, se.vos)
                    break
        self.catalog_settings = catalog_settings(ctx)

    def disk_se(self, name: str) -> DiskSE:
        se = self.ses.get(name)
        if se is None:
            raise NotFoundError(f"{name} is not an HTTPS storage element of this server")
        return se

    def check(self, ident: Identity, se: DiskSE, lfn: str, write: bool) -> None:
        """Blocking (a read asks the catalog): call it from the executor."""
        rule = se_store.may_write if write else se_store.may_read
        if not rule(ident, lfn, se.vos):
            if not ident.authenticated:
                raise NotAuthenticatedError("storage access needs a registered identity")
            raise NotAuthorizedError(
                f"{ident.username}@{ident.group} may not {'write' if write else 'read'} "
                f"{lfn} on {se.name}")
        if write or ident.properties & se_store.SUPER_PROPERTIES:
            return
        try:
            clean = normalise_lfn(lfn)
        except ValueError:
            return  # refused by confined() with the reason
        why = se_store.catalog_read_check(
            self.ctx.engine(SYSTEM), requester_of(ident, self.catalog_settings, self.ctx), clean)
        if why is not None:
            raise NotAuthorizedError(f"{ident.username}@{ident.group} may not read {lfn} on "
                                     f"{se.name}: {why}")

    @rpc_method("getStorageElements")
    def get_storage_elements(self, call: Call) -> dict[str, Any]:
        resources = self.ctx.config.resources
        return {
            "StorageElements": {name: se.model_dump(by_alias=True, exclude_none=True)
                                for name, se in resources.storage_elements.items()},
            "Sites": {name: list(site.ses) for name, site in resources.sites.items()},
        }

    def _bulk(self, call: Call, se_name: str, lfns: list | str, write: bool,
              action: Callable[[Path, str], Any]) -> dict[str, Any]:
        se = self.disk_se(se_name)
        items = [lfns] if isinstance(lfns, str) else lfns
        ok: dict[str, Any] = {}
        failed: dict[str, str] = {}
        for lfn in items:
            try:
                if not isinstance(lfn, str):
                    raise InvalidArgumentError(f"not a path: {lfn!r}")
                self.check(call.identity, se, lfn, write)
                ok[lfn] = action(se.base, lfn)
            except PilotWMSError as exc:
                failed[str(lfn)] = exc.message
        return {"Successful": ok, "Failed": failed}

    @rpc_method("checkUpload")
    def check_upload(self, call: Call, se_name: str, lfn: str, size: int) -> bool:
        """Would a PUT of ``size`` bytes at ``lfn`` be accepted? Clients ask first: a refused
        PUT is answered before its body is read, which a client still sending a large body
        sees as a broken connection rather than as the reason."""
        se = self.disk_se(se_name)
        self.check(call.identity, se, lfn, True)
        se_store.confined(se.base, lfn)
        if se.max_bytes and size > se.max_bytes:
            raise FileTooBigError(f"file of {size} bytes is over the SE's limit of "
                                  f"{se.max_bytes} bytes")
        return True

    @rpc_method("getFileInfo")
    def get_file_info(self, call: Call, se_name: str, lfns: list | str) -> dict[str, Any]:
        def info(base: Path, lfn: str) -> dict[str, Any]:
            found = se_store.stat(base, lfn)
            return {"Size": found.size, "Checksum": found.checksum}
        return self._bulk(call, se_name, lfns, False, info)

    @rpc_method("removeFile")
    def remove_file(self, call: Call, se_name: str, lfns: list | str) -> dict[str, Any]:
        """Successful maps each LFN to True (removed) or False (was not there)."""
        return self._bulk(call, se_name, lfns, True, se_store.remove)

    @rpc_method("listDirectory")
    def list_directory(self, call: Call, se_name: str, path: str) -> list[dict[str, Any]]:
        se = self.disk_se(se_name)
        self.check(call.identity, se, path, False)
        return [{"Name": e.name, "Size": e.size, "Directory": e.is_dir}
                for e in se_store.listing(se.base, path)]

    def extra_routes(self, hosted: HostedService, balancers: Sequence[Network]) -> list[Any]:
        return [(rf"/{self.path()}/file/([^/]+)(/.*)", SEFileHandler,
                 {"hosted": hosted, "ctx": self.ctx, "balancers": balancers})]


@tornado.web.stream_request_body
class SEFileHandler(StreamingUploadHandler):
    """GET/PUT of one file; the body of a PUT is streamed to disk through the executor."""

    SUPPORTED_METHODS = ("GET", "PUT")  # type: ignore[assignment]

    def initialize(self, hosted: HostedService, ctx: ServerContext,
                   balancers: Sequence[Network]) -> None:
        super().initialize(hosted, ctx, balancers)
        service = hosted.service
        assert isinstance(service, StorageElementService)  # noqa: S101 - wired by extra_routes
        self.store = service
        self.target: Path | None = None

    async def prepare(self) -> None:  # type: ignore[override] # tornado awaits it
        super().prepare()
        if self.request.method != "PUT":
            return  # checked in get(), once the (empty) body is read: the connection stays
        se_name, lfn = self.path_args
        se = self.store.disk_se(se_name)
        self.store.check(self.identify(), se, lfn, True)
        self.target = se_store.confined(se.base, lfn)
        length = self.request.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        limit = se.max_bytes or 1 << 50
        self.request.connection.set_max_body_size(limit + 1024 * 1024)  # type: ignore[union-attr]
        self.writer = await self.blocking(
            se_store.Writer, self.target, expected_size=expected,
            expected_checksum=self.request.headers.get(CHECKSUM_HEADER), max_bytes=se.max_bytes)

    async def put(self, _se: str, _lfn: str) -> None:
        writer: se_store.Writer = await self.take_writer()
        info = await self.blocking(writer.finish)
        self.set_header("Content-Type", "application/json")
        self.finish(encode({"OK": True, "Value": {"Size": info.size,
                                                  "Checksum": info.checksum}}))

    async def get(self, se_name: str, lfn: str) -> None:
        se = self.store.disk_se(se_name)
        await self.blocking(self.store.check, self.identify(), se, lfn, False)
        self.target = se_store.confined(se.base, lfn)
        try:
            stream: IO[bytes] = await self.blocking(open, self.target, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise StorageFileNotFoundError(f"no file {lfn}") from None
        try:
            size = os.fstat(stream.fileno()).st_size
            self.set_header("Content-Type", "application/octet-stream")
            self.set_header("Content-Length", str(size))
            while True:
                chunk = await self.blocking(stream.read, CHUNK)
                if not chunk:
                    break
                self.write(chunk)
                await self.flush()
        finally:
            await self.blocking(stream.close)
        self.finish()

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        exc = exc_info[1] if exc_info else None
        if isinstance(exc, FileTooBigError):
            status_code = 413
        elif isinstance(exc, NotFoundError) and self.request.method == "GET":
            status_code = 404
        super().send_error(status_code, **kwargs)
