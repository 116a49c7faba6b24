"""Failover requests (DIRAC's RequestManagement idea): validation, execution, back-off.

Wire form (what ``ReqManager.putRequest`` takes and ``getRequest`` returns)::

    {"RequestName": "job12-outputs", "JobID": 12,          # JobID optional
     "Operations": [
        {"Type": "RegisterFile", "TargetSE": "FAILOVER-SE",
         "Files": [{"LFN": "/demo/user/a/alice/out.root", "Size": 1234,
                    "Checksum": "0a1b2c3d", "GUID": "...", "PFN": "..."}]},
        {"Type": "ReplicateAndRegister", "TargetSE": "DISK-A", "SourceSE": "FAILOVER-SE",
         "Files": [{"LFN": "/demo/user/a/alice/out.root"}]},
        {"Type": "RemoveReplica", "TargetSE": "FAILOVER-SE",
         "Files": [{"LFN": "/demo/user/a/alice/out.root"}]}]}

Operation types: ``RegisterFile`` (catalog entry for a file already on ``TargetSE``; needs
Size, Checksum, GUID), ``RegisterReplica``, ``ReplicateAndRegister`` (``TargetSE`` may list
several SEs, comma-separated; ``SourceSE`` optional), ``PutAndRegister`` (a file stored on
the failover SE ``SourceSE`` but not registered: copied to ``TargetSE``, registered there, and
the unregistered source copy removed; needs Size, Checksum, GUID), ``RemoveReplica``,
``RemoveFile``.
Operations run in order; one that does not finish stops the request, which is retried later
with exponential back-off (``retry_delay * 2**attempts``, capped) until ``max_attempts``, then
Failed. Each file's step is idempotent (a replica already there, a file already registered
with the same checksum, a replica already gone count as done), so a retry repeats nothing.

Example::

    >>> new = parse_request({"RequestName": "r", "Operations": [
    ...     {"Type": "RemoveFile", "Files": [{"LFN": "/demo/f"}]}]}, "alice", "u", "demo")
    >>> new.operations[0].type, backoff(3, 60, 3600)
    ('RemoveFile', 480)
"""

from __future__ import annotations

import logging
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from core.db import utcnow
from core.exceptions import InvalidArgumentError, PilotWMSError
from dms.db.rms import (
    DONE,
    FAILED,
    WAITING,
    FileRow,
    NewOperation,
    NewRequest,
    OperationRow,
    RequestRow,
)
from dms.logic.data_manager import DataManager, single_result
from dms.storage.base import StorageFileNotFoundError, normalise_checksum

log = logging.getLogger("pilotwms.requests")

OPERATION_TYPES = frozenset({"RegisterFile", "RegisterReplica", "ReplicateAndRegister",
                             "PutAndRegister", "RemoveReplica", "RemoveFile"})
NEEDS_TARGET = frozenset({"RegisterFile", "RegisterReplica", "ReplicateAndRegister",
                          "PutAndRegister", "RemoveReplica"})
NEEDS_FILE_INFO = frozenset({"RegisterFile", "PutAndRegister"})
MAX_FILES = 10_000


def backoff(attempts: int, base: float, cap: float) -> int:
    """Seconds to wait before attempt ``attempts + 1``."""
    return int(min(cap, base * (2 ** max(attempts, 0))))


