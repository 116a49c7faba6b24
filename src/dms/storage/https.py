"""The ``HTTPS`` plugin: a disk SE served by pilotwms's ``DataManagement/StorageElement``.

Uploads are streamed (``PUT .../file/<SE>/<lfn>``, the local file read in 1 MiB blocks) with the
adler32 computed beforehand in the ``X-Checksum-Adler32`` header; the server verifies it while
writing and refuses a mismatch, so a corrupted upload never becomes a file. Downloads are
streamed into a temp file, hashed on the way, and renamed only when the adler32 matches.
Credentials are the caller's (certificate, proxy or token), as for any RPC call.

Example::

    from core.rpc.client import Credentials
    se = HTTPSStorage("DEMO-DISK", host="127.0.0.1", port=8443,
                      credentials=Credentials(cert="proxy.pem"), ca_dir="ca/certificates")
    se.put("/demo/user/a/alice/f1", Path("f1"))
    se.get("/demo/user/a/alice/f1", Path("copy"), checksum="062c0215")
"""

from __future__ import annotations

import io
import os
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

import requests

from core.exceptions import NotFoundError, PilotWMSError, ServiceUnavailableError
from core.rpc.client import Credentials, RPCClient, error_from_reply
from core.rpc.jencode import decode
from dms.storage.base import (
    CHUNK,
    Adler32,
    Entry,
    FileInfo,
    Progress,
    StorageAccessError,
    StorageError,
    StorageFileNotFoundError,
    StoragePlugin,
    StorageUnavailableError,
    adler32_file,
    normalise_checksum,
    se_relative,
    verify,
)

SERVICE = "DataManagement/StorageElement"
CHECKSUM_HEADER = "X-Checksum-Adler32"


class _Reader(io.RawIOBase):
    """A file read in blocks for requests' streaming body, reporting progress."""

    def __init__(self, path: Path, progress: Progress | None) -> None:
        self.stream = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.length = os.fstat(self.stream.fileno()).st_size
        self.progress = progress
        self.done = 0

    def __len__(self) -> int:
        return self.length

    def readable(self) -> bool:
        return True

    def tell(self) -> int:  # requests subtracts it from len() to size the body
        return self.done

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(CHUNK if size is None or size < 0 else max(size, CHUNK))
        self.done += len(data)
        if self.progress is not None and data:
            self.progress(self.done)
        return data

    def close(self) -> None:
        self.stream.close()
        super().close()


#: a local file as a streamed request body of known length (other uploaders use it too)
FileBody = _Reader


