"""The storage plugin interface, its errors and the adler32 helpers every plugin shares.

A plugin reaches one storage element through one protocol. Paths given to a plugin are LFNs
(``/demo/user/a/alice/f1``); the plugin maps them under its configured base path. Checksums
are adler32 as 8 lower-case hex digits (DIRAC's and xrootd's format, ``00000001`` for empty).

Example::

    >>> adler32_bytes(b"hello")
    '062c0215'
    >>> normalise_checksum("62C0215")
    '062c0215'
    >>> se_relative("/demo/user/a/alice/f1")
    'demo/user/a/alice/f1'
"""

from __future__ import annotations

import errno as _errno
import posixpath
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.exceptions import InvalidArgumentError, NotFoundError, PilotWMSError

#: progress callback: called with the number of bytes transferred so far
Progress = Callable[[int], None]
CHUNK = 1024 * 1024


class StorageError(PilotWMSError):
    """A storage operation failed (the SE answered, or the transfer broke)."""

    errno = _errno.EIO
    strerror = "Storage error"


class StorageUnavailableError(StorageError):
    """The storage element cannot be reached (connection refused, timeout, server down)."""

    errno = _errno.ECONNREFUSED
    strerror = "Storage element unavailable"


class ChecksumMismatchError(StorageError):
    """The bytes stored or received do not have the expected adler32."""

    errno = _errno.EBADMSG
    strerror = "Checksum mismatch"


class StorageAccessError(StorageError):
    """The SE's access flags (ReadAccess/WriteAccess/RemoveAccess) or its rights refuse it."""

    errno = _errno.EACCES
    strerror = "Storage access denied"


class StorageFileNotFoundError(NotFoundError):
    """No such file on the storage element."""


class FileTooBigError(InvalidArgumentError):
    """The upload is larger than the SE's ``MaxFileSizeMiB`` (HTTP 413 from the HTTPS SE)."""


class UnsafePathError(InvalidArgumentError):
    """A path that would leave the storage element's base directory (``..``, NUL, ...)."""


@dataclass(frozen=True)
class FileInfo:
    """What a storage element knows of one file: size in bytes and adler32."""

    size: int
    checksum: str


@dataclass(frozen=True)
class Entry:
    """One entry of a directory listing."""

    name: str
    size: int
    is_dir: bool


def normalise_checksum(value: str) -> str:
    """An adler32 as 8 lower-case hex digits (DIRAC sometimes drops leading zeros)."""
    text = str(value).strip().lower()
    if text.startswith("ad:") or text.startswith("adler32:"):
        text = text.split(":", 1)[1]
    if not text or len(text) > 8 or any(c not in "0123456789abcdef" for c in text):
        raise InvalidArgumentError(f"not an adler32 checksum: {value!r}")
    return text.zfill(8)


class Adler32:
    """An adler32 computed chunk by chunk."""

    def __init__(self) -> None:
        self.value = 1
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.value = zlib.adler32(chunk, self.value)
        self.size += len(chunk)

    def hexdigest(self) -> str:
        return f"{self.value & 0xFFFFFFFF:08x}"


def adler32_bytes(data: bytes) -> str:
    digest = Adler32()
    digest.update(data)
    return digest.hexdigest()


def adler32_file(path: str | Path) -> FileInfo:
    """Size and adler32 of a local file, read in 1 MiB chunks."""
    digest = Adler32()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK), b""):
            digest.update(chunk)
    return FileInfo(digest.size, digest.hexdigest())


def se_relative(lfn: str) -> str:
    """An LFN as a safe relative path: absolute, no ``.``/``..``/empty parts, no NUL."""
    if not isinstance(lfn, str) or not lfn.startswith("/"):
        raise UnsafePathError(f"not an absolute path: {lfn!r}")
    if any(c in lfn for c in "\0\n\r") or "\\" in lfn:
        raise UnsafePathError(f"forbidden character in path: {lfn!r}")
    parts = lfn.strip("/").split("/")
    if lfn != "/" and any(p in ("", ".", "..") for p in parts):
        raise UnsafePathError(f"path must not contain '.', '..' or '//': {lfn!r}")
    return posixpath.join(*parts) if lfn != "/" else ""


class StoragePlugin(ABC):
    """One protocol to one storage element. ``path`` arguments are LFNs."""

    #: the plugin's name in the configuration
    name: str = ""

    def __init__(self, se_name: str) -> None:
        self.se_name = se_name

    @abstractmethod
    def put(self, path: str, source: Path, *, checksum: str | None = None,
            progress: Progress | None = None) -> FileInfo:
        """Store ``source`` at ``path`` (replacing it); verifies the stored adler32 equals
        ``checksum`` (computed from ``source`` when None). A failed put leaves no file."""

    @abstractmethod
    def get(self, path: str, dest: Path, *, checksum: str | None = None,
            progress: Progress | None = None) -> FileInfo:
        """Copy ``path`` to the local file ``dest``; verifies the adler32 of what arrived
        against ``checksum`` when given (else against the SE's own). A failed get leaves no
        ``dest``."""

    @abstractmethod
    def remove(self, path: str) -> bool:
        """Remove ``path``; False when it was not there."""

    @abstractmethod
    def stat(self, path: str) -> FileInfo:
        """Size and adler32 of ``path`` (StorageFileNotFoundError when absent)."""

    @abstractmethod
    def list(self, path: str) -> list[Entry]:
        """The entries of the directory ``path`` (StorageFileNotFoundError when absent)."""

    @abstractmethod
    def url(self, path: str) -> str:
        """A URL a job can read ``path`` with (``root://``, ``https://``, ``file://``)."""

    def exists(self, path: str) -> bool:
        try:
            self.stat(path)
        except StorageFileNotFoundError:
            return False
        return True

    def size(self, path: str) -> int:
        return self.stat(path).size

    def checksum(self, path: str) -> str:
        return self.stat(path).checksum


def verify(expected: str | None, got: FileInfo, what: str) -> None:
    """Raise :class:`ChecksumMismatchError` when ``got`` does not have ``expected``."""
    if expected is not None and normalise_checksum(expected) != got.checksum:
        raise ChecksumMismatchError(
            f"{what}: adler32 {got.checksum}, expected {normalise_checksum(expected)}")
