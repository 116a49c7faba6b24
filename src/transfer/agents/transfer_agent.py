"""``TransferAgent``: runs the unattended transfers of ``Transfer/TransferManager``.

Each cycle claims due transfers (Waiting and past their next-attempt time, or Assigned to an
agent silent for ``StaleMinutes``) for its free slots and runs them in a pool of
``MaxParallel`` threads beside the loop, so one long transfer never holds up the others.
One attempt: decrypt the association (memory only), make the source local (spool, catalog
file, job output), connect, send to a temporary name with resume, verify, rename; then
store the attempt (time, bytes, error) and the outcome: Done; Failed at once when retrying
cannot help (authentication, target exists, permission); Waiting again ``RetryFrequency``
later; Failed after ``RetryCount`` retries. Final transfers send the e-mail asked for, free
their spooled file, and finish the data-push files forwarded through them.

Log lines name the transfer, the association and the error, never a secret.

Run: ``pilotwms agent TransferAgent --config config.yaml [--once]``.

Example::

    >>> TransferAgent.name, TransferAgent.system
    ('TransferAgent', 'Transfer')
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from core.agent import Agent
from core.config.schema import Config
from core.db import init_schema, utcnow
from core.exceptions import NotFoundError, PilotWMSError
from core.rpc.server import ca_directory
from dms.storage import StorageElements
from transfer.db import associations as assoc_db
from transfer.db import datafiles as push_db
from transfer.db import transfers as db
from transfer.db.tables import TRANSFER_SCHEMA
from transfer.errors import RemotePermanentError, TransferError
from transfer.logic import associations, notify, sources, transfers
from transfer.logic.protocols import open_session
from transfer.logic.protocols.base import LocalSource
from transfer.logic.secret_box import SecretBox
from transfer.service.transfer_manager import make_spool
from transfer.settings import SYSTEM, TransferSettings

log = logging.getLogger("pilotwms.agents.transfers")
PROGRESS_SECONDS = 5.0


class TransferAgent(Agent):
    name = "TransferAgent"
    system = SYSTEM
    period = 10.0

    def __init__(self, config: Config, *, instance: str | None = None,
                 period: float | None = None) -> None:
        super().__init__(config, instance=instance, period=period)
        self.settings = TransferSettings.from_config(config)
        self.box = SecretBox(self.settings.manager.key_file())
        self.spool = make_spool(self.settings)
        self.ca_dir = str(ca_directory(config))
        self._ses: StorageElements | None = None
        self._ready = False
        self._cycles = 0
        self._once = False
        self._pool: ThreadPoolExecutor | None = None
        self._running: set[Future[None]] = set()

    def storage_elements(self) -> StorageElements:
        if self._ses is None:
            from dms.agents.request_executing import host_storage_elements

            self._ses = host_storage_elements(self.config)
        return self._ses

    # -- sources ---------------------------------------------------------------------------

    def _fetch_lfn(self, row: db.TransferRow, dest: Path) -> None:
        from dms.agents.request_executing import owner_data_manager

        dm = owner_data_manager(self.config, self.engine("DataManagement"),
                                self.storage_elements(), row.owner, row.owner_group, row.vo,
                                work_dir=str(dest.parent))
        dm.get(row.source, dest)

    def _fetch_job(self, row: db.TransferRow, dest: Path) -> None:
        from wms.service.common import sandbox_settings

        job, _, name = row.source.partition(":")
        store = sandbox_settings(_ConfigOnly(self.config))  # type: ignore[arg-type]
        sources.job_output_member(self.engine("WorkloadManagement"), store.base_path,
                                  row.owner, int(job), name, dest)

    def _fetch_se(self, row: db.TransferRow, dest: Path) -> None:
        se, _, lfn = row.source.partition(":")
        self.storage_elements()[se].get(lfn, dest, checksum=row.checksum)

    # -- one attempt -----------------------------------------------------------------------

    def attempt(self, row: db.TransferRow) -> tuple[TransferError | None, int]:
        """Run one attempt; returns (error or None, bytes moved)."""
        try:
            arow = assoc_db.get(self.engine(), row.owner, row.association)
        except NotFoundError:
            return RemotePermanentError(f"association {row.association!r} was deleted"), 0
        last = [time.monotonic()]

        def progress(done: int) -> None:
            if time.monotonic() - last[0] > PROGRESS_SECONDS:
                last[0] = time.monotonic()
                db.touch(self.engine(), row.transfer_id, self.instance, done)

        try:
            endpoint = associations.endpoint(arow, self.box)
            timeout = float(endpoint.options.get("timeout",
                                                 self.settings.manager.connect_timeout))
            session = open_session(endpoint, timeout=timeout, ca_dir=self.ca_dir,
                                   ses=self.storage_elements() if endpoint.protocol == "se"
                                   else None)
            if row.direction == "put":
                path, checksum = sources.local_source(row, self.spool, {
                    "lfn": self._fetch_lfn, "job": self._fetch_job, "se": self._fetch_se})
                with session:
                    moved = session.upload(LocalSource(path, checksum=checksum,
                                                       progress=progress),
                                           row.target, overwrite=row.overwrite)
            else:
                assert row.spool_path  # noqa: S101 - set at submission for "get"
                with session:
                    moved = session.download(row.source, Path(row.spool_path),
                                             progress=progress)
            learned = getattr(session, "learned_host_key", None)
            if learned and not arow.options.get("host_key") and \
                    assoc_db.learn_host_key(self.engine(), arow.association_id, learned):
                log.info("transfer %d: host key of %s kept for association %s",
                         row.transfer_id, endpoint.host, row.association)
        except TransferError as exc:
            return exc, 0
        except Exception as exc:  # noqa: BLE001 - a bug in one attempt must not stop others
            log.exception("transfer %d: unexpected failure", row.transfer_id)
            return TransferError(f"internal error: {type(exc).__name__}"), 0
        return None, moved

    def run_transfer(self, row: db.TransferRow) -> None:
        started = utcnow()
        row.attempts += 1
        error, moved = self.attempt(row)
        transfers.outcome(row, error, row.size or moved)
        stored = db.record_attempt(self.engine(), row, started, error is None, moved,
                                   error.message if error else None, self.instance)
        if error is None:
            log.info("transfer %d (%s -> %s) attempt %d: done, %d bytes", row.transfer_id,
                     row.target, row.association, row.attempts, moved)
        else:
            log.warning("transfer %d (%s -> %s) attempt %d failed (%s): %s",
                        row.transfer_id, row.target, row.association, row.attempts,
                        "final" if row.status == db.FAILED else "will retry", error.message)
        if stored and row.status in db.FINAL:
            self.finished(row)

    def finished(self, row: db.TransferRow) -> None:
        if row.direction == "put":
            if row.status == db.DONE:
                self.spool.discard(row.spool_path)
            if row.source_kind != "spool":
                self.spool.discard(sources.cached_path(self.spool, row))
            if row.source_kind == "se" and row.status == db.DONE:
                se, _, lfn = row.source.partition(":")
                try:  # the staged copy of a forwarded data file is no longer needed
                    self.storage_elements()[se].remove(lfn)
                except PilotWMSError as exc:
                    log.warning("transfer %d: staged copy %s not removed: %s",
                                row.transfer_id, row.source, exc.message)
        push_db.transfer_finished(self.engine(), row.transfer_id, row.status, row.error)
        wanted = (row.status == db.DONE and row.on_success) or \
                 (row.status == db.FAILED and row.on_failure)
        smtp = self.settings.manager.smtp
        if wanted and row.mail_to:
            if smtp is None:
                log.warning("transfer %d: no SMTP server configured, no mail sent",
                            row.transfer_id)
                return
            msg = notify.message(smtp.from_, row.mail_to, row.transfer_id, row.status,
                                 row.target, row.association, row.attempts, row.error)
            notify.send(smtp, msg, ca_dir=self.ca_dir)

    # -- the cycle -------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> None:
        """The agent loop; transfers run in a pool of ``MaxParallel`` threads beside it, so a
        long transfer never holds up the others. Stopping (or ``once``) waits for the
        transfers under way."""
        self._once = once
        try:
            super().run(once=once)
        finally:
            self._drain()

    def _drain(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._running.clear()

    def run_once(self) -> bool:
        engine = self.engine()
        if not self._ready:
            init_schema(engine, TRANSFER_SCHEMA)
            self._ready = True
        self._cycles += 1
        if self._cycles % 60 == 1:
            self.housekeeping()
        m = self.settings.manager
        self._running = {f for f in self._running if not f.done()}
        free = m.max_parallel - len(self._running)
        if free <= 0 or self.stopping:
            return True
        claimed = db.claim(engine, self.instance, free, timedelta(minutes=m.stale_minutes))
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=m.max_parallel,
                                            thread_name_prefix="transfer")
        for row in claimed:
            self._running.add(self._pool.submit(self.run_transfer, row))
        if self._once:
            self._drain()
        return len(claimed) < free

    def housekeeping(self) -> None:
        keep = self.settings.manager.keep_days
        if keep <= 0:
            return
        old = db.expired(self.engine(), utcnow() - timedelta(days=keep))
        for row in old:
            self.spool.discard(row.spool_path)
        if old:
            db.remove(self.engine(), [r.transfer_id for r in old])
            log.info("removed %d transfers finished more than %g days ago", len(old), keep)
        gone = self.spool.sweep(86_400, lambda paths: db.spool_paths_in_use(self.engine(),
                                                                             paths))
        if gone:
            log.info("removed %d spool files no transfer uses", gone)


class _ConfigOnly:
    """What :func:`wms.service.common.sandbox_settings` reads of a server context."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def database_url(self, system: str) -> str:
        return self.config.database_url(system)
