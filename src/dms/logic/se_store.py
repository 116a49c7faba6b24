"""Server side of pilotwms's HTTPS disk storage element: confined paths, rights, streamed writes.

The ``DataManagement/StorageElement`` service stores the files of every SE configured with an
``HTTPS`` protocol under that protocol's ``Path`` (a directory of the server). This module has
the rules, free of Tornado:

* :func:`confined` maps an LFN to a file under the base directory, refusing ``..``, empty
  components, NUL, and symbolic links that lead outside (checked on the resolved path);
* :func:`may_read` / :func:`may_write`: members of a VO read ``/<vo>/...``; a user writes and
  removes only under their home ``/<vo>/user/<initial>/<user>/``; production managers write
  anywhere in their VO; trusted hosts and catalog managers (``TrustedHost``,
  ``FileCatalogManagement``) everywhere; an SE with ``VOs`` only takes those VOs' files;
* :func:`catalog_read_check`: on top of that, a file registered in the catalog is read only
  by whom the catalog's permissions let read it (a private file stays private on the SE);
* :class:`Writer` streams an upload to a hidden temp file next to the target, computing the
  adler32 on the way; :meth:`Writer.finish` checks size and checksum against what the client
  declared and only then renames, so a corrupted or cut upload never becomes a file.

Example::

    >>> import tempfile, pathlib
    >>> base = pathlib.Path(tempfile.mkdtemp())
    >>> w = Writer(confined(base, "/demo/f"), expected_size=5, expected_checksum="062c0215")
    >>> w.write(b"hello"); w.finish()
    FileInfo(size=5, checksum='062c0215')
    >>> confined(base, "/demo/../etc/passwd")
    Traceback (most recent call last):
    ...
    dms.storage.base.UnsafePathError: path must not contain '.', '..' or '//': '/demo/../etc/passwd'
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.exceptions import InvalidArgumentError
from core.security.identity import Identity
from dms.bulk import DENIED
from dms.logic.namespace import get_file_metadata
from dms.logic.rights import Requester
from dms.storage.base import (
    Adler32,
    ChecksumMismatchError,
    Entry,
    FileInfo,
    FileTooBigError,
    StorageError,
    StorageFileNotFoundError,
    UnsafePathError,
    adler32_file,
    normalise_checksum,
    se_relative,
)

SUPER_PROPERTIES = frozenset({"TrustedHost", "FileCatalogManagement"})


def confined(base: Path, lfn: str) -> Path:
    """``base/lfn``, guaranteed to stay under ``base`` (also through symlinks)."""
    rel = se_relative(lfn)
    target = base / rel
    root = os.path.realpath(base)
    real = os.path.realpath(target)
    if real != root and not real.startswith(root + os.sep):
        raise UnsafePathError(f"{lfn!r} leads outside the storage element")
    return target


def _vo_of(lfn: str) -> str:
    parts = lfn.strip("/").split("/")
    return parts[0] if parts and parts[0] else ""


def home_of(vo: str, user: str) -> str:
    return f"/{vo}/user/{user[0]}/{user}"


def may_read(ident: Identity, lfn: str, se_vos: list[str] | None = None) -> bool:
    if not ident.authenticated:
        return False
    if ident.properties & SUPER_PROPERTIES:
        return True
    return bool(ident.vo) and _vo_of(lfn) == ident.vo


def catalog_read_check(engine: Engine, req: Requester, lfn: str) -> str | None:
    """Why the catalog does not let ``req`` read ``lfn``; None when it does.

    Registered files follow the catalog's permissions (traversal and read bits); files the
    catalog does not know (an upload not registered yet) keep the VO rule of
    :func:`may_read`. Super properties are not asked about.
    """
    try:
        found = get_file_metadata(engine, req, [lfn])
    except sa.exc.OperationalError:  # no catalog tables in this database
        return None
    if found.failed.get(lfn) == DENIED:
        return "the file catalog does not let you read it"
    return None  # readable, unknown to the catalog, or a directory: the VO rule holds


def may_write(ident: Identity, lfn: str, se_vos: list[str] | None = None) -> bool:
    """Write or remove ``lfn`` (see the module documentation)."""
    if not ident.authenticated:
        return False
    vo = _vo_of(lfn)
    if se_vos and vo not in se_vos:
        return False
    if ident.properties & SUPER_PROPERTIES:
        return True
    if not ident.vo or vo != ident.vo:
        return False
    if "ProductionManagement" in ident.properties:
        return True
    if not ident.username:
        return False
    return lfn.startswith(home_of(ident.vo, ident.username) + "/")


class Writer:
    """An upload in progress: a temp file beside ``target`` and a running adler32."""

    def __init__(self, target: Path, *, expected_size: int | None,
                 expected_checksum: str | None, max_bytes: int = 0) -> None:
        if expected_checksum is None:
            raise InvalidArgumentError("an upload must declare its adler32 (X-Checksum-Adler32)")
        self.expected_checksum = normalise_checksum(expected_checksum)
        self.expected_size = expected_size
        self.max_bytes = max_bytes
        if max_bytes and expected_size is not None and expected_size > max_bytes:
            raise FileTooBigError(f"file of {expected_size} bytes is over the SE's limit "
                                  f"of {max_bytes} bytes")
        self.target = target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".upload",
                                        dir=target.parent)
        except OSError as exc:  # a file in the way, no space, permissions
            raise StorageError(f"cannot store {target.name}: {exc.strerror}") from None
        self.tmp = Path(name)
        self.stream = os.fdopen(fd, "wb")
        self.digest = Adler32()

    def write(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        if self.max_bytes and self.digest.size > self.max_bytes:
            self.abort()
            raise FileTooBigError(f"upload passed the SE's limit of {self.max_bytes} bytes")
        try:
            self.stream.write(chunk)
        except OSError as exc:  # no space left, I/O error
            self.abort()
            raise StorageError(f"cannot store {self.target.name}: {exc.strerror}") from None

    def finish(self) -> FileInfo:
        """Verify size and adler32, then make the file visible; on a mismatch nothing stays."""
        try:
            self.stream.close()
            info = FileInfo(self.digest.size, self.digest.hexdigest())
            if self.expected_size is not None and info.size != self.expected_size:
                raise StorageError(f"received {info.size} bytes, expected {self.expected_size}")
            if info.checksum != self.expected_checksum:
                raise ChecksumMismatchError(
                    f"received data has adler32 {info.checksum}, the client declared "
                    f"{self.expected_checksum}")
            if self.target.is_dir():
                raise StorageError(f"{self.target.name} is a directory")
            os.replace(self.tmp, self.target)
        except BaseException:
            self.abort()
            raise
        return info

    def abort(self) -> None:
        if not self.stream.closed:
            self.stream.close()
        self.tmp.unlink(missing_ok=True)


def stat(base: Path, lfn: str) -> FileInfo:
    target = confined(base, lfn)
    if not target.is_file():
        raise StorageFileNotFoundError(f"no file {lfn}")
    return adler32_file(target)


def remove(base: Path, lfn: str) -> bool:
    target = confined(base, lfn)
    if target.is_dir():
        raise StorageError(f"{lfn} is a directory")
    try:
        target.unlink()
    except FileNotFoundError:
        return False
    return True


def listing(base: Path, lfn: str) -> list[Entry]:
    target = confined(base, lfn)
    if not target.is_dir():
        raise StorageFileNotFoundError(f"no directory {lfn}")
    return sorted((Entry(p.name, p.stat().st_size if p.is_file() else 0, p.is_dir())
                   for p in target.iterdir() if not p.name.startswith(".")),
                  key=lambda e: e.name)
