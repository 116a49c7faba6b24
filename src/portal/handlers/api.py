"""The page's calls: session, group, RPC to any service of this process, sandboxes, files.

* ``GET  /portal/api/session``: who is signed in (with the CSRF token the page must send
  back), their groups and the services this server hosts; or how to sign in.
* ``POST /portal/api/group`` (``group``): act in another of the user's groups.
* ``POST /portal/api/rpc/<System>/<Service>`` (form ``method``, ``args``): the service's RPC
  method with the user's identity, through the same handler code as ``POST /<System>/<Service>``
  (rules, argument checks, envelope).
* ``POST /portal/api/sandbox`` (multipart files): an input sandbox archive (``SB:`` URL).
* ``GET  /portal/api/jobs/<id>/sandbox/<Input|Output>``: a job's sandbox archive.
* ``GET|PUT /portal/api/se/<SE>/<lfn>``: a file of one of this server's disk storage
  elements, streamed; a PUT with ``?register=1`` also registers the new file in the catalog.

Every POST/PUT needs the session's CSRF token in ``X-CSRF-Token`` and a same-origin request.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import urllib.parse
import uuid
from typing import TYPE_CHECKING, Any

import tornado.web

from core.exceptions import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    PilotWMSError,
    SandboxTooBigError,
)
from core.rpc.server import RPCHandler
from dms.service.storage_element import SEFileHandler
from portal.handlers.base import PortalHandler
from portal.logic import sessions as sess
from portal.logic.identity import expiry_hint

if TYPE_CHECKING:
    from portal.service import PortalService

SANDBOX = "WorkloadManagement/SandboxStore"
CATALOG = "DataManagement/FileCatalog"
SE_SERVICE = "DataManagement/StorageElement"


class SessionHandler(PortalHandler):
    SUPPORTED_METHODS = ("GET",)  # type: ignore[assignment]

    async def get(self) -> None:
        portal = self.portal
        try:
            session = await self.begin(csrf=False)
        except PilotWMSError as exc:
            chain = self.chain_identity()
            self.reply_json({
                "signedIn": False, "reason": exc.message if self.get_cookie(
                    "__Host-pwms_session") else "",
                "tokenLogin": portal.token_login,
                "certificateLogin": portal.settings.certificate_login,
                "certificate": chain.dn if chain is not None and chain.valid_dn else None})
            return
        ident = self.portal_identity
        registry = self.ctx.authenticator.registry
        groups = sorted(name for name, conf in registry.config.groups.items()
                        if ident.username in conf.users)
        self.reply_json({
            "signedIn": True, "user": ident.username, "group": ident.group, "vo": ident.vo,
            "groups": groups, "properties": sorted(ident.properties), "dn": ident.dn,
            "kind": session.kind, "csrf": session.csrf, "expiresIn": expiry_hint(session),
            "services": portal.hosted_paths()})


class GroupHandler(PortalHandler):
    SUPPORTED_METHODS = ("POST",)  # type: ignore[assignment]

    async def post(self) -> None:
        session = await self.begin(csrf=True)
        group = self.get_body_argument("group", "")
        ident = self.portal_identity
        if not self.ctx.authenticator.registry.is_member(ident.username or "", group):
            raise InvalidArgumentError(f"{ident.username} is not a member of group {group!r}")
        if session.kind == "token":
            # a token names its group: sign in again for the other one (the identity
            # provider's session usually makes this a redirect or two)
            query = urllib.parse.urlencode({"group": group, "next": "#/jobs"})
            self.reply_json({"redirect": f"/portal/login?{query}"})
            return
        await self.blocking(sess.update_session, self.portal.engine, session, self.secret,
                            group=group)
        self.reply_json({"group": group})


class RPCGatewayHandler(PortalHandler):
    """``POST /portal/api/rpc/<System>/<Service>``: :class:`RPCHandler` with the session's
    identity (a service this process does not host is a 404 envelope)."""

    SUPPORTED_METHODS = ("POST",)  # type: ignore[assignment]

    async def prepare(self) -> None:  # type: ignore[override]
        super().prepare()
        await self.begin(csrf=True)

    async def post(self, system: str, service: str) -> None:  # type: ignore[override]
        hosted = self.ctx.hosted.get(f"{system}/{service}")
        if hosted is None:
            raise NotFoundError(f"{system}/{service} is not served by this server")
        self.hosted = hosted
        await RPCHandler.post(self)


class SandboxPackHandler(PortalHandler):
    """Multipart files -> one ``.tar.bz2`` input sandbox, stored as the user's."""

    SUPPORTED_METHODS = ("POST",)  # type: ignore[assignment]

    async def post(self) -> None:
        await self.begin(csrf=True)
        files = [f for items in self.request.files.values() for f in items]
        if not files:
            raise InvalidArgumentError("no file in the upload")
        limit = self.ctx.config.operations.max_sandbox_size_mib * 1024 * 1024
        if sum(len(f["body"]) for f in files) > limit:
            raise SandboxTooBigError(f"the input files are over the sandbox limit of "
                                     f"{limit // 2**20} MiB")
        url = await self.blocking(self._store, [(f["filename"], f["body"]) for f in files])
        self.reply_json(url)

    def _store(self, files: list[tuple[str, bytes]]) -> str:
        archive = pack_sandbox(files)
        name = f"{hashlib.md5(archive, usedforsecurity=False).hexdigest()}.tar.bz2"
        return str(self.portal.call(self.portal_identity, SANDBOX, "streamFromClient",
                                    [name, {}], None, len(archive), archive,
                                    request_id=self.request_id))


