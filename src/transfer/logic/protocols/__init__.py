"""The transfer protocols: ``sftp``, ``ftp``, ``ftps``, ``https`` (PUT/WebDAV), ``se``.

:func:`open_session` gives a :class:`~transfer.logic.protocols.base.RemoteSession` for an
endpoint; its ``upload``/``download`` are the safe transfers of
:mod:`transfer.logic.protocols.base`.

Example::

    >>> sorted(PROTOCOLS)
    ['ftp', 'ftps', 'https', 'se', 'sftp']
    >>> PROTOCOLS["sftp"].default_port
    22
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any

from transfer.logic.protocols.base import Endpoint, RemoteSession


@dataclass(frozen=True)
class ProtocolInfo:
    name: str
    module: str
    default_port: int | None
    description: str
    #: secrets it can use
    secrets: tuple[str, ...]
    resumable: bool
    checksum: str


PROTOCOLS = {p.name: p for p in (
    ProtocolInfo("sftp", "sftp", 22, "SSH file transfer (OpenSSH and others)",
                 ("password", "private_key", "passphrase"), True, "size"),
    ProtocolInfo("ftp", "ftp", 21, "FTP, plain (passive by default)", ("password",), True,
                 "size"),
    ProtocolInfo("ftps", "ftp", 21, "FTP with explicit TLS (AUTH TLS, protected data)",
                 ("password",), True, "size"),
    ProtocolInfo("https", "webdav", 443, "HTTPS PUT to a WebDAV server, then MOVE",
                 ("password",), False, "size"),
    ProtocolInfo("se", "se", None, "a storage element of this pilotwms instance, by name",
                 (), False, "adler32"),
)}


def open_session(endpoint: Endpoint, *, timeout: float = 30.0, **kw: Any) -> RemoteSession:
    """A (not yet connected) session to ``endpoint``; ``kw``: ``ca_dir``, ``ses``."""
    info = PROTOCOLS[endpoint.protocol]
    module = import_module(f"transfer.logic.protocols.{info.module}")
    session: RemoteSession = module.open_session(endpoint, timeout, **kw)
    return session
