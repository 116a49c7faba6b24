"""The data manager: storage and catalog moved together, checksums verified, nothing lost.

Every transfer is verified with adler32 (by the plugins: the stored or received bytes against
the expected value). Every operation that touches both storage and catalog either completes,
is rolled back, or leaves a failover request for the request executing agent:

* :meth:`DataManager.put_and_register`: upload, then register. Upload failed -> the next
  failover SE is tried; the file is registered there and a request moves it to the wanted SE
  later. Registration failed -> the upload is removed again (interactive use), or, when a
  request submitter is given (jobs), the copy stays and a ``RegisterFile`` request is recorded.
* :meth:`DataManager.get`: the best replica (SEs of the local site first, then the others);
  a replica failing or with a bad checksum is skipped for the next one.
* :meth:`DataManager.replicate_and_register`: download a verified copy, upload it, register
  the replica; a failed registration removes the new copy.
* :meth:`DataManager.remove_file`, :meth:`DataManager.remove_replica`: storage first, then
  the catalog; a replica whose storage removal failed stays in the catalog.
* :meth:`DataManager.check_consistency`: catalog against storage (missing, bad size or
  checksum, extra files on the SEs).

``catalog`` is anything with :class:`dms.catalog_client.FileCatalogClient`'s methods (the
client, or the agent's server-side adapter); ``submit_request`` takes a request in its wire
form (see :mod:`dms.logic.rms`) and returns its ID.

Example::

    from dms.catalog_client import FileCatalogClient
    from dms.storage import StorageElements
    dm = DataManager(FileCatalogClient(rpc), StorageElements.from_wire(se_rpc.call(
        "getStorageElements"), credentials=creds, ca_dir=ca), site="LCG.Demo.org")
    dm.put_and_register("/demo/user/a/alice/f1", "f1", "DEMO-DISK")
    dm.get("/demo/user/a/alice/f1", "copy_of_f1")
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from core.exceptions import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    PilotWMSError,
)
from dms.bulk import BulkResult
from dms.storage import StorageElements
from dms.storage.base import (
    ChecksumMismatchError,
    Progress,
    StorageError,
    StorageFileNotFoundError,
    adler32_file,
    normalise_checksum,
)

log = logging.getLogger("pilotwms.datamanager")

LAST_REPLICA = "Cannot remove the last replica (remove the file instead)"


class CatalogError(PilotWMSError):
    """The catalog refused or failed an operation; the message says which and why."""

    strerror = "File catalog error"


class Catalog(Protocol):
    """The catalog methods the data manager uses (FileCatalogClient's signatures)."""

    def add_file(self, files: Mapping[str, Mapping[str, Any]]) -> BulkResult: ...
    def add_replica(self, replicas: Mapping[str, Mapping[str, Any]]) -> BulkResult: ...
    def remove_file(self, lfns: str | Iterable[str]) -> BulkResult: ...
    def remove_replica(self, replicas: Mapping[str, Any]) -> BulkResult: ...
    def get_replicas(self, lfns: str | Iterable[str], all_status: bool = False
                     ) -> BulkResult: ...
    def get_file_metadata(self, lfns: str | Iterable[str]) -> BulkResult: ...
    def list_directory(self, paths: str | Iterable[str], verbose: bool = False
                       ) -> BulkResult: ...
    def is_directory(self, lfns: str | Iterable[str]) -> BulkResult: ...
    def remove_directory(self, paths: str | Iterable[str]) -> BulkResult: ...


SubmitRequest = Callable[[dict[str, Any]], int]


@dataclass
class PutResult:
    lfn: str
    #: the SE holding the file now (the wanted one, or a failover SE)
    se: str
    size: int
    checksum: str
    guid: str
    #: a failover request recorded to finish the job later (None: all done now)
    request_id: int | None = None
    #: the wanted SE failed and the file went to ``se`` instead
    failover: bool = False


@dataclass
class ConsistencyReport:
    checked: int = 0
    #: (lfn, SE): in the catalog, not on the SE
    missing: list[tuple[str, str]] = field(default_factory=list)
    #: (lfn, SE, what is on the SE, what the catalog says)
    bad_checksum: list[tuple[str, str, str, str]] = field(default_factory=list)
    bad_size: list[tuple[str, str, int, int]] = field(default_factory=list)
    #: (SE, path): on the SE, not in the catalog ("dark data")
    extra: list[tuple[str, str]] = field(default_factory=list)
    #: (lfn or path, SE, reason): could not be checked
    errors: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return not (self.missing or self.bad_checksum or self.bad_size or self.extra
                    or self.errors)


def single_result(result: BulkResult, lfn: str, what: str) -> Any:
    """The value for ``lfn`` in a bulk result; its failure raised (NotFoundError or
    CatalogError, the message saying ``what`` failed)."""
    if lfn in result.failed:
        reason = result.failed[lfn]
        if "no such file" in reason.lower():
            raise NotFoundError(f"{lfn}: {reason}")
        raise CatalogError(f"{what} {lfn}: {reason}")
    if lfn not in result.successful:
        raise CatalogError(f"{what} {lfn}: no answer from the catalog")
    return result.successful[lfn]


class DataManager:
    def __init__(self, catalog: Catalog, ses: StorageElements, *, site: str | None = None,
                 submit_request: SubmitRequest | None = None, job_id: int | None = None,
                 work_dir: str | Path | None = None) -> None:
        self.catalog = catalog
        self.ses = ses
        self.site = site
        self.submit_request = submit_request
        self.job_id = job_id
        self.work_dir = Path(work_dir) if work_dir else None

    # -- put --------------------------------------------------------------------------------

    def put_and_register(self, lfn: str, local_path: str | Path, se: str, *,
                         guid: str | None = None, failover_ses: Sequence[str] = (),
                         progress: Progress | None = None) -> PutResult:
        """Upload ``local_path`` to ``se`` and register it as ``lfn`` (see the module doc)."""
        local = adler32_file(local_path)
        guid = guid or str(uuid.uuid4()).upper()
        catalog_known = self._check_new(lfn)
        errors: list[str] = []
        for index, target in enumerate([se, *[s for s in failover_ses if s != se]]):
            try:
                if not catalog_known and self.ses[target].exists(lfn):
                    # the catalog cannot tell whether this copy is registered: never
                    # overwrite it
                    raise StorageError(f"{lfn} exists already on {target}")
                self.ses[target].put(lfn, local_path, checksum=local.checksum,
                                     progress=progress)
            except (StorageError, NotFoundError) as exc:
                errors.append(f"{target}: {exc.message}")
                log.warning("upload of %s to %s failed: %s", lfn, target, exc.message)
                continue
            result = PutResult(lfn, target, local.size, local.checksum, guid,
                               failover=index > 0)
            return self._register_new(result, se)
        raise StorageError(f"upload of {lfn} failed on every SE: " + "; ".join(errors))

    def _check_new(self, lfn: str) -> bool:
        """Refuse an LFN that is registered already; True when the catalog said it is new,
        False when the catalog could not be asked (jobs go on: a request registers later)."""
        try:
            found = self.catalog.get_file_metadata([lfn])
        except PilotWMSError as exc:
            if self.submit_request is None:
                raise CatalogError(f"cannot check {lfn} in the catalog: {exc.message}") \
                    from None
            return False
        if lfn in found.successful:
            raise AlreadyExistsError(f"{lfn} is registered already")
        reason = found.failed.get(lfn, "")
        if "no such file" not in reason.lower():
            raise CatalogError(f"{lfn}: {reason or 'no answer from the catalog'}")
        return True

    def _entry(self, result: PutResult) -> dict[str, Any]:
        return {"PFN": self.ses[result.se].url(result.lfn), "Size": result.size,
                "SE": result.se, "GUID": result.guid, "Checksum": result.checksum,
                "ChecksumType": "Adler32"}

    def _register_new(self, result: PutResult, wanted_se: str) -> PutResult:
        lfn = result.lfn
        operations: list[dict[str, Any]] = []
        try:
            single_result(self.catalog.add_file({lfn: self._entry(result)}), lfn, "register")
        except PilotWMSError as exc:
            if self.submit_request is None:
                self._rollback_upload(result.se, lfn)
                raise CatalogError(f"registration of {lfn} failed, upload removed: "
                                   f"{exc.message}") from None
            log.warning("registration of %s failed (%s): recording a request", lfn,
                        exc.message)
            operations.append(self._op("RegisterFile", result.se, "", [result]))
        if result.failover:
            operations.append(self._op("ReplicateAndRegister", wanted_se, result.se, [result]))
            operations.append(self._op("RemoveReplica", result.se, "", [result]))
        if operations:
            if self.submit_request is None:
                raise StorageError(f"{lfn} is on the failover SE {result.se}, but there is "
                                   "no request service to move it")
            result.request_id = self.submit_request(self._request(lfn, operations))
        return result

    def _rollback_upload(self, se: str, lfn: str) -> None:
        try:
            self.ses[se].remove(lfn)
        except PilotWMSError as exc:  # the copy is dark data now; say so loudly
            log.error("rollback: could not remove %s from %s: %s", lfn, se, exc.message)

    def _op(self, kind: str, target: str, source: str, files: Iterable[PutResult]
            ) -> dict[str, Any]:
        return {"Type": kind, "TargetSE": target, "SourceSE": source,
                "Files": [{"LFN": f.lfn, "Size": f.size, "Checksum": f.checksum,
                           "GUID": f.guid, "PFN": self.ses[f.se].url(f.lfn)} for f in files]}

    def _request(self, lfn: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
        name = f"{'job' + str(self.job_id) if self.job_id else 'dm'}-{uuid.uuid4().hex[:12]}"
        wire: dict[str, Any] = {"RequestName": name, "Operations": operations}
        if self.job_id is not None:
            wire["JobID"] = self.job_id
        return wire

    # -- get --------------------------------------------------------------------------------

    def replicas(self, lfn: str, all_status: bool = False) -> dict[str, str]:
        """``{SE: PFN}``: the good replicas (all of them with ``all_status``)."""
        return dict(single_result(self.catalog.get_replicas([lfn], all_status), lfn, "replicas of"))

    def catalog_checksum(self, lfn: str) -> str | None:
        meta = single_result(self.catalog.get_file_metadata([lfn]), lfn, "metadata of")
        value = meta.get("Checksum")
        return normalise_checksum(value) if value else None

    def ordered_ses(self, replicas: Iterable[str]) -> list[str]:
        """Replica SEs, those of the local site first (each group in name order)."""
        local = set(self.ses.site_ses(self.site))
        names = sorted(replicas)
        return [s for s in names if s in local] + [s for s in names if s not in local]

    def get(self, lfn: str, dest: str | Path, *, progress: Progress | None = None) -> Path:
        """Download ``lfn`` to ``dest`` (a file path, or an existing directory to put it in);
        returns the file written."""
        target = Path(dest)
        if target.is_dir():
            target = target / lfn.rsplit("/", 1)[-1]
        checksum = self.catalog_checksum(lfn)
        replicas = self.replicas(lfn)
        if not replicas:
            raise NotFoundError(f"{lfn} has no replica")
        errors: list[str] = []
        for se in self.ordered_ses(replicas):
            if se not in self.ses:
                errors.append(f"{se}: not a configured storage element")
                continue
            try:
                self.ses[se].get(lfn, target, checksum=checksum, progress=progress)
                return target
            except (StorageError, NotFoundError) as exc:
                errors.append(f"{se}: {exc.message}")
                log.warning("download of %s from %s failed: %s", lfn, se, exc.message)
        raise StorageError(f"no replica of {lfn} could be read: " + "; ".join(errors))

    def url_for_job(self, lfn: str) -> str:
        """A URL of the best replica for a job that reads its input in place."""
        replicas = self.replicas(lfn)
        for se in self.ordered_ses(replicas):
            if se in self.ses:
                return self.ses[se].url(lfn)
        raise NotFoundError(f"{lfn} has no replica on a configured storage element")

    # -- replicate --------------------------------------------------------------------------

    def replicate_and_register(self, lfn: str, target_se: str, *,
                               source_se: str | None = None,
                               progress: Progress | None = None) -> bool:
        """Copy ``lfn`` to ``target_se`` and register the replica. False when it was there
        already. The copy goes through a verified local temp file."""
        if target_se in self.replicas(lfn, all_status=True):
            return False
        replicas = self.replicas(lfn)
        meta = single_result(self.catalog.get_file_metadata([lfn]), lfn, "metadata of")
        checksum = normalise_checksum(meta["Checksum"]) if meta.get("Checksum") else None
        sources = [source_se] if source_se else self.ordered_ses(replicas)
        with tempfile.TemporaryDirectory(prefix="pilotwms-repl-", dir=self.work_dir) as tmp:
            copy = Path(tmp) / "file"
            errors: list[str] = []
            for se in sources:
                try:
                    self.ses[se].get(lfn, copy, checksum=checksum)
                    break
                except (StorageError, NotFoundError) as exc:
                    errors.append(f"{se}: {exc.message}")
            else:
                raise StorageError(f"no source replica of {lfn} could be read: "
                                   + "; ".join(errors))
            info = self.ses[target_se].put(lfn, copy, checksum=checksum, progress=progress)
        try:
            single_result(self.catalog.add_replica(
                {lfn: {"SE": target_se, "PFN": self.ses[target_se].url(lfn)}}),
                lfn, "register replica of")
        except PilotWMSError as exc:
            self._rollback_upload(target_se, lfn)
            raise CatalogError(f"replica of {lfn} on {target_se} not registered, copy "
                               f"removed: {exc.message}") from None
        log.info("replicated %s to %s (%d bytes)", lfn, target_se, info.size)
        return True

    # -- remove -----------------------------------------------------------------------------

    def remove_file(self, lfns: str | Iterable[str]) -> BulkResult:
        """Remove every replica, then the catalog entry. A replica whose removal failed stays
        registered (the others are unregistered) and the LFN is reported failed."""
        items = [lfns] if isinstance(lfns, str) else list(lfns)
        result = BulkResult()
        found = self.catalog.get_replicas(items, True)  # every replica, whatever its status
        for lfn, reason in found.failed.items():
            result.fail(lfn, reason)
        for lfn, replicas in found.successful.items():
            gone, errors = [], []
            for se in sorted(replicas):
                try:
                    self.ses[se].remove(lfn)
                    gone.append(se)
                except (StorageError, NotFoundError) as exc:
                    errors.append(f"{se}: {exc.message}")
            if errors:
                for se in gone:
                    self.catalog.remove_replica({lfn: {"SE": se}})
                result.fail(lfn, "; ".join(errors))
                continue
            outcome = self.catalog.remove_file([lfn])
            if lfn in outcome.failed:
                result.fail(lfn, f"storage removed but catalog entry kept: "
                                 f"{outcome.failed[lfn]}")
            else:
                result.ok(lfn)
        return result

    def remove_replica(self, lfns: str | Iterable[str], se: str) -> BulkResult:
        """Remove the replicas on ``se`` (storage, then catalog); the last replica of a file
        is refused."""
        items = [lfns] if isinstance(lfns, str) else list(lfns)
        result = BulkResult()
        found = self.catalog.get_replicas(items, True)
        for lfn, reason in found.failed.items():
            result.fail(lfn, reason)
        for lfn, replicas in found.successful.items():
            if se not in replicas:
                result.ok(lfn, False)
                continue
            if len(replicas) == 1:
                result.fail(lfn, LAST_REPLICA)
                continue
            try:
                self.ses[se].remove(lfn)
            except (StorageError, NotFoundError) as exc:
                result.fail(lfn, f"{se}: {exc.message}")
                continue
            outcome = self.catalog.remove_replica({lfn: {"SE": se}})
            if lfn in outcome.failed:
                result.fail(lfn, f"removed from {se} but still registered: "
                                 f"{outcome.failed[lfn]}")
            else:
                result.ok(lfn, True)
        return result

    # -- consistency ------------------------------------------------------------------------

    def catalog_files(self, directory: str) -> dict[str, dict[str, Any]]:
        """``{lfn: {"Replicas": {SE: PFN}, "MetaData": {...}}}`` under ``directory``."""
        out: dict[str, dict[str, Any]] = {}
        todo = [directory]
        while todo:
            listing = self.catalog.list_directory(todo.pop(), True)
            for path, reason in listing.failed.items():
                raise CatalogError(f"cannot list {path}: {reason}")
            for value in listing.successful.values():
                out.update(value.get("Files") or {})
                todo.extend(value.get("SubDirs") or {})
        return out

    def _walk_se(self, se: str, directory: str) -> set[str]:
        found: set[str] = set()
        todo = [directory]
        while todo:
            path = todo.pop()
            try:
                entries = self.ses[se].list(path)
            except StorageFileNotFoundError:
                continue
            for entry in entries:
                child = f"{path.rstrip('/')}/{entry.name}"
                (todo.append(child) if entry.is_dir else found.add(child))
        return found

    def check_consistency(self, directory: str, ses: Sequence[str] | None = None, *,
                          checksums: bool = True) -> ConsistencyReport:
        """Compare the catalog under ``directory`` with the SEs (all configured ones by
        default): every replica must exist with the catalog's size and adler32, and no file
        may be on an SE without a catalog replica there."""
        if not directory.startswith("/"):
            raise InvalidArgumentError(f"not an absolute catalog path: {directory!r}")
        report = ConsistencyReport()
        files = self.catalog_files(directory)
        wanted = list(ses) if ses is not None else list(self.ses)
        for lfn, info in sorted(files.items()):
            meta = info.get("MetaData") or {}
            for se in sorted(info.get("Replicas") or {}):
                if se not in wanted:
                    continue
                report.checked += 1
                try:
                    found = self.ses[se].stat(lfn) if checksums else None
                    size = found.size if found else self.ses[se].size(lfn)
                except StorageFileNotFoundError:
                    report.missing.append((lfn, se))
                    continue
                except PilotWMSError as exc:
                    report.errors.append((lfn, se, exc.message))
                    continue
                if meta.get("Size") is not None and size != int(meta["Size"]):
                    report.bad_size.append((lfn, se, size, int(meta["Size"])))
                if found and meta.get("Checksum") and \
                        found.checksum != normalise_checksum(meta["Checksum"]):
                    report.bad_checksum.append(
                        (lfn, se, found.checksum, normalise_checksum(meta["Checksum"])))
        for se in wanted:
            known = {lfn for lfn, info in files.items() if se in (info.get("Replicas") or {})}
            try:
                on_se = self._walk_se(se, directory)
            except PilotWMSError as exc:
                report.errors.append((directory, se, exc.message))
                continue
            report.extra.extend((se, path) for path in sorted(on_se - known))
        return report


__all__ = ["Catalog", "CatalogError", "ChecksumMismatchError", "ConsistencyReport",
           "DataManager", "PutResult"]
