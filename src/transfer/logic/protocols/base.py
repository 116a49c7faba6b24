"""What every transfer protocol shares: the endpoint, the local source, the safe upload.

A protocol module gives a :class:`RemoteSession` (one connection to one endpoint) with a few
primitives (``size``, ``open_write``, ``open_read``, ``rename``, ``remove``, ``mkdirs``,
``chmod``); :func:`upload` and :func:`download` build the safe transfer from them, once for
all protocols:

* the file is written to a hidden temporary name in the target directory
  (``.<name>.pwms-part``) and renamed only when complete and verified, so a reader never
  sees half a file;
* an attempt that broke leaves the temporary file; the next one resumes from its size when
  the protocol can append (sftp, ftp);
* the bytes sent are hashed on the way (adler32) and compared with the checksum recorded at
  submission; the remote size is checked before the rename;
* an existing target is refused unless ``overwrite``.

Example (any protocol)::

    with open_session(endpoint, timeout=30) as session:
        upload(session, LocalSource(Path("/spool/42"), checksum="0a1b2c3d"), "f.grib",
               overwrite=False)
"""

from __future__ import annotations

import posixpath
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dms.storage.base import CHUNK, Adler32, normalise_checksum
from transfer.errors import (
    RemotePermanentError,
    TransferChecksumError,
)

Progress = Callable[[int], None]
PART_SUFFIX = ".pwms-part"


@dataclass(frozen=True)
class Endpoint:
    """An association with its secrets decrypted (only ever in memory, never logged)."""

    protocol: str
    host: str
    port: int | None
    user: str
    directory: str
    options: dict[str, Any] = field(default_factory=dict)
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    passphrase: str | None = field(default=None, repr=False)
    name: str = ""

    def describe(self) -> str:
        port = f":{self.port}" if self.port else ""
        who = f"{self.user}@" if self.user else ""
        return f"{self.protocol}://{who}{self.host}{port}{self.directory}"

    def path(self, name: str) -> str:
        """``name`` under the remote directory (absolute names are kept)."""
        if name.startswith("/"):
            return name
        return posixpath.join(self.directory or ".", name)


class LocalSource:
    """A local file sent in chunks, hashed on the way (also over a skipped resumed prefix)."""

    def __init__(self, path: Path, *, checksum: str | None = None,
                 progress: Progress | None = None) -> None:
        self.path = Path(path)
        self.size = self.path.stat().st_size
        self.expected = normalise_checksum(checksum) if checksum else None
        self.progress = progress
        self.digest = Adler32()

    def chunks(self, offset: int = 0) -> Iterator[bytes]:
        self.digest = Adler32()
        with open(self.path, "rb") as stream:
            skipped = 0
            while skipped < offset:  # hash the part the remote side already has
                block = stream.read(min(CHUNK, offset - skipped))
                if not block:
                    break
                self.digest.update(block)
                skipped += len(block)
            sent = skipped
            for block in iter(lambda: stream.read(CHUNK), b""):
                self.digest.update(block)
                sent += len(block)
                yield block
                if self.progress:
                    self.progress(sent)

    def verify_file(self) -> str:
        """Hash the whole file now (for protocols that send a path, not chunks) and verify."""
        for _ in self.chunks(self.size):
            pass
        return self.verify()

    def verify(self) -> str:
        """The adler32 of what was read; TransferChecksumError when it is not the expected."""
        got = self.digest.hexdigest()
        if self.digest.size != self.size:
            raise TransferChecksumError(f"{self.path.name}: read {self.digest.size} bytes, "
                                        f"expected {self.size} (the file changed)")
        if self.expected and got != self.expected:
            raise TransferChecksumError(f"checksum mismatch: the data sent has adler32 {got}, "
                                        f"expected {self.expected}")
        return got


