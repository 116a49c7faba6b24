"""``WorkloadManagement/SandboxStore``: DIRAC's sandbox service, plus a streaming upload.

RPC methods (DIRAC's names and arguments):

* ``streamFromClient([name, assignTo], token, size, data)``: ``name`` is ``<md5>.<ext>``,
  ``data`` the archive (b64 bytes in JEncode); returns ``SB:<SEName>|<path>``. ``assignTo``
  (``{"Job:1": "Input"}``) assigns the new sandbox at once.
* ``streamToClient(fileId, token)``: the archive; raw bytes with ``rawContent``.
* ``assignSandboxesToEntities``, ``getSandboxesAssignedToEntity``, ``unassignEntities``.

Large archives: ``PUT /WorkloadManagement/SandboxStore/upload/<md5>.<ext>`` (body = the
archive, streamed: written to disk and hashed chunk by chunk, never held in memory), same
credentials and rules as ``streamFromClient``; the reply is the usual envelope. A
``Content-Length`` over ``MaxSizeMiB`` is refused before any byte is read (clients sending
``Expect: 100-continue`` do not even send the body); a chunked body is cut off as soon as it
passes the limit. The route comes from :meth:`SandboxStoreService.extra_routes`.

Settings: ``Systems.WorkloadManagement.Services.SandboxStore.Options`` (BasePath, SEName,
MaxSizeMiB, CleanupAfterDays, UnassignedGraceHours, CleanupIntervalMinutes), see
:class:`wms.logic.sandboxes.StoreSettings`.
The cleanup of unused sandboxes runs as a background task every CleanupIntervalMinutes, in
every worker (it is safe to run concurrently: rows are re-checked under a lock).

Example (a client; see tests/wms/service/test_sandbox_store.py)::

    from wms.sandbox_client import download_sandbox, upload_sandbox
    url = upload_sandbox(rpc_client, ["job.sh", "input.txt"])   # "SB:ProductionSandboxSE|..."
    download_sandbox(rpc_client, url, "outdir")
"""

from __future__ import annotations

import ipaddress
import logging
import urllib.parse
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import tornado.web
from sqlalchemy.engine import Engine

from core.exceptions import (
    InvalidArgumentError,
    NotAuthenticatedError,
    NotAuthorizedError,
)
from core.rpc.context import ServerContext
from core.rpc.jencode import encode
from core.rpc.server import HostedService
from core.rpc.service import Call, Service, rpc_method
from core.rpc.streaming import StreamingUploadHandler
from core.security.rights import allowed
from wms.logic import sandboxes as logic
from wms.logic.sandboxes import Requester, SandboxTooBigError
from wms.service.common import SYSTEM, sandbox_requester, sandbox_settings

log = logging.getLogger("pilotwms.sandboxes")
UPLOAD_METHOD = "streamFromClient"  # the PUT route follows this method's rules
T = TypeVar("T")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SandboxStoreService(Service):
    system = SYSTEM
    name = "SandboxStore"

    def __init__(self, ctx: ServerContext) -> None:
        super().__init__(ctx)
        self.settings = sandbox_settings(ctx)

    @property
    def engine(self) -> Engine:
        return self.ctx.engine(SYSTEM)

    def background_tasks(self) -> list[tuple[float, Callable[[], None]]]:
        period = self.settings.cleanup_interval_minutes * 60
        return [(period, self.clean_unused)] if period > 0 else []

    def clean_unused(self) -> None:
        """One cleanup pass (see :func:`wms.logic.sandboxes.clean_unused`)."""
        report = logic.clean_unused(self.engine, self.settings,
                                    timedelta(days=self.settings.cleanup_after_days))
        if report.sandboxes or report.stale_uploads:
            log.info("sandbox cleanup: %d sandboxes (%d bytes), %d interrupted uploads",
                     report.sandboxes, report.bytes, report.stale_uploads)

    @rpc_method("streamFromClient")
    def stream_from_client(self, call: Call, file_id: list | str, token: str | None,
                           size: int, data: bytes) -> str:
        name, assign_to = _parse_file_id(file_id)
        owner = sandbox_requester(self.ctx, call.identity)
        url = logic.store_bytes(self.engine, self.settings, owner, name, data, size)
        if assign_to:
            logic.assign(self.engine, self.settings, owner,
                         {entity: [(url, sb_type)] for entity, sb_type in assign_to.items()})
        return url

    @rpc_method("streamToClient", raw=True)
    def stream_to_client(self, call: Call, file_id: str | list,
                         token: str | None = None) -> bytes:
        if isinstance(file_id, list):  # tolerate [url, ...] as some clients wrap it
            file_id = file_id[0] if file_id and isinstance(file_id[0], str) else ""
        file_id = _strip_service_url(file_id, self.path())
        return logic.read_sandbox(self.engine, self.settings,
                                  sandbox_requester(self.ctx, call.identity), file_id)

    @rpc_method("assignSandboxesToEntities")
    def assign_sandboxes_to_entities(self, call: Call, assignments: dict,
                                     *_ignored: Any) -> int:
        """Returns the number of new assignments (existing ones are not repeated)."""
        return logic.assign(self.engine, self.settings,
                            sandbox_requester(self.ctx, call.identity), assignments)

    @rpc_method("getSandboxesAssignedToEntity")
    def get_sandboxes_assigned_to_entity(self, call: Call, entity_id: str,
                                         *_ignored: Any) -> dict[str, list[str]]:
        return logic.assigned_to(self.engine, self.settings,
                                 sandbox_requester(self.ctx, call.identity), entity_id)

    @rpc_method("unassignEntities", rights=["JobAdministrator", "TrustedHost"])
    def unassign_entities(self, call: Call, entity_ids: list | str, *_ignored: Any) -> int:
        ids = [entity_ids] if isinstance(entity_ids, str) else entity_ids
        return logic.unassign(self.engine, ids)

    # -- streaming upload route -------------------------------------------------------------

    def extra_routes(self, hosted: HostedService, balancers: Sequence[Network]) -> list[Any]:
        """Routes beside ``POST /<system>/<name>`` (wired by the server, see the report)."""
        return [(rf"/{self.path()}/upload/([^/]+)", SandboxUploadHandler,
                 {"hosted": hosted, "ctx": self.ctx, "balancers": balancers})]