def parse_request(wire: Any, owner: str, owner_group: str, vo: str | None) -> NewRequest:
    """A request from its wire form, checked (InvalidArgumentError names the problem)."""
    if not isinstance(wire, dict):
        raise InvalidArgumentError("a request is a dict with RequestName and Operations")
    name = wire.get("RequestName") or ""
    if not isinstance(name, str) or len(name) > 255:
        raise InvalidArgumentError("RequestName must be a string of at most 255 characters")
    job_id = wire.get("JobID")
    if job_id is not None and (not isinstance(job_id, int) or isinstance(job_id, bool)):
        raise InvalidArgumentError("JobID must be an integer")
    ops = wire.get("Operations")
    if not isinstance(ops, list) or not ops:
        raise InvalidArgumentError("a request needs a non-empty list of Operations")
    operations, count = [], 0
    for index, op in enumerate(ops):
        where = f"Operations[{index}]"
        if not isinstance(op, dict) or op.get("Type") not in OPERATION_TYPES:
            raise InvalidArgumentError(
                f"{where}: Type must be one of {', '.join(sorted(OPERATION_TYPES))}")
        target = op.get("TargetSE") or ""
        source = op.get("SourceSE") or ""
        if not isinstance(target, str) or not isinstance(source, str):
            raise InvalidArgumentError(f"{where}: TargetSE and SourceSE are strings")
        if op["Type"] in NEEDS_TARGET and not target:
            raise InvalidArgumentError(f"{where}: {op['Type']} needs a TargetSE")
        files = op.get("Files")
        if not isinstance(files, list) or not files:
            raise InvalidArgumentError(f"{where}: Files must be a non-empty list")
        for f in files:
            if not isinstance(f, dict) or not isinstance(f.get("LFN"), str) or \
                    not f["LFN"].startswith("/"):
                raise InvalidArgumentError(f"{where}: every file needs an absolute LFN")
            if op["Type"] in NEEDS_FILE_INFO and not all(
                    f.get(k) not in (None, "") for k in ("Size", "Checksum", "GUID")):
                raise InvalidArgumentError(
                    f"{where}: {op['Type']} needs Size, Checksum, GUID for every file")
        if op["Type"] == "PutAndRegister" and not source:
            raise InvalidArgumentError(f"{where}: PutAndRegister needs the SourceSE holding "
                                       "the files")
        count += len(files)
        operations.append(NewOperation(op["Type"], target, source, [dict(f) for f in files]))
    if count > MAX_FILES:
        raise InvalidArgumentError(f"a request may hold at most {MAX_FILES} files")
    return NewRequest(name or f"request-{owner}", owner, owner_group, vo, job_id, operations)


def to_wire(req: RequestRow) -> dict[str, Any]:
    return {
        "RequestID": req.request_id, "RequestName": req.name, "Owner": req.owner,
        "OwnerGroup": req.owner_group, "JobID": req.job_id, "Status": req.status,
        "Attempts": req.attempts, "Error": req.error, "CreationTime": req.created,
        "LastUpdate": req.last_update, "NotBefore": req.not_before,
        "Operations": [{
            "Type": op.type, "Status": op.status, "TargetSE": op.target_se,
            "SourceSE": op.source_se, "Error": op.error,
            "Files": [{"LFN": f.lfn, "PFN": f.pfn, "Size": f.size, "Checksum": f.checksum,
                       "GUID": f.guid, "Status": f.status, "Attempts": f.attempts,
                       "Error": f.error} for f in op.files]} for op in req.operations],
    }


def digest(req: RequestRow) -> str:
    """DIRAC's one-line-per-operation summary of a request (``Request.getDigest``)."""
    lines = [f"Name:{req.name}"]
    for order, op in enumerate(req.operations):
        parts = [op.type, op.type, op.status, str(order)]
        if op.target_se:
            parts.append(op.target_se)
        if op.files:
            more = f"...+<{len(op.files) - 1} files>" if len(op.files) > 1 else ""
            parts.append(op.files[0].lfn + more)
        lines.append(":".join(parts))
    return "\n".join(lines)


def file_statuses(req: RequestRow, lfns: list[str]) -> dict[str, str]:
    """``{lfn: status}`` of the request's files among ``lfns`` (the last operation's)."""
    found = {f.lfn: f.status for op in req.operations for f in op.files}
    return {lfn: found[lfn] for lfn in lfns if lfn in found}


