"""``Transfer/DataPush``: data files pushed by users and moved by data movers (ECPDS-style).

User methods:

* ``pushAsync(files)`` -> data file IDs at once (metadata only; movers pull the files from
  their source hosts later, see :mod:`transfer.logic.push` for the form);
* ``pushSync(file)`` -> ``{"URL", "Mover"}``: where to stream the file (``PUT <URL>``); the
  mover stores it, reports to this service, and only then answers the client with the data
  file ID;
* ``getDataFiles(ids)``, ``getGroup(group)`` -> ``{"Files", "Counts", "Complete"}``,
  ``listMovers()``.

Mover methods (``TrustedHost``: movers present a host certificate):
``registerMover(name, url, capacity)``, ``moverHeartbeat(name, leases)`` -> ``{"Revoked"}``,
``getWork(name, slots)``, ``acceptUpload(name, ticket)``, ``reportResult(name, lease,
result)``, ``unregisterMover(name)``.

A background task (every 5 s, in every server process) gives the files of movers silent for
``MoverDeadAfterSeconds`` back to the queue, fails sync tickets never used, and hands stored
files bound for an association to an unattended transfer.

Example::

    from transfer.client import DataPushClient
    ids = DataPushClient.from_config().push_async([{"SourceHost": "src-a", "User": "ops",
        "Path": "/data/f.grib", "Size": 1234, "Group": "g", "Destination": "DISK:/demo/p"}])
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.exceptions import InvalidArgumentError, NotAuthorizedError, NotFoundError
from core.rpc.context import ServerContext
from core.rpc.service import Call, Service, rpc_method
from core.security.identity import Identity
from transfer.db import associations as assoc_db
from transfer.db import datafiles as db
from transfer.db import transfers as tdb
from transfer.db.tables import data_files
from transfer.logic import push
from transfer.service.transfer_manager import manager
from transfer.settings import SYSTEM, TransferSettings

log = logging.getLogger("pilotwms.transfer.push")
MOVER = "TrustedHost"


def to_wire(row: db.DataFileRow) -> dict[str, Any]:
    return {"FileID": row.file_id, "Owner": row.owner, "Group": row.group_name,
            "Mode": row.mode, "SourceHost": row.source_host, "User": row.source_user,
            "Path": row.source_path, "Size": row.size, "Checksum": row.checksum,
            "Destination": row.destination, "Location": row.location, "Status": row.status,
            "Mover": row.mover, "Attempts": row.attempts, "BytesDone": row.bytes_done,
            "Error": row.error,
            "TransferID": row.transfer_id, "CreationTime": row.created,
            "LastUpdate": row.last_update}


class DataPushService(Service):
    system = SYSTEM
    name = "DataPush"

    def __init__(self, ctx: ServerContext) -> None:
        super().__init__(ctx)
        self.settings = TransferSettings.from_config(ctx.config)
        p = self.settings.push
        self.staging = push.parse_destination(p.staging) if p.staging else None
        self.dead_after = timedelta(seconds=p.mover_dead_after_seconds)

    @property
    def engine(self) -> Engine:
        return self.ctx.engine(SYSTEM)

    def background_tasks(self) -> list[tuple[float, Callable[[], None]]]:
        return [(5.0, self.sweep)]

    def sweep(self) -> None:
        moved = db.requeue_dead(self.engine, self.dead_after)
        if moved:
            log.warning("%d data files of silent movers given back to the queue", moved)
        db.expire_tickets(self.engine, timedelta(seconds=self.settings.push.ticket_seconds))
        self.forward_pending()

    def _user(self, ident: Identity) -> tuple[str, str]:
        if not ident.username or not ident.group:
            raise NotAuthorizedError("data push needs a user identity with a group")
        return ident.username, ident.group

    def _check_dest(self, ident: Identity, text: str) -> tuple[str, str, str]:
        dest = push.parse_destination(text)
        push.check_destination(dest, ident, self.ctx.config.resources.storage_elements,
                               self.staging)
        if dest[0] == "assoc":
            assoc_db.get(self.engine, ident.username or "", dest[1])  # NotFoundError
        return dest

    # -- users -----------------------------------------------------------------------------

    @rpc_method("pushAsync")
    def push_async(self, call: Call, files: list) -> list[int]:
        owner, group = self._user(call.identity)
        new = push.parse_async(files, self.settings.push.default_destination)
        for dest in sorted({n.destination for n in new}):
            self._check_dest(call.identity, dest)
        return db.insert_async(self.engine, owner, group, new)

    @rpc_method("pushSync")
    def push_sync(self, call: Call, meta: dict) -> dict[str, Any]:
        owner, group = self._user(call.identity)
        name = meta.get("Name")
        size = meta.get("Size")
        if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
            raise InvalidArgumentError("Name must be a file name")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidArgumentError("Size must be a number of bytes")
        group_name = meta.get("Group") or ""
        if group_name and not push.GROUP.match(str(group_name)):
            raise InvalidArgumentError(f"bad Group {group_name!r}")
        dest_text = meta.get("Destination") or self.settings.push.default_destination
        if not dest_text:
            raise InvalidArgumentError("Destination is required (no default)")
        self._check_dest(call.identity, dest_text)
        movers = [m for m in db.live_movers(self.engine, self.dead_after) if m["URL"]]
        if not movers:
            raise InvalidArgumentError("no data mover is available for a synchronous push")
        best = min(movers, key=lambda m: (m["Running"] / max(m["Capacity"], 1), m["Name"]))
        fid, ticket = db.insert_sync(self.engine, owner, group, db.NewDataFile(
            str(group_name), "", owner, "/" + name, size,
            push.parse_checksum(meta.get("Checksum")), dest_text), best["Name"])
        log.info("data file %d: sync push of %s through mover %s", fid, name, best["Name"])
        return {"URL": f"{best['URL'].rstrip('/')}/push/{ticket}", "Mover": best["Name"]}

    def _mine(self, ident: Identity, row: db.DataFileRow) -> None:
        if row.owner != ident.username and not manager(ident):
            raise NotAuthorizedError(f"data file {row.file_id} is not yours")

    @rpc_method("getDataFiles")
    def get_data_files(self, call: Call, ids: list) -> list[dict[str, Any]]:
        out = []
        for fid in ids:
            if not isinstance(fid, int):
                raise InvalidArgumentError("data file IDs are integers")
            row = db.get(self.engine, fid)
            self._mine(call.identity, row)
            out.append(to_wire(row))
        return out

    @rpc_method("getGroup")
    def get_group(self, call: Call, group: str, files: bool = True) -> dict[str, Any]:
        """The group's files (unless ``files`` is False: counts only, one indexed query) and
        counts per status; ``Complete`` when none is still moving."""
        owner = None if manager(call.identity) else self._user(call.identity)[0]
        counts = db.group_counts(self.engine, owner, group)
        out: dict[str, Any] = {
            "Group": group, "Counts": counts,
            "Complete": bool(counts) and not set(counts) & db.ACTIVE_STATES}
        if files:
            out["Files"] = [to_wire(r) for r in db.of_group(self.engine, owner, group)]
        return out

    @rpc_method("listMovers")
    def list_movers(self, call: Call) -> list[dict[str, Any]]:
        return db.live_movers(self.engine, self.dead_after)

    # -- movers ----------------------------------------------------------------------------

    @rpc_method("registerMover", rights=MOVER)
    def register_mover(self, call: Call, name: str, url: str, capacity: int
                       ) -> dict[str, Any]:
        if not push.HOST.match(name) or not 0 < capacity <= 1000:
            raise InvalidArgumentError("a mover needs a name and a capacity from 1 to 1000")
        released = db.register_mover(self.engine, name, url, capacity,
                                     call.identity.username or "")
        log.info("mover %s registered (capacity %d, %s)%s", name, capacity, url or "no URL",
                 f"; {released} files of its previous run requeued" if released else "")
        return {"DeadAfterSeconds": self.settings.push.mover_dead_after_seconds}

    @rpc_method("unregisterMover", rights=MOVER)
    def unregister_mover(self, call: Call, name: str) -> int:
        return db.unregister_mover(self.engine, name)

    @rpc_method("moverHeartbeat", rights=MOVER)
    def mover_heartbeat(self, call: Call, name: str, leases: list[str] | dict[str, int]
                        ) -> dict[str, Any]:
        """``leases``: the leases in progress, or ``{lease: bytes moved so far}`` (the item
        types are checked before the call; byte counts must not be negative)."""
        if isinstance(leases, dict) and any(v < 0 for v in leases.values()):
            raise InvalidArgumentError("moverHeartbeat: bytes moved must be >= 0")
        held = dict(leases) if isinstance(leases, dict) else list(leases)
        return {"Revoked": db.beat(self.engine, name, held)}

    def _work(self, w: db.Work) -> dict[str, Any]:
        dest = push.parse_destination(w.destination)
        se, lfn = push.store_location(dest, w.file_id, w.source_path, self.staging)
        return {"FileID": w.file_id, "Lease": w.lease, "SourceHost": w.source_host,
                "User": w.source_user, "Path": w.source_path, "Size": w.size,
                "Checksum": w.checksum, "Store": {"SE": se, "LFN": lfn}}

    @rpc_method("getWork", rights=MOVER)
    def get_work(self, call: Call, name: str, slots: int) -> list[dict[str, Any]]:
        if slots <= 0:
            return []
        db.requeue_dead(self.engine, self.dead_after)
        work = db.assign(self.engine, name, slots, self.settings.push.source_limit,
                         max_per_mover=self.settings.push.max_per_mover)
        return [self._work(w) for w in work]

    @rpc_method("acceptUpload", rights=MOVER)
    def accept_upload(self, call: Call, name: str, ticket: str) -> dict[str, Any]:
        row = db.by_lease(self.engine, ticket)
        if row.mover != name or row.status != db.UPLOADING:
            raise NotFoundError("unknown or expired ticket")
        return self._work(db.Work(row.file_id, ticket, "", row.source_user, row.source_path,
                                  row.size, row.checksum, row.destination))

    @rpc_method("reportResult", rights=MOVER)
    def report_result(self, call: Call, name: str, lease: str, result: dict,
                      slots: int = 0) -> dict[str, Any]:
        """Store a retrieval's outcome; with ``slots`` > 0 the reply also carries new work
        (``Work``), saving the mover a ``getWork`` call per file."""
        p = self.settings.push
        ok = bool(result.get("OK"))
        row = db.report(self.engine, name, lease, ok=ok, error=result.get("Error"),
                        location=result.get("Location"),
                        permanent=bool(result.get("Permanent")),
                        max_attempts=p.max_attempts, retry_delay=p.retry_delay_seconds,
                        started_us=result.get("Started"), ended_us=result.get("Ended"))
        if row.status == db.FORWARDING:
            self.forward_pending()
        level = logging.INFO if ok else logging.WARNING
        log.log(level, "data file %d from %s: %s by %s%s", row.file_id,
                row.source_host or "client", row.status, name,
                f" ({row.error})" if row.error else "")
        reply: dict[str, Any] = {"FileID": row.file_id, "Status": row.status}
        if slots > 0:
            reply["Work"] = [self._work(w) for w in db.assign(
                self.engine, name, slots, self.settings.push.source_limit,
                max_per_mover=self.settings.push.max_per_mover)]
        return reply

    def forward_pending(self) -> int:
        """Stored files bound for an association get their unattended transfer."""
        with self.engine.connect() as conn:
            rows = [db.DataFileRow.from_mapping(r) for r in conn.execute(
                sa.select(data_files).where(data_files.c.status == db.FORWARDING,
                                            data_files.c.transfer_id.is_(None))
                .limit(500)).mappings()]
        m = self.settings.manager
        for row in rows:
            name = push.parse_destination(row.destination)[1]
            try:
                arow = assoc_db.get(self.engine, row.owner, name)
            except NotFoundError:
                db.report_forward_failed(self.engine, row.file_id,
                                         f"association {name!r} no longer exists")
                continue
            tid = db.start_forward(self.engine, row.file_id, asdict(tdb.NewTransfer(
                row.owner, row.owner_group, None, arow.association_id, name, "put", "se",
                row.location or "", posixpath.basename(row.source_path), None, row.size,
                row.checksum, bool(arow.options.get("overwrite", False)), False,
                m.default_retry_count, m.default_retry_frequency, None, False, False)))
            if tid is not None:
                log.info("data file %d forwarded to %s by transfer %d", row.file_id, name,
                         tid)
        return len(rows)