class HTTPSStorage(StoragePlugin):
    name = "HTTPS"

    def __init__(self, se_name: str, host: str, port: int | None, *,
                 credentials: Credentials | None = None, ca_dir: str | Path | None = None,
                 timeout: tuple[float, float] = (10.0, 600.0)) -> None:
        super().__init__(se_name)
        self.server = f"https://{host}:{port or 443}"
        self.rpc = RPCClient(SERVICE, urls=[self.server], credentials=credentials,
                             ca_dir=ca_dir, timeout=timeout)
        self.timeout = timeout

    def url(self, path: str) -> str:
        rel = urllib.parse.quote(se_relative(path))
        return f"{self.server}/{SERVICE}/file/{urllib.parse.quote(self.se_name)}/{rel}"

    def _reply(self, response: requests.Response, what: str) -> Any:
        try:
            reply = decode(response.content)
        except PilotWMSError:
            reply = None
        if not isinstance(reply, dict) or "OK" not in reply:
            raise StorageError(f"{self.se_name}: {what}: HTTP {response.status_code}: "
                               f"{response.text[:200]}")
        if not reply["OK"]:
            exc = error_from_reply(reply)
            if isinstance(exc, NotFoundError) and not isinstance(exc, StorageFileNotFoundError):
                raise StorageFileNotFoundError(exc.message) from None
            raise exc
        return reply.get("Value")

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return self.rpc.call(method, *args)
        except ServiceUnavailableError as exc:
            raise StorageUnavailableError(f"{self.se_name}: {exc.message}") from None

    def put(self, path: str, source: Path, *, checksum: str | None = None,
            progress: Progress | None = None) -> FileInfo:
        local = adler32_file(source)
        verify(checksum, local, f"local file {source}")
        return self._upload(path, Path(source), local.checksum, progress)

    def _upload(self, path: str, source: Path, declared: str,
                progress: Progress | None) -> FileInfo:
        """PUT ``source`` declaring ``declared`` as its adler32 (tests declare a wrong one)."""
        self._call("checkUpload", self.se_name, path, Path(source).stat().st_size)
        # a server that refuses an upload before reading it closes the connection; the next
        # request on that pooled connection fails at once: one retry on a fresh connection
        # (an upload is idempotent: same bytes, same path)
        for attempt in (1, 2):
            body = _Reader(source, progress)
            try:
                response = self.rpc.session.put(
                    self.url(path), data=body, timeout=self.timeout, verify=self.rpc.verify,
                    headers={"Content-Type": "application/octet-stream",
                             "Content-Length": str(len(body)),
                             CHECKSUM_HEADER: normalise_checksum(declared)})
                break
            except requests.exceptions.ConnectionError as exc:
                if attempt == 2 or isinstance(exc, requests.exceptions.ConnectTimeout):
                    raise StorageUnavailableError(
                        f"{self.se_name}: upload of {path}: {type(exc).__name__}") from None
            except requests.exceptions.RequestException as exc:
                raise StorageUnavailableError(
                    f"{self.se_name}: upload of {path}: {type(exc).__name__}") from None
            finally:
                body.close()
        value = self._reply(response, f"upload of {path}")
        info = FileInfo(int(value["Size"]), normalise_checksum(value["Checksum"]))
        verify(declared, info, f"{self.se_name}:{path} as stored")
        return info

    def get(self, path: str, dest: Path, *, checksum: str | None = None,
            progress: Progress | None = None) -> FileInfo:
        expected = normalise_checksum(checksum) if checksum else None
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        for attempt in (1, 2):  # one retry, as for uploads
            try:
                response = self.rpc.session.get(self.url(path), stream=True,
                                                timeout=self.timeout, verify=self.rpc.verify)
                break
            except requests.exceptions.ConnectionError as exc:
                if attempt == 2 or isinstance(exc, requests.exceptions.ConnectTimeout):
                    raise StorageUnavailableError(
                        f"{self.se_name}: download of {path}: {type(exc).__name__}") from None
            except requests.exceptions.RequestException as exc:
                raise StorageUnavailableError(
                    f"{self.se_name}: download of {path}: {type(exc).__name__}") from None
        with response:
            if response.status_code != 200 or \
                    response.headers.get("Content-Type", "").startswith("application/json"):
                self._reply(response, f"download of {path}")
                raise StorageError(f"{self.se_name}: download of {path}: HTTP "
                                   f"{response.status_code}")
            fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part",
                                            dir=dest.parent)
            tmp = Path(tmp_name)
            digest = Adler32()
            try:
                with os.fdopen(fd, "wb") as out:
                    for chunk in response.iter_content(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        if progress is not None:
                            progress(digest.size)
                info = FileInfo(digest.size, digest.hexdigest())
                length = response.headers.get("Content-Length")
                if length and length.isdigit() and int(length) != info.size:
                    raise StorageError(f"{self.se_name}: download of {path} cut at "
                                       f"{info.size} of {length} bytes")
                if expected is None:
                    expected = self.checksum(path)
                verify(expected, info, f"{self.se_name}:{path} as received")
                os.replace(tmp, dest)
            except requests.exceptions.RequestException as exc:
                raise StorageUnavailableError(
                    f"{self.se_name}: download of {path}: {type(exc).__name__}") from None
            finally:
                tmp.unlink(missing_ok=True)
        return info

    def remove(self, path: str) -> bool:
        result = self._call("removeFile", self.se_name, [path])
        if path in result["Failed"]:
            raise StorageError(f"{self.se_name}: remove {path}: {result['Failed'][path]}")
        return bool(result["Successful"][path])

    def stat(self, path: str) -> FileInfo:
        result = self._call("getFileInfo", self.se_name, [path])
        if path in result["Failed"]:
            reason = result["Failed"][path]
            if reason.startswith("no file"):
                raise StorageFileNotFoundError(f"{self.se_name}: {reason}")
            if " may not " in reason:
                raise StorageAccessError(f"{self.se_name}: {reason}")
            raise StorageError(f"{self.se_name}: {path}: {reason}")
        value = result["Successful"][path]
        return FileInfo(int(value["Size"]), normalise_checksum(value["Checksum"]))

    def list(self, path: str) -> list[Entry]:
        return [Entry(e["Name"], int(e["Size"]), bool(e["Directory"]))
                for e in self._call("listDirectory", self.se_name, path)]

    def close(self) -> None:
        self.rpc.close()
