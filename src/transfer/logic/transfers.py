"""Transfers, ectrans-style: submission rules, one attempt, the outcome and its retries.

Wire form of a submission (``TransferManager.submitTransfer``; ``dtransfer`` makes it)::

    {"Remote": "ftp1",                 # the association
     "Direction": "put",               # "put" (default) or "get"
     "Source": "spool:<ticket>",       # put: spool:<ticket> | lfn:/vo/... | job:<id>:<file>
                                       # get: the remote file (relative to the directory)
     "Target": "f.grib",               # put: remote name (default: the source's name);
                                       # get: a name for the spooled copy
     "RetryCount": 144, "RetryFrequency": "10m",    # None: ectrans's defaults
     "Overwrite": None,                # None: the association's "overwrite" option
     "Sync": False,                    # synchronous: no retry unless RetryCount is given
     "MailTo": "ops@example.org", "OnSuccess": False, "OnFailure": True}

Defaults as ectrans: asynchronous transfers retry 144 times every 10 minutes (one day);
synchronous ones are not retried. An attempt that fails for a reason retrying cannot change
(wrong password or key, target exists without overwrite, permission denied, pinned host key
mismatch) fails the transfer at once; anything else is retried after ``RetryFrequency``.

Example::

    >>> parse_duration("10m"), parse_duration("90"), parse_duration("1h30m")
    (600, 90, 5400)
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.db import utcnow
from core.exceptions import InvalidArgumentError
from transfer.db import transfers as db
from transfer.errors import TransferError

DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?$")
EMAIL = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$")
MAX_RETRIES = 10_000
KNOWN = frozenset({"Remote", "Direction", "Source", "Target", "RetryCount", "RetryFrequency",
                   "Overwrite", "Sync", "MailTo", "OnSuccess", "OnFailure"})


def parse_duration(value: Any) -> int:
    """Seconds from ``90``, ``"90"``, ``"90s"``, ``"10m"``, ``"2h"``, ``"1d"`` or mixes."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and value.strip() and DURATION.match(value.strip()):
        d, h, m, s = (int(x or 0) for x in DURATION.match(value.strip()).groups())  # type: ignore[union-attr]
        seconds = ((d * 24 + h) * 60 + m) * 60 + s
    else:
        raise InvalidArgumentError(f"not a duration: {value!r} (e.g. 600, 10m, 2h)")
    if seconds < 1:
        raise InvalidArgumentError("the retry frequency must be at least one second")
    return seconds


@dataclass(frozen=True)
class Submission:
    association: str
    direction: str
    source_kind: str
    source: str
    target: str
    retry_count: int
    retry_frequency: int
    overwrite: bool | None
    sync: bool
    mail_to: str | None
    on_success: bool
    on_failure: bool


def _flag(wire: dict[str, Any], key: str) -> bool:
    value = wire.get(key, False)
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{key} must be true or false")
    return value


