"""The three storage plugins against real back ends: pilotwms's HTTPS SE service (real TLS,
real certificates and tokens), Debian's xrootd server, and a local directory.

Each plugin round-trips a file with adler32 checks, detects a corrupted stored copy on
download and a wrong expected checksum on upload, and leaves nothing behind when it refuses.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from core.config.schema import Config
from core.exceptions import NotAuthenticatedError, NotAuthorizedError
from core.rpc.client import Credentials
from dms.service.storage_element import StorageElementService
from dms.storage import StorageElements
from dms.storage.base import (
    ChecksumMismatchError,
    FileTooBigError,
    StorageFileNotFoundError,
    StoragePlugin,
    StorageUnavailableError,
    UnsafePathError,
    adler32_bytes,
)
from dms.storage.https import HTTPSStorage
from dms.storage.xrootd import XRootDStorage
from tests.dms.storage.conftest import with_storage
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer
from tests.support.xrootd import XRootDServer, free_port

ALICE = "/demo/user/a/alice"


@dataclass
class Setup:
    server: ThreadedServer
    config: Config
    creds: Creds
    base: Path
    xrd: XRootDServer

    def ses(self, credentials: Credentials | None = None) -> StorageElements:
        creds = credentials or Credentials(cert=self.creds.alice[0], key=self.creds.alice[1])
        return StorageElements.from_config(self.config, credentials=creds,
                                           ca_dir=self.creds.ca_dir)

    def backend_file(self, se: str, lfn: str) -> Path:
        """Where the bytes of ``lfn`` really are, to corrupt them behind the SE's back."""
        if se == "XRD":
            return self.xrd.data / "pilotwms" / lfn.lstrip("/")
        directory = {"DISK-A": "disk-a", "SHARED": "shared"}[se]
        return self.base / directory / lfn.lstrip("/")


@pytest.fixture(scope="module")
def setup(instance: object, creds: Creds, tmp_path_factory: pytest.TempPathFactory,
          xrootd_server: XRootDServer) -> Iterator[Setup]:
    from core.config.loader import load_config

    base = tmp_path_factory.mktemp("se")
    port = free_port()
    config = with_storage(load_config(instance.config, environ={}),  # type: ignore[attr-defined]
                          f"sqlite:///{base / 'unused.db'}", base, port, xrootd_server.port)
    with ThreadedServer(config, [StorageElementService], port=port) as srv:
        yield Setup(srv, config, creds, base, xrootd_server)


PLUGINS = ["DISK-A", "XRD", "SHARED"]


