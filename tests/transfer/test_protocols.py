"""The transfer protocols against real servers: OpenSSH (password and key), pyftpdlib (FTP and
FTPS), WsgiDAV (HTTPS PUT + MOVE): temp name then rename, resume, verification, overwrite,
umask, and the errors that must not be retried."""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path

import pytest

from core.cli.instance import Instance
from dms.storage.base import adler32_bytes
from tests.support.tcpproxy import FaultProxy
from tests.transfer.conftest import Remote
from transfer.errors import (
    RemoteAuthError,
    RemotePermanentError,
    RemoteUnavailableError,
    TransferChecksumError,
)
from transfer.logic.protocols import open_session
from transfer.logic.protocols.base import PART_SUFFIX, Endpoint, LocalSource

DATA = os.urandom(3 * 1024 * 1024 + 17)


def endpoint(protocol: str, remote: Remote, directory: str, **kw: object) -> Endpoint:
    options = dict(kw.pop("options", {}) or {})  # type: ignore[call-overload]
    return Endpoint(protocol, remote.host, int(kw.pop("port", remote.port)),  # type: ignore[call-overload]
                    remote.user, directory, options,
                    **{"password": remote.password, **kw})  # type: ignore[arg-type]


def source(tmp_path: Path, data: bytes = DATA, checksum: str | None = None) -> LocalSource:
    path = tmp_path / "src.bin"
    path.write_bytes(data)
    return LocalSource(path, checksum=checksum or adler32_bytes(data))


def no_parts(directory: Path) -> None:
    assert not [p for p in directory.rglob("*") if p.name.endswith(PART_SUFFIX)]


def test_sftp_password_upload_umask_overwrite_download(sftp_host: Remote, tmp_path: Path
                                                       ) -> None:
    target = sftp_host.root / "pw" / "in"
    ep = endpoint("sftp", sftp_host, str(target), options={"umask": "027"})
    with open_session(ep, timeout=10) as s:
        assert s.upload(source(tmp_path), "f.bin", overwrite=False) == len(DATA)
        assert getattr(s, "learned_host_key", "").startswith("ssh-ed25519 ")
        with pytest.raises(RemotePermanentError, match="exists"):
            s.upload(source(tmp_path), "f.bin", overwrite=False)
        s.upload(source(tmp_path, b"new"), "f.bin", overwrite=True)
        got = tmp_path / "back"
        assert s.download("f.bin", got) == 3
    assert (target / "f.bin").read_bytes() == b"new" == got.read_bytes()
    assert stat.S_IMODE((target / "f.bin").stat().st_mode) == 0o640
    no_parts(target)


def test_sftp_key_login_and_pinned_host_key(sftp_host: Remote, tmp_path: Path) -> None:
    assert sftp_host.key is not None
    key_text = sftp_host.key.read_text()
    target = sftp_host.root / "key"
    ep = Endpoint("sftp", sftp_host.host, sftp_host.port, sftp_host.user, str(target),
                  {}, private_key=key_text)
    with open_session(ep, timeout=10) as s:
        s.upload(source(tmp_path), "k.bin", overwrite=False)
        learned = s.learned_host_key
    assert (target / "k.bin").read_bytes() == DATA
    pinned = Endpoint("sftp", sftp_host.host, sftp_host.port, sftp_host.user, str(target),
                      {"host_key": learned}, private_key=key_text)
    with open_session(pinned, timeout=10) as s:
        assert s.size(str(target / "k.bin")) == len(DATA)
    wrong = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOk0cGtEB3pKUbCsGgKQLjdLKw+Kcu5bKEcRDaEcAexm"
    with pytest.raises(RemotePermanentError, match="host key"):
        with open_session(Endpoint("sftp", sftp_host.host, sftp_host.port, sftp_host.user,
                                   str(target), {"host_key": wrong}, private_key=key_text),
                          timeout=10):
            pass


def test_sftp_wrong_password_fails_fast(sftp_host: Remote) -> None:
    ep = Endpoint("sftp", sftp_host.host, sftp_host.port, sftp_host.user, "/tmp", {},
                  password="not-the-password")
    started = time.monotonic()
    with pytest.raises(RemoteAuthError, match="authentication failed") as err:
        with open_session(ep, timeout=10):
            pass
    assert err.value.permanent
    assert time.monotonic() - started < 8


def test_sftp_cut_mid_transfer_leaves_no_file_and_resumes(sftp_host: Remote, tmp_path: Path
                                                          ) -> None:
    target = sftp_host.root / "cut"
    proxy = FaultProxy(("127.0.0.1", sftp_host.port)).start()
    try:
        proxy.cut_after, proxy.cuts = 1_500_000, 1
        ep = endpoint("sftp", sftp_host, str(target), port=proxy.port)
        with pytest.raises(RemoteUnavailableError):
            with open_session(ep, timeout=10) as s:
                s.upload(source(tmp_path), "big.bin", overwrite=False)
        assert proxy.cut_count == 1
        assert not (target / "big.bin").exists()  # never a partial file under the real name
        part = target / f".big.bin{PART_SUFFIX}"
        have = settled_size(part)  # the server may still write what it had received
        assert 0 < have < len(DATA)
        with open_session(ep, timeout=10) as s:
            sent = s.upload(source(tmp_path), "big.bin", overwrite=False)
        assert sent == len(DATA) - have  # resumed, not sent again
        assert (target / "big.bin").read_bytes() == DATA
        no_parts(target)
    finally:
        proxy.stop()


