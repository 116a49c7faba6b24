"""sftp with paramiko: password or private key, pinned host key, resumable uploads.

The host key is checked against the association's ``host_key`` option (``"ssh-ed25519
AAAA..."``, as in ``known_hosts``); when the association has none, the key seen on the first
successful connection is kept (``learned_host_key``) and must match from then on (trust on
first use, as ``ssh -o StrictHostKeyChecking=accept-new``). Renames use OpenSSH's
``posix-rename`` when overwriting (atomic replace) and plain SFTP rename otherwise (which
refuses an existing target).

Example::

    with SFTPSession(endpoint, timeout=30) as s:
        s.upload(LocalSource(path), "f.dat", overwrite=False)
"""

from __future__ import annotations

import errno
import io
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import paramiko

from dms.storage.base import CHUNK
from transfer.errors import (
    RemoteAuthError,
    RemotePermanentError,
    RemoteUnavailableError,
    TransferError,
)
from transfer.logic.protocols.base import Endpoint, RemoteSession

_KEY_CLASSES: tuple[type[paramiko.PKey], ...] = (
    paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


def load_private_key(text: str, passphrase: str | None) -> paramiko.PKey:
    """An OpenSSH/PEM private key from its text (any of ed25519, ECDSA, RSA)."""
    last: Exception | None = None
    for cls in _KEY_CLASSES:
        try:
            return cls.from_private_key(io.StringIO(text), password=passphrase)
        except paramiko.PasswordRequiredException:
            raise RemoteAuthError("the private key needs a passphrase") from None
        except (paramiko.SSHException, ValueError) as exc:
            last = exc
    raise RemoteAuthError(f"the private key cannot be read ({type(last).__name__})")


def close_quietly(*things: paramiko.SFTPClient | paramiko.Transport | None) -> None:
    """Close SFTP clients and transports whose peer may be gone, without raising.

    Closing sends a last message; on a cut connection that raises ``EOFError``, which
    would replace the error that explains the cut.
    """
    for thing in things:
        if thing is None:
            continue
        try:
            thing.close()
        except (paramiko.SSHException, EOFError, OSError):
            pass  # the peer is gone already: nothing left to release on its side


def key_line(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


@contextmanager
def _mapped(ep: Endpoint, what: str) -> Iterator[None]:
    """paramiko and socket errors as transfer errors (retryable or not)."""
    try:
        yield
    except TransferError:
        raise
    except paramiko.AuthenticationException:
        raise RemoteAuthError(f"{ep.user}@{ep.host}: authentication failed (wrong password "
                              "or key)") from None
    except (paramiko.SSHException, EOFError, socket.timeout, ConnectionError) as exc:
        raise RemoteUnavailableError(f"{ep.host}: {what}: {exc or type(exc).__name__}") \
            from None
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise RemotePermanentError(f"{ep.host}: {what}: permission denied") from None
        if exc.errno == errno.ENOENT:
            raise RemotePermanentError(f"{ep.host}: {what}: no such file or directory") \
                from None
        raise RemoteUnavailableError(f"{ep.host}: {what}: {exc.strerror or exc}") from None


class SFTPSession(RemoteSession):
    resumable = True

    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        super().__init__(endpoint, timeout)
        self.transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        #: the host key seen when none was pinned (the caller may keep it)
        self.learned_host_key: str | None = None

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            raise RemoteUnavailableError("not connected")
        return self._sftp

    def connect(self) -> None:
        ep = self.endpoint
        with _mapped(ep, "connect"):
            sock = socket.create_connection((ep.host, ep.port or 22), timeout=self.timeout)
            transport = paramiko.Transport(sock)
            self.transport = transport
            transport.banner_timeout = transport.auth_timeout = self.timeout
            transport.start_client(timeout=self.timeout)
            seen = key_line(transport.get_remote_server_key())
            pinned = ep.options.get("host_key")
            if pinned and " ".join(str(pinned).split()[:2]) != seen:
                raise RemotePermanentError(
                    f"{ep.host}: the host key is not the one of the association "
                    f"(got {seen.split()[0]} {seen.split()[1][:16]}...): possible "
                    "man-in-the-middle; update host_key if the host changed its key")
            if not pinned:
                self.learned_host_key = seen
            if ep.private_key:
                transport.auth_publickey(ep.user, load_private_key(ep.private_key,
                                                                   ep.passphrase))
            elif ep.password is not None:
                transport.auth_password(ep.user, ep.password)
            else:
                raise RemoteAuthError(f"{ep.name or ep.host}: no password nor private key")
            self._sftp = paramiko.SFTPClient.from_transport(transport)
            if self._sftp is None:
                raise RemoteUnavailableError(f"{ep.host}: no sftp subsystem")
            self._sftp.get_channel().settimeout(self.timeout)  # type: ignore[union-attr]

    def close(self) -> None:
        """Best effort: closing a connection that was cut must not hide why it was cut."""
        sftp, transport = self._sftp, self.transport
        self._sftp = self.transport = None
        close_quietly(sftp, transport)

    def size(self, path: str) -> int | None:
        with _mapped(self.endpoint, f"stat {path}"):
            try:
                st = self.sftp.stat(path)
            except FileNotFoundError:
                return None
            if st.st_mode is not None and stat.S_ISDIR(st.st_mode):
                raise RemotePermanentError(f"{path} is a directory on {self.endpoint.host}")
            return int(st.st_size or 0)

    def write(self, path: str, chunks: Iterator[bytes], offset: int) -> None:
        with _mapped(self.endpoint, f"write {path}"):
            with self.sftp.open(path, "r+b" if offset else "wb") as out:
                out.set_pipelined(True)
                if offset:
                    out.seek(offset)
                for block in chunks:
                    out.write(block)

    def read(self, path: str, offset: int) -> Iterator[bytes]:
        with _mapped(self.endpoint, f"read {path}"):
            with self.sftp.open(path, "rb") as src:
                if offset:
                    src.seek(offset)
                src.prefetch()
                while True:
                    block = src.read(CHUNK)
                    if not block:
                        return
                    yield block

    def rename(self, src: str, dst: str, overwrite: bool) -> None:
        with _mapped(self.endpoint, f"rename to {dst}"):
            if overwrite:
                self.sftp.posix_rename(src, dst)
            else:
                try:
                    self.sftp.rename(src, dst)
                except OSError:
                    if self.size(dst) is not None:
                        raise RemotePermanentError(
                            f"{dst} appeared on {self.endpoint.host} meanwhile "
                            "(use -overwrite)") from None
                    raise

    def remove(self, path: str) -> None:
        with _mapped(self.endpoint, f"remove {path}"):
            self.sftp.remove(path)

    def mkdirs(self, directory: str) -> None:
        with _mapped(self.endpoint, f"mkdir {directory}"):
            parts: list[str] = []
            current = directory
            while current not in ("", "/", "."):
                try:
                    self.sftp.stat(current)
                    break
                except FileNotFoundError:
                    parts.append(current)
                    current = current.rsplit("/", 1)[0]
            for path in reversed(parts):
                try:
                    self.sftp.mkdir(path)
                except OSError:
                    self.sftp.stat(path)  # made by someone else meanwhile, else raise

    def chmod(self, path: str, mode: int) -> None:
        with _mapped(self.endpoint, f"chmod {path}"):
            self.sftp.chmod(path, mode)


def open_session(endpoint: Endpoint, timeout: float, **_: Any) -> SFTPSession:
    return SFTPSession(endpoint, timeout)