class RemoteSession(ABC):
    """One connection to one endpoint; a context manager."""

    #: can a partial file be continued (append at an offset)?
    resumable = False

    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        self.endpoint = endpoint
        self.timeout = timeout

    def __enter__(self) -> RemoteSession:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def connect(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def size(self, path: str) -> int | None:
        """Size of a remote file, None when it does not exist."""

    @abstractmethod
    def write(self, path: str, chunks: Iterator[bytes], offset: int) -> None:
        """Write the chunks to ``path``, starting at ``offset`` (0: create or truncate)."""

    @abstractmethod
    def read(self, path: str, offset: int) -> Iterator[bytes]:
        """The bytes of ``path`` from ``offset`` on."""

    @abstractmethod
    def rename(self, src: str, dst: str, overwrite: bool) -> None: ...

    @abstractmethod
    def remove(self, path: str) -> None: ...

    @abstractmethod
    def mkdirs(self, directory: str) -> None: ...

    def chmod(self, path: str, mode: int) -> None:  # noqa: B027 - optional hook
        """Set permissions where the protocol can (default: not at all)."""

    def remote_checksum(self, path: str) -> str | None:
        """The remote side's adler32 of ``path`` when it can tell (default: it cannot)."""
        return None

    # -- the safe transfer --------------------------------------------------------------------

    def upload(self, source: LocalSource, name: str, *, overwrite: bool) -> int:
        """Send ``source`` as ``name``: temp name, resume, verify, rename. Returns bytes sent
        in this attempt."""
        ep = self.endpoint
        final = ep.path(name)
        directory, base = posixpath.split(final)
        tmp = posixpath.join(directory, f".{base}{PART_SUFFIX}")
        if ep.options.get("mkdir", True) and directory:
            self.mkdirs(directory)
        if not overwrite and self.size(final) is not None:
            raise RemotePermanentError(f"{final} exists on {ep.host} (use -overwrite)")
        offset = 0
        if self.resumable:
            found = self.size(tmp)
            if found is not None and 0 < found <= source.size:
                offset = found
        try:
            self.write(tmp, source.chunks(offset), offset)
            source.verify()
        except TransferChecksumError:
            self._discard(tmp)
            raise
        got = self.size(tmp)
        if got != source.size:
            self._discard(tmp)
            raise TransferChecksumError(f"{tmp} on {ep.host} has {got} bytes after the upload, "
                                        f"expected {source.size}")
        remote = self.remote_checksum(tmp)
        if remote is not None and source.expected and remote != source.expected:
            self._discard(tmp)
            raise TransferChecksumError(f"{final} on {ep.host}: remote adler32 {remote}, "
                                        f"expected {source.expected}")
        umask = ep.options.get("umask")
        if umask is not None:
            self.chmod(tmp, 0o666 & ~int(str(umask), 8))
        self.rename(tmp, final, overwrite)
        return source.size - offset

    def _discard(self, path: str) -> None:
        try:
            self.remove(path)
        except Exception:  # noqa: BLE001, S110 - best effort: the next attempt overwrites it
            pass

    def download(self, name: str, dest: Path, *, progress: Progress | None = None) -> int:
        """Fetch ``name`` into ``dest`` through ``dest.part`` (resumed when the protocol can),
        checking the size; returns bytes fetched in this attempt."""
        path = self.endpoint.path(name)
        size = self.size(path)
        if size is None:
            raise RemotePermanentError(f"{path} does not exist on {self.endpoint.host}")
        part = dest.with_name(dest.name + PART_SUFFIX)
        offset = part.stat().st_size if (self.resumable and part.exists()) else 0
        if offset > size:
            offset = 0
        got = offset
        with open(part, "r+b" if offset else "wb") as out:
            out.seek(offset)
            out.truncate()
            for block in self.read(path, offset):
                out.write(block)
                got += len(block)
                if progress:
                    progress(got)
        if got != size:
            raise TransferChecksumError(f"{path}: received {got} bytes, expected {size}")
        part.replace(dest)
        return got - offset