def test_sftp_close_after_the_connection_broke_does_not_raise(sftp_host: Remote) -> None:
    """Closing sends a last message; on a broken socket paramiko raises EOFError, which used
    to replace the RemoteUnavailableError that explained the break (a flaky CI failure)."""
    session = open_session(endpoint("sftp", sftp_host, str(sftp_host.root)), timeout=10)
    session.connect()
    transport = session.transport  # type: ignore[attr-defined]
    transport.sock.shutdown(socket.SHUT_WR)  # our side can no longer send: as after a cut
    session.close()  # must not raise
    assert session.transport is None  # type: ignore[attr-defined]
    assert not transport.is_active()


def settled_size(path: Path, timeout: float = 10) -> int:
    """The size of ``path`` once it stopped changing for half a second."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        size = path.stat().st_size if path.exists() else 0
        if size == last and size > 0:
            return size
        last = size
        time.sleep(0.5)
    return last


def test_checksum_mismatch_is_refused_before_rename(sftp_host: Remote, tmp_path: Path) -> None:
    target = sftp_host.root / "bad"
    with open_session(endpoint("sftp", sftp_host, str(target)), timeout=10) as s:
        with pytest.raises(TransferChecksumError, match="checksum mismatch"):
            s.upload(source(tmp_path, checksum="00000001"), "bad.bin", overwrite=False)
    assert not (target / "bad.bin").exists()
    no_parts(target)


def test_sftp_missing_directory_without_mkdir_is_permanent(sftp_host: Remote, tmp_path: Path
                                                           ) -> None:
    ep = endpoint("sftp", sftp_host, str(sftp_host.root / "nope" / "x"),
                  options={"mkdir": False})
    with open_session(ep, timeout=10) as s, pytest.raises(RemotePermanentError):
        s.upload(source(tmp_path, b"x"), "f", overwrite=False)


@pytest.mark.parametrize("kind", ["ftp", "ftps"])
def test_ftp_upload_resume_download(kind: str, request: pytest.FixtureRequest,
                                    instance: Instance, tmp_path: Path) -> None:
    remote: Remote = request.getfixturevalue(f"{kind}_host")
    (remote.root / "in").mkdir(exist_ok=True)
    (remote.root / "in" / f".r.bin{PART_SUFFIX}").write_bytes(DATA[:1_000_000])  # broken try
    ep = endpoint(kind, remote, "/in")
    with open_session(ep, timeout=10, ca_dir=instance.ca_dir) as s:
        assert s.upload(source(tmp_path), "r.bin", overwrite=False) == len(DATA) - 1_000_000
        with pytest.raises(RemotePermanentError, match="exists"):
            s.upload(source(tmp_path), "r.bin", overwrite=False)
        assert s.download("r.bin", tmp_path / "back") == len(DATA)
    assert (remote.root / "in" / "r.bin").read_bytes() == DATA == \
        (tmp_path / "back").read_bytes()
    no_parts(remote.root)


def test_ftp_wrong_password(ftp_host: Remote) -> None:
    ep = Endpoint("ftp", ftp_host.host, ftp_host.port, ftp_host.user, "/", {}, password="no")
    with pytest.raises(RemoteAuthError, match="login refused"):
        with open_session(ep, timeout=10):
            pass


def test_ftps_refuses_an_untrusted_certificate(ftps_host: Remote, tmp_path: Path) -> None:
    ep = endpoint("ftps", ftps_host, "/")
    empty = tmp_path / "no-ca"
    empty.mkdir()
    with pytest.raises(RemotePermanentError, match="certificate"):
        with open_session(ep, timeout=10, ca_dir=empty):
            pass


def test_webdav_put_move_overwrite_and_auth(dav_host: Remote, instance: Instance,
                                            tmp_path: Path) -> None:
    ep = endpoint("https", dav_host, "/drop/sub")
    with open_session(ep, timeout=10, ca_dir=instance.ca_dir) as s:
        assert s.upload(source(tmp_path), "d.bin", overwrite=False) == len(DATA)
        with pytest.raises(RemotePermanentError, match="exists"):
            s.upload(source(tmp_path), "d.bin", overwrite=False)
        s.upload(source(tmp_path, b"v2"), "d.bin", overwrite=True)
    assert (dav_host.root / "drop" / "sub" / "d.bin").read_bytes() == b"v2"
    no_parts(dav_host.root)
    bad = Endpoint("https", dav_host.host, dav_host.port, dav_host.user, "/drop", {},
                   password="wrong")
    with pytest.raises(RemoteAuthError):
        with open_session(bad, timeout=10, ca_dir=instance.ca_dir) as s:
            s.upload(source(tmp_path, b"x"), "x", overwrite=False)
