"""The server's spool: local files uploaded for a transfer, and files fetched by ``-get``.

Layout: ``<SpoolDir>/<owner>/<ticket>`` (the file) and ``<ticket>.adler32`` (its checksum,
written when the upload completed); uploads stream into ``.<ticket>.part`` and are renamed
only when their size matches the announced one.

Nothing is accepted that cannot be stored: :func:`check_space` refuses an upload whose size
would leave less than ``SpoolReserveMiB`` free on the spool's file system (asked before the
body is sent), and a write that still hits a full disk (concurrent uploads) removes its
partial file and raises :class:`~transfer.errors.SpoolFullError`; the transfer is only
created afterwards, from a complete spooled file.

Example::

    >>> import tempfile, pathlib
    >>> spool = Spool(pathlib.Path(tempfile.mkdtemp()), reserve_bytes=0)
    >>> ticket = spool.new_ticket("alice", 5)
    >>> w = spool.writer("alice", ticket, 5); w.write(b"hello"); w.finish()
    (5, '062c0215')
    >>> spool.stored("alice", ticket)[1:]
    (5, '062c0215')
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from core.exceptions import InvalidArgumentError, NotFoundError
from dms.storage.base import Adler32
from transfer.errors import SpoolFullError

TICKET = re.compile(r"^[0-9a-f]{32}$")
USER = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class SpoolWriter:
    """Streams one upload to ``.<ticket>.part``; :meth:`finish` checks and renames."""

    def __init__(self, final: Path, expected: int) -> None:
        self.final = final
        self.part = final.with_name(f".{final.name}.part")
        self.expected = expected
        self.digest = Adler32()
        self.stream = open(self.part, "wb")  # noqa: SIM115 - closed by finish/abort

    def write(self, data: bytes) -> None:
        if self.digest.size + len(data) > self.expected:
            self.abort()
            raise InvalidArgumentError(f"upload larger than the announced {self.expected} "
                                       "bytes")
        try:
            self.stream.write(data)
        except OSError as exc:
            self.abort()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise SpoolFullError("the spool filled up during the upload: nothing was "
                                     "accepted, try again later") from None
            raise
        self.digest.update(data)

    def finish(self) -> tuple[int, str]:
        try:
            self.stream.flush()
            os.fsync(self.stream.fileno())
            self.stream.close()
        except OSError as exc:
            self.abort()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise SpoolFullError("the spool filled up during the upload: nothing was "
                                     "accepted") from None
            raise
        if self.digest.size != self.expected:
            self.abort()
            raise InvalidArgumentError(f"upload incomplete: {self.digest.size} of "
                                       f"{self.expected} bytes")
        checksum = self.digest.hexdigest()
        try:
            self.final.with_name(self.final.name + ".adler32").write_text(checksum)
        except OSError as exc:
            self.abort()
            raise SpoolFullError(f"cannot record the upload: {exc.strerror}") from None
        self.part.replace(self.final)
        return self.digest.size, checksum

    def abort(self) -> None:
        if not self.stream.closed:
            self.stream.close()
        self.part.unlink(missing_ok=True)


class Spool:
    def __init__(self, base: Path, reserve_bytes: int, max_file_bytes: int = 0) -> None:
        self.base = Path(base)
        self.reserve = reserve_bytes
        self.max_file = max_file_bytes

    def user_dir(self, owner: str) -> Path:
        if not USER.match(owner):
            raise InvalidArgumentError(f"bad user name {owner!r}")
        path = self.base / owner
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def free_bytes(self) -> int:
        self.base.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(self.base).free

    def check_space(self, size: int) -> None:
        """SpoolFullError when ``size`` more bytes would eat into the reserve."""
        if size < 0:
            raise InvalidArgumentError("size must not be negative")
        if self.max_file and size > self.max_file:
            raise SpoolFullError(f"{size} bytes is over the spool's limit of {self.max_file} "
                                 "bytes per file")
        free = self.free_bytes()
        if size + self.reserve > free:
            raise SpoolFullError(
                f"the spool cannot take {size} bytes: {free} bytes free, "
                f"{self.reserve} kept in reserve; nothing was accepted")

    def new_ticket(self, owner: str, size: int) -> str:
        self.check_space(size)
        self.user_dir(owner)
        return secrets.token_hex(16)

    def path(self, owner: str, ticket: str) -> Path:
        if not TICKET.match(ticket):
            raise InvalidArgumentError(f"bad spool ticket {ticket!r}")
        return self.user_dir(owner) / ticket

    def writer(self, owner: str, ticket: str, size: int) -> SpoolWriter:
        final = self.path(owner, ticket)
        if final.exists():
            raise InvalidArgumentError(f"spool ticket {ticket} was used already")
        self.check_space(size)
        return SpoolWriter(final, size)

    def stored(self, owner: str, ticket: str) -> tuple[Path, int, str]:
        """(path, size, adler32) of a complete upload."""
        path = self.path(owner, ticket)
        try:
            checksum = path.with_name(path.name + ".adler32").read_text().strip()
            size = path.stat().st_size
        except OSError:
            raise NotFoundError(f"no uploaded file for spool ticket {ticket}") from None
        return path, size, checksum

    def get_target(self, owner: str) -> Path:
        """A fresh spool path for a file fetched by ``-get``."""
        return self.user_dir(owner) / secrets.token_hex(16)

    def discard(self, path: str | Path | None) -> None:
        if not path:
            return
        p = Path(path)
        if self.base.resolve() not in p.resolve().parents:
            return  # never remove anything outside the spool
        for item in (p, p.with_name(p.name + ".adler32"),
                     p.with_name(p.name + ".pwms-part")):
            item.unlink(missing_ok=True)

    def sweep(self, older_than: float, in_use: Callable[[list[str]], set[str]]) -> int:
        """Remove, when older than ``older_than`` seconds, partial uploads and spooled files
        that no transfer references (``in_use(paths)`` says which are referenced: an upload
        whose transfer was never submitted). Returns how many files went."""
        cutoff = time.time() - older_than
        removed = 0
        if not self.base.is_dir():
            return 0
        for user in self.base.iterdir():
            if not user.is_dir():
                continue
            old = [item for item in user.iterdir() if item.stat().st_mtime < cutoff]
            for item in old:
                if item.name.startswith(".") and item.name.endswith(".part"):
                    item.unlink(missing_ok=True)
                    removed += 1
            spooled = [str(i) for i in old if TICKET.match(i.name)]
            used = in_use(spooled) if spooled else set()
            for path in spooled:
                if path not in used:
                    self.discard(path)
                    removed += 1
        return removed
