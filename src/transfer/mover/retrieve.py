"""Fetching a data file from its source host: sftp (pooled connections) or HTTPS GET.

sftp connections are kept per (source host, user) and reused by the next retrieval, so a
thousand small files cost a thousand sftp opens, not a thousand SSH handshakes; a connection
that failed is dropped. Host keys are checked against the configured ``known_hosts``
(strict: an unknown host is refused). What arrives is written to a local file and hashed
(adler32) on the way; a cancelled retrieval (the mover lost its lease) stops at the next
chunk.

Example::

    sources = SourceConnections(cfg)
    info = sources.retrieve("src-a", "ops", "/data/f.grib", Path("/tmp/x"), cancel=Event())
"""

from __future__ import annotations

import threading
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import paramiko
import requests

from dms.storage.base import CHUNK, Adler32, FileInfo
from transfer.errors import (
    RemoteAuthError,
    RemotePermanentError,
    RemoteUnavailableError,
    TransferError,
)
from transfer.logic.protocols.base import Endpoint
from transfer.logic.protocols.sftp import _mapped, close_quietly
from transfer.mover.config import MoverConfig, SourceHostConfig


class RetrievalCancelledError(Exception):
    """The retrieval was stopped (lease lost or mover stopping)."""


class _Conn:
    def __init__(self, transport: paramiko.Transport, sftp: paramiko.SFTPClient) -> None:
        self.transport, self.sftp = transport, sftp

    def close(self) -> None:
        close_quietly(self.sftp, self.transport)


class SourceConnections:
    def __init__(self, cfg: MoverConfig) -> None:
        self.cfg = cfg
        self._idle: dict[tuple[str, str], list[_Conn]] = defaultdict(list)
        self._lock = threading.Lock()
        self._keys: dict[Path, paramiko.PKey] = {}

    def _pkey(self, path: Path) -> paramiko.PKey:
        if path not in self._keys:
            from transfer.logic.protocols.sftp import load_private_key

            self._keys[path] = load_private_key(path.read_text(), None)
        return self._keys[path]

    def _connect(self, name: str, src: SourceHostConfig, user: str) -> _Conn:
        host = src.host or name
        ep = Endpoint("sftp", host, src.port, user, "/")
        with _mapped(ep, "connect"):
            transport = paramiko.Transport((host, src.port))
            try:
                transport.banner_timeout = transport.auth_timeout = self.cfg.connect_timeout
                transport.start_client(timeout=self.cfg.connect_timeout)
                key = transport.get_remote_server_key()
                known = paramiko.HostKeys()
                if src.known_hosts is not None:
                    known.load(str(src.known_hosts))
                lookup = host if src.port == 22 else f"[{host}]:{src.port}"
                entry = known.lookup(lookup)
                if entry is None or entry.get(key.get_name()) != key:
                    raise RemotePermanentError(f"{name}: host key not in the mover's known_hosts"
                                               " (or changed)")
                if src.key_file is None:
                    raise RemoteAuthError(f"{name}: no KeyFile configured for this source host")
                transport.auth_publickey(user, self._pkey(src.key_file))
                sftp = paramiko.SFTPClient.from_transport(transport)
                if sftp is None:
                    raise RemoteUnavailableError(f"{name}: no sftp subsystem")
                sftp.get_channel().settimeout(self.cfg.connect_timeout)  # type: ignore[union-attr]
            except BaseException:
                transport.close()
                raise
        return _Conn(transport, sftp)

    @contextmanager
    def connection(self, name: str, user: str) -> Iterator[_Conn]:
        key = (name, user)
        with self._lock:
            conn = self._idle[key].pop() if self._idle[key] else None
        if conn is None or not conn.transport.is_active():
            conn = self._connect(name, self.cfg.source(name), user)
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self._idle[key].append(conn)

    def close(self) -> None:
        with self._lock:
            for conns in self._idle.values():
                for conn in conns:
                    conn.close()
            self._idle.clear()

    def retrieve(self, name: str, user: str, path: str, dest: Path, *,
                 cancel: threading.Event, ca_dir: str | None = None,
                 progress: Callable[[int], None] | None = None) -> FileInfo:
        src = self.cfg.source(name)
        digest = Adler32()
        with open(dest, "wb") as out:
            if src.protocol == "https":
                for block in _https_blocks(src, path, ca_dir, self.cfg.connect_timeout):
                    if cancel.is_set():
                        raise RetrievalCancelledError
                    out.write(block)
                    digest.update(block)
                    if progress:
                        progress(digest.size)
            else:
                ep = Endpoint("sftp", src.host or name, src.port, user, "/")
                with self.connection(name, user) as conn, _mapped(ep, f"read {path}"), \
                        conn.sftp.open(path, "rb") as remote:
                    remote.prefetch()
                    while True:
                        if cancel.is_set():
                            raise RetrievalCancelledError
                        block = remote.read(CHUNK)
                        if not block:
                            break
                        out.write(block)
                        digest.update(block)
                        if progress:
                            progress(digest.size)
        return FileInfo(digest.size, digest.hexdigest())


def _https_blocks(src: SourceHostConfig, path: str, ca_dir: str | None,
                  timeout: float) -> Iterator[bytes]:
    if not src.base_url:
        raise RemotePermanentError("an https source host needs a BaseURL")
    url = src.base_url.rstrip("/") + urllib.parse.quote(path)
    try:
        with requests.get(url, stream=True, timeout=(timeout, timeout),
                          verify=ca_dir or True) as reply:
            if reply.status_code in (401, 403):
                raise RemoteAuthError(f"{url}: HTTP {reply.status_code}")
            if reply.status_code == 404:
                raise RemotePermanentError(f"{url}: no such file")
            if reply.status_code != 200:
                raise RemoteUnavailableError(f"{url}: HTTP {reply.status_code}")
            yield from reply.iter_content(CHUNK)
    except TransferError:
        raise
    except requests.RequestException as exc:
        raise RemoteUnavailableError(f"{url}: {type(exc).__name__}") from None
