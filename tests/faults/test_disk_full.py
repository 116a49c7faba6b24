"""A full file system under the sandbox store and under a disk SE (small tmpfs mounts made by
the test): uploads fail with a clear error (``StorageFullError``, HTTP 507 on the streaming
route; the SE's "No space left on device"), nothing half-written stays or is registered, what
was stored before is intact, and uploads work again once space is freed."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from core.config.schema import Config
from core.db import init_schema, make_engine
from core.rpc.client import Credentials, RPCClient
from core.rpc.jencode import encode
from dms.service.storage_element import StorageElementService
from dms.storage.base import StorageError
from dms.storage.https import HTTPSStorage
from tests.faults.conftest import archive
from tests.support.credentials import Creds
from tests.support.mariadb import free_port
from tests.support.servers import ThreadedServer
from wms.db.sandbox_tables import sandboxes
from wms.db.schema import WMS_SCHEMA
from wms.sandbox_client import download_sandbox
from wms.service.sandbox_store import SandboxStoreService

LFN = "/demo/user/a/alice/faults/{}"


@contextmanager
def small_fs(path: Path, size: str = "3m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` for the test (root only), removed after."""
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                    str(path)], check=True, capture_output=True, timeout=30)
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(path)], check=True, timeout=30)
        path.rmdir()


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` to the last byte; returns the filler file."""
    filler = directory / "filler"
    block = b"\0" * 65536
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    small = b"\0" * 512
    with filler.open("ab", buffering=0) as out:  # the last partial block
        try:
            while True:
                out.write(small)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def leftovers(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*")
                  if p.is_file() and p.name != "filler")


@pytest.fixture
def full_server(config: Config, tmp_path: Path) -> Iterator[tuple[ThreadedServer, Path, Path]]:
    with small_fs(tmp_path / "store") as store, small_fs(tmp_path / "se") as se:
        port = free_port()
        data = config.model_dump(by_alias=True, exclude_none=True)
        data["Server"]["Port"] = port
        data["Systems"] = {"WorkloadManagement": {"Services": {"SandboxStore": {"Options": {
            "BasePath": str(store), "MaxSizeMiB": 4}}}}}
        data.setdefault("Resources", {})["StorageElements"] = {"DISK-FULL": {"Protocols": [
            {"Plugin": "HTTPS", "Host": "127.0.0.1", "Port": port, "Path": str(se)}]}}
        cfg = Config.model_validate(data)
        assert cfg.database
        engine = make_engine(cfg.database)
        init_schema(engine, WMS_SCHEMA)
        engine.dispose()
        with ThreadedServer(cfg, [SandboxStoreService, StorageElementService],
                            port=port) as server:
            yield server, store, se


def test_full_sandbox_store(full_server: tuple[ThreadedServer, Path, Path], creds: Creds,
                            config: Config, tmp_path: Path) -> None:
    server, store, _se = full_server
    alice = (str(creds.alice[0]), str(creds.alice[1]))
    rpc = RPCClient("WorkloadManagement/SandboxStore", urls=[server.url],
                    credentials=Credentials(cert=alice[0], key=alice[1]), ca_dir=creds.ca_dir)

    def put(data: bytes, md5: str) -> requests.Response:
        return requests.put(f"{server.url}/WorkloadManagement/SandboxStore/upload/"
                            f"{md5}.tar.bz2", data=data, cert=alice, verify=str(creds.ca_dir),
                            timeout=60)

    def rpc_upload(data: bytes, md5: str) -> dict:
        return requests.post(f"{server.url}/WorkloadManagement/SandboxStore", data={
            "method": "streamFromClient",
            "args": encode([[f"{md5}.tar.bz2", {}], "", len(data), data])},
            cert=alice, verify=str(creds.ca_dir), timeout=60).json()

    payload = os.urandom(100_000)
    small, small_md5 = archive(payload)
    before = rpc_upload(small, small_md5)
    assert before["OK"], before
    filler = fill(store)
    big, big_md5 = archive(os.urandom(1_000_000))
    reply = put(big, big_md5)
    assert reply.status_code == 507, reply.text
    body = reply.json()
    assert body["ExceptionClass"] == "StorageFullError" and not body["OK"], body
    assert "full" in body["Message"] and body["Errno"] == errno.ENOSPC, body
    also, also_md5 = archive(os.urandom(200_000))
    body = rpc_upload(also, also_md5)
    assert not body["OK"] and body["ExceptionClass"] == "StorageFullError", body
    # nothing half-written stays, nothing new is registered, the old sandbox is intact
    engine = make_engine(str(config.database))
    with engine.connect() as conn:
        rows = conn.execute(sa.select(sandboxes.c.checksum)).scalars().all()
    assert rows == [small_md5], rows
    assert [p for p in leftovers(store) if ".incoming" in p] == [], leftovers(store)
    out = tmp_path / "out"
    download_sandbox(rpc, before["Value"], out)
    assert (out / "data.bin").read_bytes() == payload
    assert rpc.call("ping")  # the service goes on
    # space comes back: the same upload is accepted
    filler.unlink()
    reply = put(big, big_md5)
    assert reply.status_code == 200 and reply.json()["OK"], reply.text
    with engine.connect() as conn:
        rows = conn.execute(sa.select(sandboxes.c.checksum)).scalars().all()
    engine.dispose()
    assert sorted(rows) == sorted([small_md5, big_md5])
    stored = store / reply.json()["Value"].split("|", 1)[1].lstrip("/")
    assert hashlib.md5(stored.read_bytes()).hexdigest() == big_md5  # noqa: S324


def test_full_storage_element(full_server: tuple[ThreadedServer, Path, Path], creds: Creds,
                              tmp_path: Path) -> None:
    server, _store, se = full_server
    plugin = HTTPSStorage("DISK-FULL", "127.0.0.1", server.port,
                          credentials=Credentials(cert=creds.alice[0], key=creds.alice[1]),
                          ca_dir=creds.ca_dir)
    first = tmp_path / "first"
    first.write_bytes(os.urandom(200_000))
    info = plugin.put(LFN.format("first"), first)
    filler = fill(se)
    big = tmp_path / "big"
    big.write_bytes(os.urandom(1_000_000))
    with pytest.raises(StorageError) as refused:
        plugin.put(LFN.format("big"), big)
    assert "No space left on device" in str(refused.value), refused.value
    assert leftovers(se) == ["demo/user/a/alice/faults/first"], leftovers(se)
    assert plugin.stat(LFN.format("first")) == info  # what was stored is intact
    got = tmp_path / "got"
    plugin.get(LFN.format("first"), got)
    assert got.read_bytes() == first.read_bytes()
    filler.unlink()
    assert plugin.put(LFN.format("big"), big).size == 1_000_000
    plugin.close()