@pytest.fixture
def payload(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    return path, data


@pytest.mark.parametrize("se_name", PLUGINS)
def test_round_trip(setup: Setup, se_name: str, payload: tuple[Path, bytes],
                    tmp_path: Path) -> None:
    src, data = payload
    se = setup.ses()[se_name]
    lfn = f"{ALICE}/rt/{se_name}/f.bin"
    seen: list[int] = []
    info = se.put(lfn, src, progress=seen.append)
    assert (info.size, info.checksum) == (len(data), adler32_bytes(data))
    assert seen and seen[-1] == len(data)
    assert se.exists(lfn) and not se.exists(f"{ALICE}/rt/{se_name}/nope")
    assert se.stat(lfn) == info and se.size(lfn) == len(data)
    assert [(e.name, e.size, e.is_dir) for e in se.list(f"{ALICE}/rt/{se_name}")] == [
        ("f.bin", len(data), False)]
    got = se.get(lfn, tmp_path / "out" / "copy.bin", checksum=info.checksum)
    assert got == info and (tmp_path / "out" / "copy.bin").read_bytes() == data
    assert se.remove(lfn) is True
    assert se.remove(lfn) is False
    assert not se.exists(lfn)
    with pytest.raises(StorageFileNotFoundError):
        se.stat(lfn)
    with pytest.raises(StorageFileNotFoundError):
        se.get(lfn, tmp_path / "gone.bin")
    assert not (tmp_path / "gone.bin").exists()


@pytest.mark.parametrize("se_name", PLUGINS)
def test_corrupted_copy_is_detected_on_download(setup: Setup, se_name: str,
                                                payload: tuple[Path, bytes],
                                                tmp_path: Path) -> None:
    src, data = payload
    se = setup.ses()[se_name]
    lfn = f"{ALICE}/corrupt/{se_name}.bin"
    info = se.put(lfn, src)
    stored = setup.backend_file(se_name, lfn)
    assert stored.read_bytes() == data
    with open(stored, "r+b") as f:  # flip one byte in the middle, same size
        f.seek(len(data) // 2)
        byte = f.read(1)
        f.seek(len(data) // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ChecksumMismatchError):
        se.get(lfn, tmp_path / "bad.bin", checksum=info.checksum)
    assert not (tmp_path / "bad.bin").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bad.bin")]
    if se_name != "XRD":  # the SE itself sees the damage
        assert se.stat(lfn).checksum != info.checksum
    else:  # xrootd keeps the adler32 computed at upload (an extended attribute): stale now
        assert se.stat(lfn).checksum == info.checksum
    se.remove(lfn)


@pytest.mark.parametrize("se_name", PLUGINS)
def test_wrong_expected_checksum_on_upload_stores_nothing(
        setup: Setup, se_name: str, payload: tuple[Path, bytes]) -> None:
    src, _ = payload
    se = setup.ses()[se_name]
    lfn = f"{ALICE}/wrong/{se_name}.bin"
    with pytest.raises(ChecksumMismatchError):
        se.put(lfn, src, checksum="00000001")
    assert not se.exists(lfn)


def test_https_server_refuses_bytes_that_do_not_match_the_declared_checksum(
        setup: Setup, payload: tuple[Path, bytes]) -> None:
    src, data = payload
    plugin = setup.ses()["DISK-A"].plugins[0]
    assert isinstance(plugin, HTTPSStorage)
    lfn = f"{ALICE}/declared/f.bin"
    with pytest.raises(ChecksumMismatchError, match="client declared 0badc0de"):
        plugin._upload(lfn, src, "0badc0de", None)  # as if the bytes were damaged in transit
    target_dir = setup.base / "disk-a" / lfn.lstrip("/")
    assert not target_dir.exists()
    assert list(target_dir.parent.iterdir()) == []  # no temp file left either
    # and without any declared checksum the server refuses before storing
    response = plugin.rpc.session.put(plugin.url(lfn), data=data[:10], verify=plugin.rpc.verify)
    assert response.status_code == 200 and response.json()["OK"] is False
    assert "X-Checksum-Adler32" in response.json()["Message"]


def test_xrootd_upload_is_verified_by_the_server(setup: Setup,
                                                 payload: tuple[Path, bytes]) -> None:
    src, data = payload
    plugin = setup.ses()["XRD"].plugins[0]
    assert isinstance(plugin, XRootDStorage)
    lfn = f"{ALICE}/xrd/f.bin"
    info = plugin.put(lfn, src)
    assert plugin.checksum(lfn) == info.checksum == adler32_bytes(data)
    assert plugin.url(lfn) == f"{setup.xrd.url}//pilotwms{lfn}"
    plugin.remove(lfn)


def test_https_paths_are_confined(setup: Setup, tmp_path: Path) -> None:
    se = setup.ses()["DISK-A"]
    src = tmp_path / "f"
    src.write_bytes(b"x")
    with pytest.raises(UnsafePathError):
        se.put(f"{ALICE}/../../b/bob/x", src)
    plugin = se.plugins[0]
    assert isinstance(plugin, HTTPSStorage)
    base_url = plugin.url(f"{ALICE}/x").rsplit("/demo/", 1)[0]
    for raw in ("demo/user/a/alice/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                "demo/user/a/alice/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd"):
        response = plugin.rpc.session.get(f"{base_url}/{raw}", verify=plugin.rpc.verify)
        reply = response.json()
        assert reply["OK"] is False and reply["ExceptionClass"] == "UnsafePathError", raw
    # a symbolic link inside the SE leading outside is refused too
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    home = setup.base / "disk-a" / "demo" / "user" / "a" / "alice"
    home.mkdir(parents=True, exist_ok=True)
    (home / "escape").symlink_to(tmp_path)
    with pytest.raises(UnsafePathError):
        se.get(f"{ALICE}/escape/secret.txt", tmp_path / "stolen.txt")
    assert not (tmp_path / "stolen.txt").exists()


def test_https_rights(setup: Setup, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"data")
    creds = setup.creds
    alice = setup.ses()["DISK-A"]
    bob = setup.ses(Credentials(cert=creds.proxy(creds.stranger, group="demo_guest")))[
        "DISK-A"]
    token = setup.ses(Credentials(token=creds.token("alice", "demo_user")))["DISK-A"]
    host = setup.ses(Credentials(cert=creds.host[0], key=creds.host[1]))["DISK-A"]
    anonymous = setup.ses(Credentials())["DISK-A"]
    alice.put(f"{ALICE}/r/f", src)
    # the VO reads, only the owner writes and removes
    assert bob.stat(f"{ALICE}/r/f").size == 4
    bob.get(f"{ALICE}/r/f", tmp_path / "bobs")
    with pytest.raises(NotAuthorizedError):
        bob.put(f"{ALICE}/r/g", src)
    with pytest.raises(Exception, match="may not write"):
        bob.remove(f"{ALICE}/r/f")
    bob.put("/demo/user/b/bob/mine", src)
    with pytest.raises(NotAuthorizedError):
        alice.put("/demo/user/b/bob/mine", src)
    with pytest.raises(NotAuthorizedError):
        alice.put("/demo/shared/f", src)  # VO areas need production rights
    with pytest.raises(NotAuthorizedError):
        alice.put("/othervo/user/a/alice/f", src)
    # a token identity is the same user
    token.put(f"{ALICE}/r/by-token", src)
    assert alice.stat(f"{ALICE}/r/by-token").checksum == adler32_bytes(b"data")
    # trusted hosts (the request agent) write anywhere
    host.put("/demo/shared/f", src)
    with pytest.raises(NotAuthenticatedError):
        anonymous.put(f"{ALICE}/r/anon", src)
    with pytest.raises(NotAuthenticatedError):
        anonymous.get(f"{ALICE}/r/f", tmp_path / "anon")
    assert not (tmp_path / "anon").exists()


def test_access_flags_and_vo_restriction(setup: Setup, tmp_path: Path) -> None:
    data = setup.config.model_dump(by_alias=True, exclude_none=True)
    ses = data["Resources"]["StorageElements"]
    ses["RO"] = dict(ses["SHARED"], WriteAccess=False)
    ses["OTHER"] = dict(ses["SHARED"], VOs=["othervo"])
    cfg = Config.model_validate(data)
    all_ses = StorageElements.from_config(cfg)
    src = tmp_path / "f"
    src.write_bytes(b"x")
    from dms.storage.base import StorageAccessError

    with pytest.raises(StorageAccessError, match="write access is disabled"):
        all_ses["RO"].put(f"{ALICE}/f", src)
    with pytest.raises(StorageAccessError, match="does not take files of VO 'demo'"):
        all_ses["OTHER"].put(f"{ALICE}/f", src)
    assert all_ses.site_ses("LCG.There.org") == ["DISK-A", "XRD"]
    assert all_ses.sites_of("DISK-B") == ["LCG.Here.org"]


def test_unreachable_storage_fails_fast(tmp_path: Path, creds: Creds) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x")
    dead = free_port()
    plugins: list[StoragePlugin] = [
        HTTPSStorage("DEAD", "127.0.0.1", dead, ca_dir=creds.ca_dir),
        XRootDStorage("DEAD", "127.0.0.1", dead, "/data")]
    for plugin in plugins:
        with pytest.raises(StorageUnavailableError):
            plugin.put(f"{ALICE}/f", src)
        with pytest.raises(StorageUnavailableError):
            plugin.stat(f"{ALICE}/f")


def test_get_storage_elements_describes_the_configuration(setup: Setup) -> None:
    reply = requests.post(f"{setup.server.url}/DataManagement/StorageElement",
                          data={"method": "getStorageElements"},
                          cert=tuple(map(str, setup.creds.alice)),
                          verify=str(setup.creds.ca_dir), timeout=30).json()
    assert reply["OK"], reply
    ses = StorageElements.from_wire(reply["Value"])
    assert sorted(ses) == ["DISK-A", "DISK-B", "DISK-SMALL", "SHARED", "XRD"]
    assert ses["XRD"].url("/demo/f") == f"{setup.xrd.url}//pilotwms/demo/f"
    assert ses.site_ses("LCG.Here.org") == ["DISK-B"]


def test_https_size_limit_and_interrupted_uploads_leave_nothing(
        setup: Setup, payload: tuple[Path, bytes]) -> None:
    src, data = payload  # 3 MiB, the SE takes 1 MiB
    se = setup.ses()["DISK-SMALL"]
    with pytest.raises(FileTooBigError, match="over the SE's limit"):
        se.put(f"{ALICE}/big/f.bin", src)
    small_dir = setup.base / "disk-small"
    assert not [p for p in small_dir.rglob("*") if p.is_file()]
    # a client that goes away in the middle of an upload: the temp file goes too
    import socket
    import ssl
    import time

    ctx = ssl.create_default_context(cafile=None, capath=str(setup.creds.ca_dir))
    ctx.load_cert_chain(*map(str, setup.creds.alice))
    plugin = setup.ses()["DISK-A"].plugins[0]
    assert isinstance(plugin, HTTPSStorage)
    path = plugin.url(f"{ALICE}/cut/f.bin").split(str(setup.server.port), 1)[1]
    with socket.create_connection(("127.0.0.1", setup.server.port)) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall((f"PUT {path} HTTP/1.1\r\nHost: localhost\r\n"
                     f"Content-Length: {len(data)}\r\nX-Checksum-Adler32: "
                     f"{adler32_bytes(data)}\r\n\r\n").encode() + data[:1024 * 1024])
        time.sleep(0.5)
        home = setup.base / "disk-a" / ALICE.lstrip("/") / "cut"
        assert [p.name for p in home.iterdir()][0].endswith(".upload")  # in progress
    deadline = time.monotonic() + 10
    while list(home.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(home.iterdir()) == []
