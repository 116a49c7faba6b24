"""Fixtures of the transfer tests: real remote servers on loopback.

* ``sftp_host`` (session): OpenSSH sshd (tests/support/sshd.py) with password and key login
  for the user ``pwmsxfer``;
* ``ftp_host``/``ftps_host`` (module): pyftpdlib, plain and with TLS (the instance's host
  certificate, so the dev CA verifies it);
* ``dav_host`` (module): WsgiDAV over HTTPS;
* ``smtp`` (function): aiosmtpd keeping the mails it receives.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.cli.instance import Instance
from tests.support.ftpd import FTPServer
from tests.support.smtpd import SMTPServer
from tests.support.sshd import SSHServer, machine_password
from tests.support.webdav import WebDAVServer

SFTP_USER = "pwmsxfer"


@dataclass
class Remote:
    host: str
    port: int
    user: str
    password: str
    root: Path
    key: Path | None = None
    server: object | None = None


@pytest.fixture(scope="session")
def sftp_host() -> Iterator[Remote]:
    server = SSHServer(user=SFTP_USER, password=machine_password(SFTP_USER))
    try:
        server.start()
        assert server.password is not None
        yield Remote("127.0.0.1", server.port, SFTP_USER, server.password, server.home,
                     server.key, server)
    finally:
        server.stop()


def host_cert(instance: Instance) -> tuple[Path, Path]:
    return instance.directory / "host" / "hostcert.pem", instance.directory / "host" / \
        "hostkey.pem"


@pytest.fixture(scope="module")
def ftp_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    root, password = tmp_path_factory.mktemp("ftp"), secrets.token_urlsafe(12)
    with FTPServer(root, "ftpops", password) as ftp:
        yield Remote("127.0.0.1", ftp.port, "ftpops", password, root)


@pytest.fixture(scope="module")
def ftps_host(tmp_path_factory: pytest.TempPathFactory, instance: Instance) -> Iterator[Remote]:
    root, password = tmp_path_factory.mktemp("ftps"), secrets.token_urlsafe(12)
    cert, key = host_cert(instance)
    with FTPServer(root, "ftpsops", password, cert=cert, key=key) as ftp:
        yield Remote("127.0.0.1", ftp.port, "ftpsops", password, root)


@pytest.fixture(scope="module")
def dav_host(tmp_path_factory: pytest.TempPathFactory, instance: Instance) -> Iterator[Remote]:
    root, password = tmp_path_factory.mktemp("dav"), secrets.token_urlsafe(12)
    cert, key = host_cert(instance)
    with WebDAVServer(root, "davops", password, cert, key) as dav:
        yield Remote("127.0.0.1", dav.port, "davops", password, root)


@pytest.fixture
def smtp() -> Iterator[SMTPServer]:
    with SMTPServer() as server:
        yield server