def pack_sandbox(files: list[tuple[str, bytes]]) -> bytes:
    """A ``.tar.bz2`` of (name, content) pairs; names are reduced to plain file names.

    >>> import tarfile, io
    >>> data = pack_sandbox([("../x/run.sh", b"echo hi"), ("in.txt", b"1")])
    >>> sorted(tarfile.open(fileobj=io.BytesIO(data)).getnames())
    ['in.txt', 'run.sh']
    """
    seen: set[str] = set()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:bz2") as tar:
        for name, body in files:
            base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
            if not base or base in (".", "..") or "\0" in base or len(base) > 255:
                raise InvalidArgumentError(f"bad input file name {name!r}")
            if base in seen:
                raise InvalidArgumentError(f"two input files are called {base!r}")
            seen.add(base)
            info = tarfile.TarInfo(base)
            info.size = len(body)
            info.mode = 0o755 if body.startswith(b"#!") else 0o644
            tar.addfile(info, io.BytesIO(body))
    return raw.getvalue()


class SandboxDownloadHandler(PortalHandler):
    SUPPORTED_METHODS = ("GET",)  # type: ignore[assignment]

    async def get(self, job_id: str, kind: str) -> None:
        await self.begin(csrf=False)
        data = await self.blocking(self._read, int(job_id), kind)
        self.set_header("Content-Type", "application/x-bzip2")
        self.set_header("Content-Disposition",
                        f'attachment; filename="job{int(job_id)}-{kind.lower()}.tar.bz2"')
        self.finish(data)

    def _read(self, job_id: int, kind: str) -> bytes:
        portal, ident = self.portal, self.portal_identity
        refs = portal.call(ident, SANDBOX, "getSandboxesAssignedToEntity", f"Job:{job_id}",
                           request_id=self.request_id)
        urls = refs.get(kind) or []
        if not urls:
            raise NotFoundError(f"job {job_id} has no {kind.lower()} sandbox (yet)")
        return bytes(portal.call(ident, SANDBOX, "streamToClient", urls[-1],
                                 request_id=self.request_id))


