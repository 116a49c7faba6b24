"""https: HTTP PUT to a WebDAV server (``requests``), temp name then ``MOVE``.

The file is PUT (streamed, with its ``Content-Length``) to ``.<name>.pwms-part`` in the
target directory, its size checked with ``HEAD``, then renamed with ``MOVE`` (``Overwrite: F``
unless overwriting, so an existing target is refused atomically by the server). Directories
are made with ``MKCOL``. Basic authentication with the association's user and password; the
server certificate is verified against the server's CA directory (and the system's).
Servers without ``MOVE`` (plain PUT endpoints) can be used with ``rename: false``: the
file is then PUT at its final name directly. Not resumable (HTTP has no standard partial PUT).

401 is an authentication failure (no retry), other 4xx refusals are permanent, 5xx and
broken connections are retried.

Example::

    with WebDAVSession(endpoint, timeout=30, ca_dir="ca/certificates") as s:
        s.upload(LocalSource(path), "f.dat", overwrite=False)
"""

from __future__ import annotations

import posixpath
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from dms.storage.base import CHUNK
from transfer.errors import (
    RemoteAuthError,
    RemotePermanentError,
    RemoteUnavailableError,
    TransferError,
)
from transfer.logic.protocols.base import Endpoint, LocalSource, RemoteSession


class _Body:
    """The chunks as a file-like body of known length (so requests sends Content-Length)."""

    def __init__(self, chunks: Iterator[bytes], length: int) -> None:
        self.chunks, self.length, self.buffer = chunks, length, b""

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            block = next(self.chunks, None)
            if block is None:
                break
            self.buffer += block
        if size < 0:
            data, self.buffer = self.buffer, b""
        else:
            data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


class WebDAVSession(RemoteSession):
    def __init__(self, endpoint: Endpoint, timeout: float, *,
                 ca_dir: str | Path | None = None) -> None:
        super().__init__(endpoint, timeout)
        self.ca_dir = ca_dir
        self.http: requests.Session | None = None
        self.verify: str | bool = True
        port = f":{endpoint.port}" if endpoint.port else ""
        self.base = f"https://{endpoint.host}{port}"
        self._length = 0

    def url(self, path: str) -> str:
        return self.base + urllib.parse.quote(path if path.startswith("/") else "/" + path)

    def connect(self) -> None:
        self.http = requests.Session()
        if self.endpoint.user:
            self.http.auth = (self.endpoint.user, self.endpoint.password or "")
        # given per request: a session-level value loses to $REQUESTS_CA_BUNDLE in requests
        self.verify = str(self.ca_dir) if self.ca_dir else True
        self._request("OPTIONS", self.base + "/", ok=(200, 204, 401, 403, 404, 405))

    def close(self) -> None:
        if self.http is not None:
            self.http.close()
        self.http = None

    def _request(self, method: str, url: str, *, ok: tuple[int, ...] = (200, 201, 204),
                 **kw: Any) -> requests.Response:
        assert self.http is not None  # noqa: S101 - connect() made it
        ep = self.endpoint
        try:
            reply = self.http.request(method, url, timeout=(self.timeout, self.timeout),
                                      verify=self.verify, **kw)
        except requests.exceptions.SSLError as exc:
            raise RemotePermanentError(f"{ep.host}: TLS failure: {exc}") from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise RemoteUnavailableError(f"{ep.host}: {method}: {type(exc).__name__}") \
                from None
        if reply.status_code in ok:
            return reply
        if reply.status_code == 401:
            raise RemoteAuthError(f"{ep.user}@{ep.host}: authentication failed (HTTP 401)")
        text = f"{ep.host}: {method} {urllib.parse.urlsplit(url).path}: HTTP " \
               f"{reply.status_code} {reply.reason}"
        if reply.status_code >= 500 or reply.status_code in (408, 423, 429):
            raise RemoteUnavailableError(text)
        raise RemotePermanentError(text)

    def size(self, path: str) -> int | None:
        reply = self._request("HEAD", self.url(path), ok=(200, 404))
        if reply.status_code == 404:
            return None
        return int(reply.headers.get("Content-Length", "0"))

    def upload(self, source: LocalSource, name: str, *, overwrite: bool) -> int:
        self._length = source.size
        if self.endpoint.options.get("rename", True):
            return super().upload(source, name, overwrite=overwrite)
        final = self.endpoint.path(name)
        if not overwrite and self.size(final) is not None:
            raise RemotePermanentError(f"{final} exists on {self.endpoint.host} "
                                       "(use -overwrite)")
        self.write(final, source.chunks(0), 0)
        source.verify()
        return source.size

    def write(self, path: str, chunks: Iterator[bytes], offset: int) -> None:
        try:
            self._request("PUT", self.url(path), data=_Body(chunks, self._length - offset),
                          headers={"Content-Type": "application/octet-stream"})
        except TransferError:
            raise
        except OSError as exc:
            raise RemoteUnavailableError(f"{self.endpoint.host}: PUT: {exc}") from None

    def read(self, path: str, offset: int) -> Iterator[bytes]:
        reply = self._request("GET", self.url(path), stream=True)
        try:
            yield from reply.iter_content(CHUNK)
        except requests.RequestException as exc:
            raise RemoteUnavailableError(f"{self.endpoint.host}: GET: {exc}") from None
        finally:
            reply.close()

    def rename(self, src: str, dst: str, overwrite: bool) -> None:
        try:
            self._request("MOVE", self.url(src), ok=(201, 204), headers={
                "Destination": self.url(dst), "Overwrite": "T" if overwrite else "F"})
        except RemotePermanentError as exc:
            if "HTTP 412" in exc.message:
                raise RemotePermanentError(f"{dst} exists on {self.endpoint.host} "
                                           "(use -overwrite)") from None
            raise

    def remove(self, path: str) -> None:
        self._request("DELETE", self.url(path), ok=(200, 204, 404))

    def mkdirs(self, directory: str) -> None:
        current = ""
        for part in directory.strip("/").split("/"):
            if not part:
                continue
            current = posixpath.join(current or "/", part)
            self._request("MKCOL", self.url(current + "/"), ok=(201, 405, 301))


def open_session(endpoint: Endpoint, timeout: float, *, ca_dir: Any = None,
                 **_: Any) -> WebDAVSession:
    return WebDAVSession(endpoint, timeout, ca_dir=ca_dir)