def parse_submission(wire: Any, *, default_retries: int, default_frequency: int) -> Submission:
    if not isinstance(wire, dict):
        raise InvalidArgumentError("a transfer is a dict with Remote and Source")
    unknown = sorted(set(wire) - KNOWN)
    if unknown:
        raise InvalidArgumentError(f"unknown key(s) {', '.join(unknown)}")
    remote = wire.get("Remote")
    if not isinstance(remote, str) or not remote:
        raise InvalidArgumentError("Remote (the association's name) is required")
    direction = wire.get("Direction") or "put"
    if direction not in ("put", "get"):
        raise InvalidArgumentError("Direction is 'put' or 'get'")
    source = wire.get("Source")
    if not isinstance(source, str) or not source or "\0" in source or "\n" in source:
        raise InvalidArgumentError("Source is required")
    if direction == "put":
        kind, _, rest = source.partition(":")
        if kind not in ("spool", "lfn", "job") or not rest:
            raise InvalidArgumentError("Source is spool:<ticket>, lfn:/<path> or "
                                       "job:<id>:<file>")
        if kind == "lfn" and not rest.startswith("/"):
            raise InvalidArgumentError("an LFN source must be absolute")
        if kind == "job":
            job, _, name = rest.partition(":")
            if not job.isdigit() or not name or "/" in name:
                raise InvalidArgumentError("a job source is job:<id>:<file name>")
    else:
        kind, rest = "remote", source
    target = wire.get("Target") or ""
    if not isinstance(target, str) or "\0" in target or "\n" in target:
        raise InvalidArgumentError("Target must be a file name")
    if not target:
        if kind in ("spool", "job"):
            raise InvalidArgumentError("Target is required for this source")
        target = posixpath.basename(rest.rstrip("/"))
    if target.endswith("/") or target in (".", "..") or ".." in target.split("/"):
        raise InvalidArgumentError(f"bad target name {target!r}")
    sync = _flag(wire, "Sync")
    count = wire.get("RetryCount")
    if count is None:
        count = 0 if sync else default_retries
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_RETRIES:
        raise InvalidArgumentError(f"RetryCount must be 0 to {MAX_RETRIES}")
    frequency = wire.get("RetryFrequency")
    frequency = default_frequency if frequency is None else parse_duration(frequency)
    overwrite = wire.get("Overwrite")
    if overwrite is not None and not isinstance(overwrite, bool):
        raise InvalidArgumentError("Overwrite must be true, false or null")
    mail_to = wire.get("MailTo") or None
    if mail_to is not None and (not isinstance(mail_to, str) or not all(
            EMAIL.match(a.strip()) for a in mail_to.split(","))):
        raise InvalidArgumentError(f"MailTo: not an e-mail address: {mail_to!r}")
    on_success, on_failure = _flag(wire, "OnSuccess"), _flag(wire, "OnFailure")
    if mail_to and not (on_success or on_failure):
        on_failure = True  # an address alone: tell about failures
    return Submission(remote, direction, kind, rest, target, count, frequency, overwrite,
                      sync, mail_to, on_success, on_failure)


def outcome(row: db.TransferRow, error: TransferError | None, nbytes: int,
            now: datetime | None = None) -> db.TransferRow:
    """The transfer's state after one attempt (``row.attempts`` already counts it)."""
    now = now or utcnow()
    row.bytes_done = nbytes if error is None else row.bytes_done
    if error is None:
        row.status, row.error = db.DONE, None
    elif error.permanent:
        row.status, row.error = db.FAILED, error.message
    elif row.attempts > row.retry_count:
        row.status = db.FAILED
        row.error = f"{error.message} (gave up after {row.attempts} attempts)"
    else:
        row.status, row.error = db.WAITING, error.message
        row.not_before = now + timedelta(seconds=row.retry_frequency)
    return row


def to_wire(row: db.TransferRow, attempts: list[db.AttemptRow] | None = None
            ) -> dict[str, Any]:
    out: dict[str, Any] = {
        "TransferID": row.transfer_id, "Owner": row.owner, "OwnerGroup": row.owner_group,
        "Remote": row.association, "Direction": row.direction,
        "Source": f"{row.source_kind}:{row.source}" if row.source_kind != "remote"
        else row.source, "Target": row.target, "Size": row.size, "Checksum": row.checksum,
        "Status": row.status, "Attempts": row.attempts, "RetryCount": row.retry_count,
        "RetryFrequency": row.retry_frequency, "Overwrite": row.overwrite, "Sync": row.sync,
        "MailTo": row.mail_to, "OnSuccess": row.on_success, "OnFailure": row.on_failure,
        "BytesDone": row.bytes_done, "Error": row.error, "CreationTime": row.created,
        "LastUpdate": row.last_update, "NextAttempt": row.not_before
        if row.status == db.WAITING else None}
    if row.source_kind == "spool":
        out["Source"] = "local file"
    if attempts is not None:
        out["AttemptLog"] = [{"Attempt": x.attempt, "Started": x.started, "Ended": x.ended,
                              "OK": x.ok, "Bytes": x.bytes, "Error": x.error}
                             for x in attempts]
    return out
