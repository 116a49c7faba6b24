"""ftp and ftps (explicit ``AUTH TLS``, protected data channel) with the standard ``ftplib``.

Binary mode always; passive mode unless the association says ``passive: false``. Uploads
resume with ``REST`` + ``STOR`` on the temporary name, sizes come from ``SIZE`` (RFC 3659),
renames are ``RNFR``/``RNTO``; ``umask`` is applied with ``SITE CHMOD`` where the server
has it. FTPS verifies the server's certificate against the server's CA directory and the
system's trust store, and checks the host name.

Reply codes: 530 (not logged in) is an authentication failure (no retry); other 5xx replies
are permanent refusals, except 550 on ``SIZE`` (no such file); 4xx replies and broken
connections are retried.

Example::

    with FTPSession(endpoint, timeout=30, tls=True) as s:
        s.upload(LocalSource(path), "f.dat", overwrite=True)
"""

from __future__ import annotations

import ftplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dms.storage.base import CHUNK
from transfer.errors import (
    RemoteAuthError,
    RemotePermanentError,
    RemoteUnavailableError,
    TransferError,
)
from transfer.logic.protocols.base import Endpoint, RemoteSession


@contextmanager
def _mapped(ep: Endpoint, what: str) -> Iterator[None]:
    try:
        yield
    except TransferError:
        raise
    except ftplib.error_perm as exc:
        text = str(exc)
        if text.startswith("530"):
            raise RemoteAuthError(f"{ep.user}@{ep.host}: login refused ({text})") from None
        raise RemotePermanentError(f"{ep.host}: {what}: {text}") from None
    except ftplib.error_temp as exc:
        raise RemoteUnavailableError(f"{ep.host}: {what}: {exc}") from None
    except ssl.SSLCertVerificationError as exc:
        raise RemotePermanentError(f"{ep.host}: certificate not trusted: "
                                   f"{exc.verify_message}") from None
    except (OSError, EOFError, ftplib.Error) as exc:
        raise RemoteUnavailableError(f"{ep.host}: {what}: {exc or type(exc).__name__}") \
            from None


class FTPSession(RemoteSession):
    resumable = True

    def __init__(self, endpoint: Endpoint, timeout: float, *, tls: bool = False,
                 ca_dir: str | Path | None = None) -> None:
        super().__init__(endpoint, timeout)
        self.tls = tls
        self.ca_dir = ca_dir
        self._ftp: ftplib.FTP | None = None

    @property
    def ftp(self) -> ftplib.FTP:
        if self._ftp is None:
            raise RemoteUnavailableError("not connected")
        return self._ftp

    def connect(self) -> None:
        ep = self.endpoint
        with _mapped(ep, "connect"):
            if self.tls:
                context = ssl.create_default_context()
                if self.ca_dir:
                    context.load_verify_locations(capath=str(self.ca_dir))
                ftp: ftplib.FTP = ftplib.FTP_TLS(context=context, timeout=self.timeout)  # noqa: S321
            else:
                ftp = ftplib.FTP(timeout=self.timeout)  # noqa: S321 - plain FTP on request
            self._ftp = ftp
            ftp.connect(ep.host, ep.port or 21)
            ftp.login(ep.user or "anonymous", ep.password or "")
            if isinstance(ftp, ftplib.FTP_TLS):
                ftp.prot_p()
            ftp.set_pasv(bool(ep.options.get("passive", True)))
            ftp.voidcmd("TYPE I")

    def close(self) -> None:
        if self._ftp is not None:
            try:
                self._ftp.quit()
            except (OSError, EOFError, ftplib.Error):
                self._ftp.close()
        self._ftp = None

    def size(self, path: str) -> int | None:
        with _mapped(self.endpoint, f"SIZE {path}"):
            try:
                found = self.ftp.size(path)
            except ftplib.error_perm as exc:
                if str(exc).startswith("550"):
                    return None
                raise
            return None if found is None else int(found)

    def _close_data(self, conn: socket.socket) -> None:
        if isinstance(conn, ssl.SSLSocket):
            conn.unwrap()
        conn.close()

    def write(self, path: str, chunks: Iterator[bytes], offset: int) -> None:
        with _mapped(self.endpoint, f"STOR {path}"):
            conn = self.ftp.transfercmd(f"STOR {path}", rest=offset or None)
            try:
                for block in chunks:
                    conn.sendall(block)
                self._close_data(conn)
            except BaseException:
                conn.close()
                raise
            self.ftp.voidresp()

    def read(self, path: str, offset: int) -> Iterator[bytes]:
        with _mapped(self.endpoint, f"RETR {path}"):
            conn = self.ftp.transfercmd(f"RETR {path}", rest=offset or None)
            try:
                while True:
                    block = conn.recv(CHUNK)
                    if not block:
                        break
                    yield block
                self._close_data(conn)
            except BaseException:
                conn.close()
                raise
            self.ftp.voidresp()

    def rename(self, src: str, dst: str, overwrite: bool) -> None:
        with _mapped(self.endpoint, f"rename to {dst}"):
            self.ftp.rename(src, dst)

    def remove(self, path: str) -> None:
        with _mapped(self.endpoint, f"DELE {path}"):
            self.ftp.delete(path)

    def mkdirs(self, directory: str) -> None:
        with _mapped(self.endpoint, f"MKD {directory}"):
            current = ""
            for part in directory.strip("/").split("/"):
                current = f"{current}/{part}" if (current or directory.startswith("/")) \
                    else part
                try:
                    self.ftp.mkd(current)
                except ftplib.error_perm as exc:
                    if not str(exc).startswith("550") and not str(exc).startswith("521"):
                        raise  # 550/521: exists already (or is refused: STOR will tell)

    def chmod(self, path: str, mode: int) -> None:
        try:
            with _mapped(self.endpoint, f"SITE CHMOD {path}"):
                self.ftp.voidcmd(f"SITE CHMOD {mode:o} {path}")
        except RemotePermanentError:
            pass  # not every server has SITE CHMOD: the file stays with its default mode


def open_session(endpoint: Endpoint, timeout: float, *, ca_dir: Any = None,
                 **_: Any) -> FTPSession:
    return FTPSession(endpoint, timeout, tls=endpoint.protocol == "ftps", ca_dir=ca_dir)