def _run_file(dm: DataManager, op: OperationRow, f: FileRow) -> None:
    """One file's step of one operation; raises on failure."""
    lfn = f.lfn
    if op.type == "RegisterFile":
        se = op.target_ses[0]
        entry = {"PFN": f.pfn or dm.ses[se].url(lfn), "Size": f.size, "SE": se,
                 "GUID": f.guid, "Checksum": f.checksum, "ChecksumType": "Adler32"}
        found = dm.ses[se].stat(lfn)  # register only what is really there, intact
        if f.checksum and found.checksum != normalise_checksum(f.checksum):
            raise PilotWMSError(f"{lfn} on {se} has adler32 {found.checksum}, "
                                f"expected {f.checksum}")
        single_result(dm.catalog.add_file({lfn: entry}), lfn, "register")
    elif op.type == "RegisterReplica":
        se = op.target_ses[0]
        dm.ses[se].stat(lfn)
        entry = {"SE": se, "PFN": f.pfn or dm.ses[se].url(lfn)}
        single_result(dm.catalog.add_replica({lfn: entry}), lfn, "register replica of")
    elif op.type == "ReplicateAndRegister":
        for se in op.target_ses:
            dm.replicate_and_register(lfn, se, source_se=op.source_se or None)
    elif op.type == "PutAndRegister":
        _put_and_register(dm, op, f)
    elif op.type == "RemoveReplica":
        for se in op.target_ses:
            result = dm.remove_replica([lfn], se)
            if lfn in result.failed:
                raise PilotWMSError(result.failed[lfn])
    elif op.type == "RemoveFile":
        result = dm.remove_file([lfn])
        if lfn in result.failed and "no such file" not in result.failed[lfn].lower():
            raise PilotWMSError(result.failed[lfn])


def _put_and_register(dm: DataManager, op: OperationRow, f: FileRow) -> None:
    """Copy ``f`` from the (unregistered) source SE to the target, register it there, then
    remove the source copy unless the catalog knows it. Each step is skipped when done."""
    lfn, source, target = f.lfn, op.source_se, op.target_ses[0]
    checksum = normalise_checksum(str(f.checksum))
    known = dm.catalog.get_replicas([lfn], True).successful.get(lfn) or {}
    if target not in known:
        try:
            on_target = dm.ses[target].stat(lfn).checksum == checksum
        except StorageFileNotFoundError:
            on_target = False
        if not on_target:
            with tempfile.TemporaryDirectory(prefix="pilotwms-put-", dir=dm.work_dir) as tmp:
                copy = Path(tmp) / "file"
                dm.ses[source].get(lfn, copy, checksum=checksum)
                dm.ses[target].put(lfn, copy, checksum=checksum)
        entry = {"PFN": dm.ses[target].url(lfn), "Size": f.size, "SE": target,
                 "GUID": f.guid, "Checksum": checksum, "ChecksumType": "Adler32"}
        single_result(dm.catalog.add_file({lfn: entry}), lfn, "register")
    if source not in known and source != target:
        dm.ses[source].remove(lfn)


def execute(dm: DataManager, req: RequestRow, *, max_attempts: int = 10,
            retry_delay: float = 60.0, max_delay: float = 3600.0) -> RequestRow:
    """Run the request's pending operations in order; sets the statuses, errors, attempts
    and the next ``not_before`` on ``req`` (the caller saves it)."""
    blocked = False
    for op in req.operations:
        if op.status == DONE:
            continue
        for f in op.files:
            if f.status == DONE:
                continue
            f.attempts += 1
            try:
                _run_file(dm, op, f)
            except PilotWMSError as exc:
                f.error = exc.message
                log.warning("request %d %s %s: %s", req.request_id, op.type, f.lfn,
                            exc.message)
            else:
                f.status, f.error = DONE, None
        if all(f.status == DONE for f in op.files):
            op.status, op.error = DONE, None
        else:
            op.error = "; ".join(f"{f.lfn}: {f.error}" for f in op.files if f.error)
            blocked = True
            break  # later operations depend on this one
    req.attempts += 1
    if not blocked:
        req.status, req.error = DONE, None
    elif req.attempts >= max_attempts:
        req.status = FAILED
        req.error = f"gave up after {req.attempts} attempts"
        for op in req.operations:
            if op.status != DONE:
                op.status = FAILED
                for f in op.files:
                    if f.status != DONE:
                        f.status = FAILED
    else:
        req.status = WAITING
        req.error = next((op.error for op in req.operations if op.error), None)
        req.not_before = utcnow() + timedelta(
            seconds=backoff(req.attempts - 1, retry_delay, max_delay))
    return req
