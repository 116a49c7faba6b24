"""``se``: one of pilotwms's own storage elements by name (``dms.storage``).

The association's ``host`` is the SE name and its ``directory`` an LFN directory; the file
goes through the SE's plugin (HTTPS disk SE, xrootd, file), which already writes to a temp
name, verifies the adler32 end to end and renames. The transfer agent reaches the SE with the
server's host certificate; who may write where was checked when the association was stored.

Example::

    with SESession(endpoint, timeout=30, ses=StorageElements.from_config(cfg)) as s:
        s.upload(LocalSource(path, checksum="0a1b2c3d"), "f.dat", overwrite=False)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from core.exceptions import NotFoundError, PilotWMSError
from dms.storage.base import (
    ChecksumMismatchError,
    StorageAccessError,
    StorageFileNotFoundError,
    StorageUnavailableError,
)
from transfer.errors import (
    RemotePermanentError,
    RemoteUnavailableError,
    TransferChecksumError,
)
from transfer.logic.protocols.base import Endpoint, LocalSource, Progress, RemoteSession


class SESession(RemoteSession):
    def __init__(self, endpoint: Endpoint, timeout: float, *, ses: Mapping[str, Any]) -> None:
        super().__init__(endpoint, timeout)
        try:
            self.se = ses[endpoint.host]
        except NotFoundError:
            raise RemotePermanentError(f"no storage element {endpoint.host!r}") from None

    def connect(self) -> None:
        pass

    def close(self) -> None:
        pass

    def _call(self, what: str, func: Any, *args: Any, **kw: Any) -> Any:
        try:
            return func(*args, **kw)
        except StorageFileNotFoundError:
            raise
        except StorageUnavailableError as exc:
            raise RemoteUnavailableError(f"{self.se.name}: {what}: {exc.message}") from None
        except ChecksumMismatchError as exc:
            raise TransferChecksumError(f"{self.se.name}: {exc.message}") from None
        except StorageAccessError as exc:
            raise RemotePermanentError(f"{self.se.name}: {exc.message}") from None
        except PilotWMSError as exc:
            if exc.http_status == 401:
                raise RemotePermanentError(f"{self.se.name}: {exc.message}") from None
            raise RemoteUnavailableError(f"{self.se.name}: {what}: {exc.message}") from None

    def size(self, path: str) -> int | None:
        try:
            return int(self._call("stat", self.se.stat, path).size)
        except StorageFileNotFoundError:
            return None

    def upload(self, source: LocalSource, name: str, *, overwrite: bool) -> int:
        final = self.endpoint.path(name)
        if not overwrite and self.size(final) is not None:
            raise RemotePermanentError(f"{final} exists on {self.se.name} (use -overwrite)")
        got = source.verify_file()
        self._call("put", self.se.put, final, source.path, checksum=got,
                   progress=source.progress)
        return source.size

    def download(self, name: str, dest: Path, *, progress: Progress | None = None) -> int:
        info = self._call("get", self.se.get, self.endpoint.path(name), dest,
                          progress=progress)
        return int(info.size)

    def write(self, path: str, chunks: Iterator[bytes], offset: int) -> None:
        raise NotImplementedError("the SE plugin writes whole files")

    def read(self, path: str, offset: int) -> Iterator[bytes]:
        raise NotImplementedError("the SE plugin reads whole files")

    def rename(self, src: str, dst: str, overwrite: bool) -> None:
        raise NotImplementedError("the SE plugin renames itself")

    def remove(self, path: str) -> None:
        self._call("remove", self.se.remove, path)

    def mkdirs(self, directory: str) -> None:
        pass  # SE paths are made by the SE


def open_session(endpoint: Endpoint, timeout: float, *, ses: Any = None,
                 **_: Any) -> SESession:
    if ses is None:
        raise RemotePermanentError("no storage elements are configured on this server")
    return SESession(endpoint, timeout, ses=ses)