def _strip_service_url(file_id: str, service_path: str) -> str:
    """DIRAC's DIP storage plugin (``dirac-wms-job-get-output``) names a sandbox by its full
    URL, ``https://host:port/WorkloadManagement/SandboxStore/SandBox/...``: keep the path.

    >>> _strip_service_url("https://h:1/WorkloadManagement/SandboxStore/SandBox/a.tar.bz2",
    ...                    "WorkloadManagement/SandboxStore")
    '/SandBox/a.tar.bz2'
    """
    if "://" not in file_id.split("|", 1)[0]:
        return file_id
    path = urllib.parse.urlsplit(file_id).path
    prefix = f"/{service_path}/"
    return path[len(prefix) - 1:] if path.startswith(prefix) else file_id


def _parse_file_id(file_id: list | str) -> tuple[str, dict[str, str]]:
    """DIRAC's ``[name, assignTo]`` (assignTo ``{}`` or ``{entity: type}``), or a bare name."""
    if isinstance(file_id, str):
        return file_id, {}
    if not file_id or not isinstance(file_id[0], str) or len(file_id) > 2:
        raise InvalidArgumentError("fileId must be [<md5>.<ext>, assignTo]")
    assign_to = file_id[1] if len(file_id) == 2 else {}
    if not isinstance(assign_to, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in assign_to.items()):
        raise InvalidArgumentError("assignTo must be a dict {entity: 'Input'|'Output'}")
    return file_id[0], assign_to


@tornado.web.stream_request_body
class SandboxUploadHandler(StreamingUploadHandler):
    """``PUT .../upload/<md5>.<ext>``: body streamed to disk through the executor."""

    SUPPORTED_METHODS = ("PUT",)

    def initialize(self, hosted: HostedService, ctx: ServerContext,
                   balancers: Sequence[Network]) -> None:
        super().initialize(hosted, ctx, balancers)
        service = hosted.service
        assert isinstance(service, SandboxStoreService)  # noqa: S101 - wired by extra_routes
        self.store = service
        self.owner = Requester(None, None, None)
        self.name = ("", "")

    async def prepare(self) -> None:  # type: ignore[override] # tornado awaits it
        super().prepare()
        settings = self.store.settings
        self.name = logic.parse_file_name(self.path_args[0])
        ident = self.identify()
        if not allowed(ident, self.hosted.rules[UPLOAD_METHOD]):
            if not ident.authenticated:
                raise NotAuthenticatedError("uploads need credentials of a registered user")
            raise NotAuthorizedError(f"{ident.username}@{ident.group} may not upload")
        self.owner = sandbox_requester(self.ctx, ident)
        if not self.owner.username or not self.owner.group:
            raise NotAuthorizedError("uploading a sandbox needs a user identity with a group")
        length = self.request.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        if expected is not None and expected > settings.max_bytes:
            raise SandboxTooBigError(logic.SANDBOX_TOO_BIG)
        # a chunked body past the limit is drained up to 1 MiB more (so that the client reads
        # the reply), then the connection is cut
        self.request.connection.set_max_body_size(  # type: ignore[union-attr]
            settings.max_bytes + 1024 * 1024)
        self.writer = await self.blocking(logic.SandboxWriter, settings, expected)

    async def put(self, _name: str) -> None:
        writer: logic.SandboxWriter = await self.take_writer()
        md5, ext = self.name
        url = await self.blocking(logic.register_upload, self.store.engine,
                                   self.store.settings, self.owner, writer, md5, ext)
        self.set_header("Content-Type", "application/json")
        self.finish(encode({"OK": True, "Value": url}))

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        if exc_info and isinstance(exc_info[1], SandboxTooBigError):
            status_code = 413  # HTTP's own "Content Too Large", same envelope
        super().send_error(status_code, **kwargs)
