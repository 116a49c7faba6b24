"""``Transfer/TransferManager``: associations and unattended transfers (ectrans-style).

RPC methods (users act on their own associations and transfers; ``Operator``,
``JobAdministrator`` and trusted hosts see every transfer):

* ``getProtocols()``, ``putAssociation(name, description)`` -> True when created,
  ``getAssociation(name)``, ``listAssociations()``, ``deleteAssociation(name)``: secrets
  are write-only (encrypted at rest, never returned);
* ``prepareUpload(size)`` -> spool ticket (refused at once when the spool cannot take it);
  the client then streams the file with ``PUT /Transfer/TransferManager/spool/<ticket>``;
* ``submitTransfer(request)`` -> transfer ID (wire form: :mod:`transfer.logic.transfers`);
* ``getTransfer(id)`` (with every attempt), ``listTransfers(status)``,
  ``restartTransfer(id)``, ``deleteTransfer(id)``;
* ``GET /Transfer/TransferManager/result/<id>``: the file a ``get`` transfer fetched.

Example::

    from transfer.client import TransferClient
    tc = TransferClient.from_config()
    tc.put_association("ftp1", {"protocol": "ftp", "host": "h", "user": "u", "password": "x"})
    tid = tc.submit_file(Path("f.grib"), "ftp1")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import tornado.web
from sqlalchemy.engine import Engine

from core.exceptions import InvalidArgumentError, NotAuthorizedError, NotFoundError
from core.rpc.context import ServerContext
from core.rpc.jencode import encode
from core.rpc.server import HostedService
from core.rpc.service import Call, Service, rpc_method
from core.rpc.streaming import StreamingUploadHandler
from core.security.identity import Identity
from dms.storage.base import CHUNK
from transfer.db import associations as assoc_db
from transfer.db import transfers as db
from transfer.logic import associations, transfers
from transfer.logic.protocols import PROTOCOLS
from transfer.logic.secret_box import SecretBox
from transfer.logic.spool import Spool
from transfer.settings import SYSTEM, TransferSettings

MANAGERS = frozenset({"Operator", "JobAdministrator", "TrustedHost"})


def manager(ident: Identity) -> bool:
    return bool(ident.properties & MANAGERS)


def make_spool(settings: TransferSettings) -> Spool:
    m = settings.manager
    return Spool(m.spool(), m.spool_reserve_mib * 1024 * 1024,
                 m.max_spool_file_mib * 1024 * 1024)


class TransferManagerService(Service):
    system = SYSTEM
    name = "TransferManager"

    def __init__(self, ctx: ServerContext) -> None:
        super().__init__(ctx)
        self.settings = TransferSettings.from_config(ctx.config)
        self._box: SecretBox | None = None
        self._spool: Spool | None = None

    # made on first use: a server on MariaDB without SpoolDir/SecretKeyFile still starts (its
    # other services work), and transfer calls say what is missing
    @property
    def box(self) -> SecretBox:
        if self._box is None:
            self._box = SecretBox(self.settings.manager.key_file())
        return self._box

    @property
    def spool(self) -> Spool:
        if self._spool is None:
            self._spool = make_spool(self.settings)
        return self._spool

    @property
    def engine(self) -> Engine:
        return self.ctx.engine(SYSTEM)

    def _user(self, call: Call) -> str:
        if not call.identity.username or not call.identity.group:
            raise NotAuthorizedError("transfers need a user identity with a group")
        return call.identity.username

    # -- associations ----------------------------------------------------------------------

    @rpc_method("getProtocols")
    def get_protocols(self, call: Call) -> dict[str, Any]:
        return {p.name: {"Description": p.description, "DefaultPort": p.default_port,
                         "Secrets": list(p.secrets), "Resumable": p.resumable,
                         "Verification": p.checksum} for p in PROTOCOLS.values()}

    @rpc_method("putAssociation")
    def put_association(self, call: Call, name: str, description: dict) -> bool:
        self._user(call)
        return associations.store(self.engine, self.box, name, description, call.identity)

    @rpc_method("getAssociation")
    def get_association(self, call: Call, name: str) -> dict[str, Any]:
        return associations.to_wire(assoc_db.get(self.engine, self._user(call), name))

    @rpc_method("listAssociations")
    def list_associations(self, call: Call) -> list[dict[str, Any]]:
        return [associations.to_wire(r)
                for r in assoc_db.list_of(self.engine, self._user(call))]

    @rpc_method("deleteAssociation")
    def delete_association(self, call: Call, name: str) -> bool:
        if not assoc_db.delete(self.engine, self._user(call), name):
            raise NotFoundError(f"no association {name!r}")
        return True

    # -- transfers -------------------------------------------------------------------------

    @rpc_method("prepareUpload")
    def prepare_upload(self, call: Call, size: int) -> str:
        """A spool ticket for a file of ``size`` bytes (SpoolFullError when it cannot fit)."""
        return self.spool.new_ticket(self._user(call), size)

    @rpc_method("submitTransfer")
    def submit_transfer(self, call: Call, request: dict) -> int:
        owner = self._user(call)
        m = self.settings.manager
        sub = transfers.parse_submission(request, default_retries=m.default_retry_count,
                                         default_frequency=m.default_retry_frequency)
        row = assoc_db.get(self.engine, owner, sub.association)
        overwrite = sub.overwrite if sub.overwrite is not None else \
            bool(row.options.get("overwrite", False))
        mail_to = sub.mail_to
        if (sub.on_success or sub.on_failure) and not mail_to:
            user = self.ctx.config.registry.users.get(owner)
            mail_to = user.email if user else None
            if not mail_to:
                raise InvalidArgumentError("no e-mail address: give -mailTo (the registry "
                                           f"has none for {owner})")
        spool_path, size, checksum = None, None, None
        if sub.source_kind == "spool":
            path, size, checksum = self.spool.stored(owner, sub.source)
            spool_path = str(path)
        elif sub.direction == "get":
            spool_path = str(self.spool.get_target(owner))
        return db.insert(self.engine, db.NewTransfer(
            owner, call.identity.group or "", call.identity.vo, row.association_id,
            sub.association, sub.direction, sub.source_kind, sub.source, sub.target,
            spool_path, size, checksum, overwrite, sub.sync, sub.retry_count,
            sub.retry_frequency, mail_to, sub.on_success, sub.on_failure))

    def _visible(self, call: Call, transfer_id: int) -> db.TransferRow:
        row = db.get(self.engine, transfer_id)
        if row.owner != call.identity.username and not manager(call.identity):
            raise NotAuthorizedError(f"transfer {transfer_id} is not yours")
        return row

    @rpc_method("getTransfer")
    def get_transfer(self, call: Call, transfer_id: int) -> dict[str, Any]:
        row = self._visible(call, transfer_id)
        return transfers.to_wire(row, db.attempts_of(self.engine, transfer_id))

    @rpc_method("listTransfers")
    def list_transfers(self, call: Call, status: str | None = None) -> list[dict[str, Any]]:
        owner = None if manager(call.identity) else self._user(call)
        return [transfers.to_wire(r) for r in db.list_of(self.engine, owner, status=status)]

    @rpc_method("restartTransfer")
    def restart_transfer(self, call: Call, transfer_id: int) -> bool:
        row = self._visible(call, transfer_id)
        if row.status not in (db.FAILED, db.CANCELED):
            raise InvalidArgumentError(f"transfer {transfer_id} is {row.status}: only Failed "
                                       "or Canceled transfers can be restarted")
        if row.source_kind == "spool" and not (row.spool_path and
                                               Path(row.spool_path).exists()):
            raise InvalidArgumentError(f"transfer {transfer_id}: its spooled file is gone; "
                                       "submit it again")
        if not db.restart(self.engine, transfer_id):
            raise InvalidArgumentError(f"transfer {transfer_id} is {row.status}: only Failed "
                                       "or Canceled transfers can be restarted")
        return True

    @rpc_method("deleteTransfer")
    def delete_transfer(self, call: Call, transfer_id: int) -> bool:
        """Cancel the transfer (an attempt in progress is not recorded) and forget it."""
        row = self._visible(call, transfer_id)
        db.cancel(self.engine, transfer_id)
        db.remove(self.engine, [transfer_id])
        self.spool.discard(row.spool_path)
        return True

    def extra_routes(self, hosted: HostedService, balancers: Sequence[Any]) -> list[Any]:
        kw = {"hosted": hosted, "ctx": self.ctx, "balancers": balancers}
        return [(rf"/{self.path()}/spool/([0-9a-f]{{32}})", SpoolUploadHandler, kw),
                (rf"/{self.path()}/result/([0-9]+)", ResultHandler, kw)]


def _service(hosted: HostedService) -> TransferManagerService:
    service = hosted.service
    assert isinstance(service, TransferManagerService)  # noqa: S101 - wired by extra_routes
    return service


@tornado.web.stream_request_body
class SpoolUploadHandler(StreamingUploadHandler):
    """``PUT .../spool/<ticket>``: the body (``Content-Length`` required) into the spool."""

    SUPPORTED_METHODS = ("PUT",)

    async def prepare(self) -> None:  # type: ignore[override] # tornado awaits it
        super().prepare()
        service = _service(self.hosted)
        ident = self.identify()
        if not ident.authenticated or not ident.username:
            raise NotAuthorizedError("uploads need a registered user")
        length = self.request.headers.get("Content-Length")
        if not length or not length.isdigit():
            raise InvalidArgumentError("Content-Length is required")
        size = int(length)
        self.request.connection.set_max_body_size(size + 1)  # type: ignore[union-attr]
        self.writer = await self.blocking(service.spool.writer, ident.username,
                                          self.path_args[0], size)

    async def put(self, _ticket: str) -> None:
        writer = await self.take_writer()
        size, checksum = await self.blocking(writer.finish)
        self.set_header("Content-Type", "application/json")
        self.finish(encode({"OK": True, "Value": {"Size": size, "Checksum": checksum}}))


class ResultHandler(StreamingUploadHandler):
    """``GET .../result/<id>``: the file a finished ``get`` transfer fetched."""

    SUPPORTED_METHODS = ("GET",)

    async def get(self, transfer_id: str) -> None:
        service = _service(self.hosted)
        ident = self.identify()
        row = await self.blocking(db.get, service.engine, int(transfer_id))
        if row.owner != ident.username and not manager(ident):
            raise NotAuthorizedError(f"transfer {transfer_id} is not yours")
        if row.direction != "get" or row.status != db.DONE or not row.spool_path:
            raise InvalidArgumentError(f"transfer {transfer_id} has no fetched file "
                                       f"(it is a {row.direction} transfer, {row.status})")
        try:
            stream: IO[bytes] = await self.blocking(open, row.spool_path, "rb")
        except OSError:
            raise NotFoundError(f"the file of transfer {transfer_id} is gone") from None
        try:
            self.set_header("Content-Type", "application/octet-stream")
            self.set_header("Content-Length", str(os.fstat(stream.fileno()).st_size))
            while True:
                chunk = await self.blocking(stream.read, CHUNK)
                if not chunk:
                    break
                self.write(chunk)
                await self.flush()
        finally:
            await self.blocking(stream.close)
        self.finish()