def _pfn(portal: PortalService, se_name: str, lfn: str) -> str:
    from dms.storage.base import se_relative

    se = portal.ctx.config.resources.storage_elements.get(se_name)
    proto = next((p for p in (se.protocols if se else []) if p.plugin == "HTTPS"), None)
    if proto is None:
        raise NotFoundError(f"{se_name} is not an HTTPS storage element")
    rel = urllib.parse.quote(se_relative(lfn))
    return (f"https://{proto.host}:{proto.port or 443}/{SE_SERVICE}/file/"
            f"{urllib.parse.quote(se_name)}/{rel}")


@tornado.web.stream_request_body
class SEFileGateway(PortalHandler, SEFileHandler):
    """The storage element's streaming GET/PUT with the session's identity; a PUT with
    ``register=1`` refuses an LFN the catalog knows before reading the body, and registers
    the file once stored (removing it again if the catalog refuses)."""

    SUPPORTED_METHODS = ("GET", "PUT")

    def initialize(self, portal: PortalService, **_: Any) -> None:  # type: ignore[override]
        self.missing = SE_SERVICE not in portal.ctx.hosted
        if self.missing:
            RPCHandler.initialize(self, None, portal.ctx, [])  # type: ignore[arg-type]
            self.portal = portal
            self.writer, self.failure, self.pending = None, None, bytearray()
            return
        PortalHandler.initialize(self, portal, SE_SERVICE)

    async def prepare(self) -> None:  # type: ignore[override]
        RPCHandler.prepare(self)
        if self.missing:
            raise NotFoundError("this server has no storage element service")
        await self.begin(csrf=self.request.method == "PUT")
        if self.request.method == "PUT" and self.get_argument("register", "") == "1":
            await self.blocking(self._check_new, self.path_args[1])
        await SEFileHandler.prepare(self)

    def _check_new(self, lfn: str) -> None:
        found = self.portal.call(self.portal_identity, CATALOG, "getFileMetadata", [lfn],
                                 request_id=self.request_id)
        if lfn in found.get("Successful", {}):
            raise AlreadyExistsError(f"{lfn} is registered already")

    async def put(self, se_name: str, lfn: str) -> None:
        writer = await self.take_writer()
        info = await self.blocking(writer.finish)
        value: dict[str, Any] = {"Size": info.size, "Checksum": info.checksum}
        if self.get_argument("register", "") == "1":
            await self.blocking(self._register, se_name, lfn, info.size, info.checksum)
            value["Registered"] = True
        self.reply_json(value)

    def _register(self, se_name: str, lfn: str, size: int, checksum: str) -> None:
        portal, ident = self.portal, self.portal_identity
        entry = {"PFN": _pfn(portal, se_name, lfn), "Size": size, "SE": se_name,
                 "GUID": str(uuid.uuid4()).upper(), "Checksum": checksum,
                 "ChecksumType": "Adler32"}
        result = portal.call(ident, CATALOG, "addFile", {lfn: entry},
                             request_id=self.request_id)
        failed = result.get("Failed", {})
        if lfn in failed:
            portal.call(ident, SE_SERVICE, "removeFile", se_name, [lfn],
                        request_id=self.request_id)
            raise InvalidArgumentError(f"the catalog refused {lfn}: {failed[lfn]}")

    async def get(self, se_name: str, lfn: str) -> None:
        name = lfn.rstrip("/").rsplit("/", 1)[-1] or "file"
        quoted = urllib.parse.quote(name, safe="")
        self.set_header("Content-Disposition", f"attachment; filename*=UTF-8''{quoted}")
        await SEFileHandler.get(self, se_name, lfn)


def routes(portal: PortalService) -> list[Any]:
    kw = {"portal": portal}
    return [
        (r"/portal/api/session", SessionHandler, kw),
        (r"/portal/api/group", GroupHandler, kw),
        (r"/portal/api/rpc/([A-Za-z]+)/([A-Za-z]+)", RPCGatewayHandler, kw),
        (r"/portal/api/sandbox", SandboxPackHandler, kw),
        (r"/portal/api/jobs/([0-9]+)/sandbox/(Input|Output)", SandboxDownloadHandler, kw),
        (r"/portal/api/se/([^/]+)(/.*)", SEFileGateway, kw),
    ]
