"""Extracting sandbox archives safely (standard library only, Python 3.9+).

Sandboxes are tar archives (plain, gzip, bzip2 or xz) made by someone else: a user's input
sandbox reaches the worker node, a job's output sandbox reaches the user. :func:`extract`
writes nothing outside ``dest`` and refuses, with :class:`UnsafeArchiveError` naming the
member:

* absolute names, ``..`` components, NUL bytes, names that resolve outside ``dest`` (also
  through symlinks already there);
* device files, FIFOs and anything but regular files, directories and (when allowed) links;
* symbolic links whose target is absolute or has a ``..`` component (a relative, downward
  target cannot lead outside, however links are chained), hard links to anything but a
  regular file already extracted here;
* more than ``max_members`` members, or more than ``max_bytes`` of decompressed data
  (counted on the decompressed stream itself, so tar headers and PAX records count too:
  gzip and tar bombs stop at the limit, with what was written so far left for the caller
  to remove).

Modes keep the owner's read/write bits and the execute bits, never set-uid, set-gid or
sticky bits; nothing is written group- or world-writable.

Example::

    >>> import io, tarfile, tempfile
    >>> buf = io.BytesIO()
    >>> with tarfile.open(fileobj=buf, mode="w:gz") as tar:
    ...     info = tarfile.TarInfo("../evil"); info.size = 1
    ...     tar.addfile(info, io.BytesIO(b"x"))
    >>> extract(buf.getvalue(), tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    pilot.archive.UnsafeArchiveError: unsafe path in sandbox: '../evil'
"""

from __future__ import annotations

import bz2
import io
import lzma
import os
import stat
import tarfile
import zlib
from typing import IO, Any, List, Union

#: defaults: a sandbox larger than this once decompressed, or with more members, is refused
MAX_BYTES = 4 * 1024**3
MAX_MEMBERS = 100_000
_READ = 1024 * 1024


class UnsafeArchiveError(ValueError):
    """The archive would write outside its directory, holds a forbidden member, or is a bomb."""


class _Bounded(io.RawIOBase):
    """The decompressed bytes of a (gzip, bzip2, xz or plain) stream, refused beyond
    ``limit`` bytes; each read inflates at most 1 MiB."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        super().__init__()
        self.raw = raw
        self.limit = limit
        self.count = 0
        self.queue = raw.read(6)  # magic numbers, fed to the decompressor first
        self.pending = b""
        self.gzip = self.queue[:2] == b"\x1f\x8b"
        if self.gzip:
            self.decomp: Any = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.queue[:3] == b"BZh":
            self.decomp = bz2.BZ2Decompressor()
        elif self.queue == b"\xfd7zXZ\x00":
            self.decomp = lzma.LZMADecompressor()
        else:
            self.decomp = None

    def _input(self) -> bytes:
        data, self.queue = self.queue, b""
        return data or self.raw.read(_READ)

    def _produce(self) -> bytes:
        if self.decomp is None:
            return self._input()
        try:
            while not self.decomp.eof:
                if self.gzip:
                    data = self.decomp.unconsumed_tail or self._input()
                elif self.decomp.needs_input:
                    data = self._input()
                else:
                    data = b""  # output held back by max_length comes first
                if not data and (self.gzip or self.decomp.needs_input):
                    return b""  # truncated: the tar reader reports it
                out = self.decomp.decompress(data, _READ)
                if out:
                    return out
        except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
            raise UnsafeArchiveError(f"sandbox is not a valid compressed archive: {exc}") \
                from None
        return b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self.pending:
            self.pending = self._produce()
        chunk = self.pending[:len(buffer)]
        self.pending = self.pending[len(chunk):]
        self.count += len(chunk)
        if self.count > self.limit:
            raise UnsafeArchiveError(
                f"sandbox holds more than {self.limit} bytes once decompressed")
        buffer[:len(chunk)] = chunk
        return len(chunk)


def _check_name(name: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if (not name or "\x00" in name or name.startswith(("/", "\\")) or ".." in parts
            or (len(name) > 1 and name[1] == ":")):
        raise UnsafeArchiveError(f"unsafe path in sandbox: {name!r}")


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _resolved(root: str, name: str) -> str:
    target = os.path.realpath(os.path.join(root, name))
    if not _inside(root, target):
        raise UnsafeArchiveError(f"unsafe path in sandbox: {name!r} leads outside")
    return target


def _mode(member: tarfile.TarInfo, base: int) -> int:
    return (member.mode & 0o755) | base


def extract(source: Union[bytes, IO[bytes], str, os.PathLike], dest: str, *,
            max_bytes: int = MAX_BYTES, max_members: int = MAX_MEMBERS,
            links: bool = True) -> List[str]:
    """Extract a sandbox (bytes, a binary file object or a path) into ``dest`` (created if
    needed); returns the member names written, in order. ``links=False`` refuses symbolic
    and hard links altogether."""
    if isinstance(source, (bytes, bytearray)):
        raw: IO[bytes] = io.BytesIO(source)
        owned = False
    elif isinstance(source, (str, os.PathLike)):
        raw = open(source, "rb")  # noqa: SIM115 - closed below
        owned = True
    else:
        raw, owned = source, False
    try:
        stream = io.BufferedReader(_Bounded(raw, max_bytes), _READ)
        try:
            tar = tarfile.open(fileobj=stream, mode="r|")
        except tarfile.TarError as exc:
            raise UnsafeArchiveError(f"sandbox is not a tar archive: {exc}") from None
        with tar:
            return _extract_members(tar, dest, max_members, links)
    except tarfile.TarError as exc:
        raise UnsafeArchiveError(f"sandbox is not a valid tar archive: {exc}") from None
    finally:
        if owned:
            raw.close()


def _extract_members(tar: tarfile.TarFile, dest: str, max_members: int,
                     links: bool) -> List[str]:
    os.makedirs(dest, exist_ok=True)
    root = os.path.realpath(dest)
    written: List[str] = []
    for count, member in enumerate(tar, 1):
        if count > max_members:
            raise UnsafeArchiveError(f"sandbox holds more than {max_members} members")
        name = member.name.rstrip("/")
        _check_name(name)
        try:
            _extract_member(tar, member, root, name, links)
        except (IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
            raise UnsafeArchiveError(f"sandbox member {name!r} conflicts with what is already "
                                     f"there: {exc.strerror}") from None
        written.append(name)
    return written


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, root: str, name: str,
                    links: bool) -> None:
    if member.isdir():
        target = _resolved(root, name)
        os.makedirs(target, exist_ok=True)
        os.chmod(target, _mode(member, 0o700))
    elif member.isfile():
        _write_file(tar, member, root, name)
    elif member.issym() or member.islnk():
        if not links:
            raise UnsafeArchiveError(f"links are not accepted in this sandbox: {name!r}")
        _make_link(member, root, name)
    else:
        kind = "device file" if (member.ischr() or member.isblk()) else (
            "FIFO" if member.isfifo() else "special member")
        raise UnsafeArchiveError(f"{kind} refused in sandbox: {name!r}")


def _parent_of(root: str, name: str) -> str:
    parent = _resolved(root, os.path.dirname(name)) if os.path.dirname(name) else root
    os.makedirs(parent, exist_ok=True)
    return parent


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, root: str, name: str) -> None:
    parent = _parent_of(root, name)
    path = os.path.join(parent, os.path.basename(name))
    if os.path.islink(path):
        raise UnsafeArchiveError(f"sandbox member {name!r} would write through a link")
    source = tar.extractfile(member)
    if source is None:  # pragma: no cover - a regular member always has a file object
        raise UnsafeArchiveError(f"cannot read sandbox member {name!r}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    with source, os.fdopen(fd, "wb") as out:
        while True:
            chunk = source.read(_READ)
            if not chunk:
                break
            out.write(chunk)
    os.chmod(path, _mode(member, 0o600))


def _make_link(member: tarfile.TarInfo, root: str, name: str) -> None:
    parent = _parent_of(root, name)
    path = os.path.join(parent, os.path.basename(name))
    if os.path.lexists(path):
        raise UnsafeArchiveError(f"sandbox link {name!r} would replace an existing entry")
    target = member.linkname
    if member.issym():
        parts = target.replace("\\", "/").split("/")
        if not target or "\x00" in target or target.startswith(("/", "\\")) or ".." in parts:
            raise UnsafeArchiveError(
                f"link in sandbox points outside: {name!r} -> {target!r}")
        if not _inside(root, os.path.realpath(os.path.join(parent, target))):
            raise UnsafeArchiveError(
                f"link in sandbox points outside: {name!r} -> {target!r}")
        os.symlink(target, path)
        return
    _check_name(target)
    source = _resolved(root, target)
    if not os.path.isfile(source) or not stat.S_ISREG(os.lstat(source).st_mode):
        raise UnsafeArchiveError(
            f"hard link in sandbox to something not extracted here: {name!r} -> {target!r}")
    os.link(source, path)
