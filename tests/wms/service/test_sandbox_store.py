"""SandboxStore over real HTTPS with real certificates, on both databases.

Uploads are made the way DIRAC's client makes them (``requests.post`` with the form DIRAC sends,
docs/interop-dirac.md) and with :mod:`wms.sandbox_client`. The streaming ``PUT`` route is wired
through the core hook ``Service.extra_routes``.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import ssl
import subprocess
import tarfile
import tracemalloc
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from tests.core.rpc.conftest import Creds
from tests.support.servers import ThreadedServer

from core.config.schema import Config
from core.db import init_schema, make_engine
from core.exceptions import InvalidArgumentError, NotAuthorizedError
from core.rpc.client import Credentials, RPCClient
from core.rpc.jencode import decode, encode
from wms.db.sandbox_tables import sandboxes
from wms.db.schema import WMS_SCHEMA
from wms.logic.sandboxes import SANDBOX_TOO_BIG, SandboxTooBigError
from wms.sandbox_client import download_sandbox, put_archive, unpack, upload_sandbox
from wms.service.sandbox_store import SandboxStoreService

REPO = Path(__file__).resolve().parents[3]
SVC = "WorkloadManagement/SandboxStore"
Cert = tuple[Path, Path] | Path | None
MiB = 1024 * 1024


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.fixture(scope="module")
def creds(instance: Any, tmp_path_factory: pytest.TempPathFactory) -> Creds:
    from core.config.loader import load_config

    return Creds(instance, tmp_path_factory.mktemp("creds"), load_config(instance.config))


def store_config(config: Config, db_url: str, base: Path, max_mib: int) -> Config:
    """The test config plus a JobSharing group (alice, admin) and the store section."""
    data = config.model_dump(by_alias=True, exclude_none=True)
    data["Registry"]["Groups"]["demo_share"] = {
        "VO": "demo", "Users": ["alice", "admin"], "Properties": ["NormalUser", "JobSharing"]}
    data["Database"] = db_url
    data["Systems"] = {"WorkloadManagement": {"Services": {"SandboxStore": {"Options": {
        "BasePath": str(base), "MaxSizeMiB": max_mib}}}}}
    engine = make_engine(db_url)
    init_schema(engine, WMS_SCHEMA)
    engine.dispose()
    return Config.model_validate(data)


@pytest.fixture
def max_mib() -> int:
    return 2


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def server(config: Config, db_url: str, base: Path, max_mib: int) -> Iterator[ThreadedServer]:
    with ThreadedServer(store_config(config, db_url, base, max_mib),
                        [SandboxStoreService]) as srv:
        yield srv


def cert_arg(cert: Cert) -> Any:
    return (str(cert[0]), str(cert[1])) if isinstance(cert, tuple) else (
        str(cert) if cert else None)


def rpc(server: ThreadedServer, creds: Creds, method: str, *args: Any, cert: Cert = None,
        token: str | None = None, raw: bool = False) -> requests.Response:
    """A POST as DIRAC's TornadoClient sends it."""
    data = {"method": method, "args": encode(list(args)), "clientVO": "unknown",
            "clientSetup": "None"}
    if raw:
        data["rawContent"] = "True"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{server.url}/{SVC}", data=data, cert=cert_arg(cert),
                         verify=str(creds.ca_dir), headers=headers, timeout=60)


def dirac_upload(server: ThreadedServer, creds: Creds, data: bytes, cert: Cert,
                 assign_to: dict[str, str] | None = None) -> dict[str, Any]:
    reply = rpc(server, creds, "streamFromClient", [f"{md5(data)}.tar.bz2", assign_to or {}],
                "", len(data), data, cert=cert)
    assert reply.status_code == 200
    return dict(reply.json())


def client(server: ThreadedServer, creds: Creds, cert: Cert = None,
           token: str | None = None) -> RPCClient:
    if isinstance(cert, tuple):
        credentials = Credentials(cert=cert[0], key=cert[1], token=token)
    else:
        credentials = Credentials(cert=cert, token=token)
    return RPCClient(SVC, urls=[server.url], credentials=credentials, ca_dir=creds.ca_dir)


def tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:bz2") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def stored(base: Path) -> list[Path]:
    return sorted(p for p in (base / "SandBox").rglob("*") if p.is_file())


def rows(db_url: str) -> int:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(sandboxes))
                       .scalar_one())
    finally:
        engine.dispose()


# -- DIRAC's wire ---------------------------------------------------------------------------------


def test_dirac_style_upload_and_download(server: ThreadedServer, creds: Creds) -> None:
    data = tarball({"job.sh": b"#!/bin/sh\necho hi\n"})
    reply = dirac_upload(server, creds, data, creds.alice)
    assert reply["OK"] is True, reply
    url = reply["Value"]
    digest = md5(data)
    assert url == (f"SB:ProductionSandboxSE|/SandBox/a/alice.demo_user/{digest[:3]}/"
                   f"{digest[3:6]}/{digest}.tar.bz2")
    raw = rpc(server, creds, "streamToClient", url, "", cert=creds.alice, raw=True)
    assert raw.headers["Content-Type"] == "application/octet-stream"
    assert raw.content == data
    by_path = rpc(server, creds, "streamToClient", url.split("|", 1)[1], "", cert=creds.alice)
    assert decode(by_path.content)["Value"] == data  # b64 in JEncode without rawContent


def test_client_round_trip(server: ThreadedServer, creds: Creds, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "inputs").mkdir(parents=True)
    (src / "job.sh").write_text("echo hi\n")
    (src / "inputs" / "data.txt").write_bytes(os.urandom(1000))
    with client(server, creds, creds.alice) as cli:
        url = upload_sandbox(cli, [src / "job.sh", src / "inputs"])
        out = download_sandbox(cli, url, tmp_path / "out")
    assert [p.name for p in out] == ["inputs", "job.sh"]
    assert (tmp_path / "out" / "job.sh").read_text() == "echo hi\n"
    assert (tmp_path / "out" / "inputs" / "data.txt").read_bytes() == (
        src / "inputs" / "data.txt").read_bytes()


def test_same_content_twice_is_one_file_and_one_row(server: ThreadedServer, creds: Creds,
                                                   base: Path, db_url: str) -> None:
    data = tarball({"a": b"a" * 100})
    first = dirac_upload(server, creds, data, creds.alice)["Value"]
    assert dirac_upload(server, creds, data, creds.alice)["Value"] == first
    assert len(stored(base)) == 1 and rows(db_url) == 1


def test_size_limit_with_dirac_message(server: ThreadedServer, creds: Creds, base: Path,
                                       max_mib: int) -> None:
    reply = dirac_upload(server, creds, os.urandom(max_mib * MiB + 1), creds.alice)
    assert reply["OK"] is False
    assert SANDBOX_TOO_BIG in reply["Message"]
    assert reply["ExceptionClass"] == "SandboxTooBigError"
    assert not (base / "SandBox").exists()
    with client(server, creds, creds.alice) as cli, pytest.raises(SandboxTooBigError):
        cli.call("streamFromClient", [f"{'0' * 32}.tar.bz2", {}], "", 10**10, b"x")


def test_hash_mismatch(server: ThreadedServer, creds: Creds, base: Path) -> None:
    reply = rpc(server, creds, "streamFromClient", [f"{md5(b'one')}.tar.bz2", {}], "", 3,
                b"two", cert=creds.alice).json()
    assert reply["OK"] is False and "Hashes don't match!" in reply["Message"]
    assert list((base / ".incoming").iterdir()) == []


@pytest.mark.parametrize("file_id", [
    "SB:ProductionSandboxSE|/SandBox/../../../../etc/passwd",
    "/etc/passwd",
    "../../../etc/passwd",
    "SB:ProductionSandboxSE|/SandBox/a/alice.demo_user/../../../../../etc/passwd",
])
def test_download_paths_never_escape(server: ThreadedServer, creds: Creds,
                                     file_id: str) -> None:
    reply = rpc(server, creds, "streamToClient", file_id, "", cert=creds.alice, raw=True)
    body = reply.json()
    assert body["OK"] is False and body["ExceptionClass"] == "InvalidArgumentError"


@pytest.mark.parametrize("name", ["../../x.tar.bz2", f"../{'a' * 32}.tar.bz2",
                                  f"{'a' * 32}.tar.bz2/../../x"])
def test_upload_names_never_escape(server: ThreadedServer, creds: Creds, name: str,
                                   base: Path) -> None:
    reply = rpc(server, creds, "streamFromClient", [name, {}], "", 1, b"x",
                cert=creds.alice).json()
    assert reply["OK"] is False and reply["ExceptionClass"] == "InvalidArgumentError"
    assert not (base / "SandBox").exists()


def test_a_symlink_in_the_store_is_not_followed(server: ThreadedServer, creds: Creds,
                                                base: Path, tmp_path: Path) -> None:
    url = dirac_upload(server, creds, b"real", creds.alice)["Value"]
    secret = tmp_path / "secret"
    secret.write_text("secret")
    [path] = stored(base)
    path.unlink()
    path.symlink_to(secret)
    body = rpc(server, creds, "streamToClient", url, "", cert=creds.alice, raw=True).json()
    assert body["OK"] is False and "symbolic link" in body["Message"]


# -- rights ---------------------------------------------------------------------------------------


def test_download_rights(server: ThreadedServer, creds: Creds) -> None:
    data = b"alice's data"
    url = dirac_upload(server, creds, data, creds.proxy(creds.alice, group="demo_share"))[
        "Value"]

    def fetch(cert: Cert = None, token: str | None = None) -> requests.Response:
        return rpc(server, creds, "streamToClient", url, "", cert=cert, token=token, raw=True)

    assert fetch(creds.alice).content == data  # the owner, in any of her groups
    assert fetch(creds.admin).status_code == 401  # another user, demo_user: no JobSharing
    assert fetch(creds.admin).json()["ExceptionClass"] == "NotAuthorizedError"
    assert fetch(creds.stranger).status_code == 401  # not registered
    assert fetch().status_code == 401  # no credentials
    assert fetch(creds.proxy(creds.admin, group="demo_admin")).content == data  # JobAdmin
    assert fetch(creds.proxy(creds.admin, group="demo_share")).content == data  # JobSharing
    assert fetch(token=creds.token("pilot", "demo_pilot")).content == data  # GenericPilot
    with client(server, creds, creds.admin) as cli, pytest.raises(NotAuthorizedError):
        cli.call_raw("streamToClient", url, "")


# -- entities -------------------------------------------------------------------------------------


def test_assignment_round_trip(server: ThreadedServer, creds: Creds) -> None:
    inp = dirac_upload(server, creds, b"input", creds.alice, {"Job:7": "Input"})["Value"]
    out = dirac_upload(server, creds, b"output", creds.alice)["Value"]
    with client(server, creds, creds.alice) as alice, \
            client(server, creds, creds.proxy(creds.admin, group="demo_admin")) as admin, \
            client(server, creds, creds.admin) as other:
        assert alice.call("assignSandboxesToEntities", {"Job:7": [(out, "Output")]}, "",
                          "") == 1
        expected = {"Input": [inp], "Output": [out]}
        assert alice.call("getSandboxesAssignedToEntity", "Job:7") == expected
        assert admin.call("getSandboxesAssignedToEntity", "Job:7") == expected
        assert other.call("getSandboxesAssignedToEntity", "Job:7") == {"Input": [],
                                                                        "Output": []}
        with pytest.raises(NotAuthorizedError):
            other.call("assignSandboxesToEntities", {"Job:8": [(out, "Output")]})
        with pytest.raises(NotAuthorizedError):
            alice.call("unassignEntities", ["Job:7"])
        with pytest.raises(InvalidArgumentError):
            alice.call("assignSandboxesToEntities", {"Job:7": [(out, "Log")]})
        assert admin.call("unassignEntities", ["Job:7"]) == 2
        assert alice.call("getSandboxesAssignedToEntity", "Job:7") == {"Input": [],
                                                                        "Output": []}


def test_the_service_cleans_up_in_the_background(server: ThreadedServer, creds: Creds,
                                                 db_url: str, base: Path) -> None:
    kept = dirac_upload(server, creds, b"kept", creds.alice, {"Job:1": "Input"})["Value"]
    dirac_upload(server, creds, b"forgotten", creds.alice)
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:  # both were last touched long ago
            conn.execute(sa.update(sandboxes).values(
                last_access_time=datetime(2000, 1, 1, tzinfo=timezone.utc)))
    finally:
        engine.dispose()
    assert server.ctx is not None
    [service] = [s for s in server.ctx.services if isinstance(s, SandboxStoreService)]
    [(period, task)] = service.background_tasks()
    assert period == 3600
    task()
    assert [p.name for p in stored(base)] == [kept.rsplit("/", 1)[1]]
    assert rows(db_url) == 1


# -- streaming upload ---------------------------------------------------------------------------


@pytest.mark.parametrize("max_mib", [50])
def test_streaming_upload_keeps_memory_bounded(server: ThreadedServer, creds: Creds,
                                               tmp_path: Path, base: Path) -> None:
    big = tmp_path / "big.tar.bz2"
    digest = hashlib.md5(usedforsecurity=False)
    with big.open("wb") as stream:
        for _ in range(30):
            block = os.urandom(MiB)
            digest.update(block)
            stream.write(block)
    name = f"{digest.hexdigest()}.tar.bz2"
    with client(server, creds, creds.alice) as cli:
        tracemalloc.start()
        try:
            url = put_archive(cli, big, name, big.stat().st_size)
            _size, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # 30 MiB went through client and server (same process): neither held it in memory
        assert peak < 8 * MiB, peak
        assert url.endswith(f"/{name}")
        [path] = stored(base)
        assert path.stat().st_size == 30 * MiB
        assert hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest() == (
            digest.hexdigest())
        assert cli.call_raw("streamToClient", url, "") == big.read_bytes()


def test_client_uses_the_streaming_route_above_the_threshold(
        server: ThreadedServer, creds: Creds, tmp_path: Path, base: Path) -> None:
    (tmp_path / "f.txt").write_bytes(b"streamed " * 1000)
    with client(server, creds, token=creds.token("alice", "demo_user")) as cli:
        url = upload_sandbox(cli, [tmp_path / "f.txt"], stream_threshold=0)
        # same bytes both ways (tar+bz2 of the same file is deterministic): one sandbox
        assert upload_sandbox(cli, [tmp_path / "f.txt"], stream_threshold=10**9) == url
        download_sandbox(cli, url, tmp_path / "out")
    assert (tmp_path / "out" / "f.txt").read_bytes() == b"streamed " * 1000
    assert len(stored(base)) == 1


def put_headers_only(server: ThreadedServer, creds: Creds, name: str, length: int,
                     cert: Cert) -> tuple[int, dict[str, Any]]:
    """A PUT announcing ``length`` bytes with ``Expect: 100-continue``; the body is never sent
    unless the server says continue. Returns the final status and the envelope."""
    ctx = ssl.create_default_context(capath=str(creds.ca_dir))
    if isinstance(cert, tuple):
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=ctx, timeout=30)
    try:
        conn.putrequest("PUT", f"/{SVC}/upload/{name}")
        conn.putheader("Content-Length", str(length))
        conn.putheader("Expect", "100-continue")
        conn.endheaders()
        response = conn.getresponse()
        return response.status, decode(response.read())
    finally:
        conn.close()


def test_streaming_upload_refuses_a_too_big_body_before_reading_it(
        server: ThreadedServer, creds: Creds, max_mib: int, base: Path) -> None:
    status, body = put_headers_only(server, creds, f"{'a' * 32}.tar.bz2",
                                    max_mib * MiB + 1, creds.alice)
    assert status == 413
    assert body["OK"] is False and SANDBOX_TOO_BIG in body["Message"]
    assert not (base / ".incoming").exists()


def test_streaming_upload_needs_rights(server: ThreadedServer, creds: Creds) -> None:
    status, body = put_headers_only(server, creds, f"{'a' * 32}.tar.bz2", 10, None)
    assert (status, body["ExceptionClass"]) == (401, "NotAuthenticatedError")
    status, body = put_headers_only(server, creds, f"{'a' * 32}.tar.bz2", 10, creds.stranger)
    assert status == 401
    status, body = put_headers_only(server, creds, "..%2F..%2Fetc.tar.bz2", 10, creds.alice)
    assert (status, body["ExceptionClass"]) == (200, "InvalidArgumentError")
    reply = requests.put(f"{server.url}/{SVC}/upload/../../x.tar.bz2", data=b"x",
                         cert=cert_arg(creds.alice), verify=str(creds.ca_dir), timeout=60)
    assert reply.status_code == 404  # requests normalises: /WorkloadManagement/x.tar.bz2


def test_streaming_upload_stops_a_chunked_body_at_the_limit(
        server: ThreadedServer, creds: Creds, max_mib: int, base: Path) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(max_mib * 4 + 1):
            yield b"x" * (MiB // 4)

    reply = requests.put(f"{server.url}/{SVC}/upload/{'a' * 32}.tar.bz2", data=chunks(),
                         cert=cert_arg(creds.alice), verify=str(creds.ca_dir), timeout=60)
    assert reply.status_code == 413
    assert SANDBOX_TOO_BIG in reply.json()["Message"]
    assert list((base / ".incoming").iterdir()) == []
    assert not (base / "SandBox").exists()


def test_streaming_upload_hash_mismatch(server: ThreadedServer, creds: Creds,
                                        base: Path) -> None:
    reply = requests.put(f"{server.url}/{SVC}/upload/{md5(b'one')}.tar.bz2", data=b"two",
                         cert=cert_arg(creds.alice), verify=str(creds.ca_dir), timeout=60)
    body = reply.json()
    assert body["OK"] is False and "Hashes don't match!" in body["Message"]
    assert list((base / ".incoming").iterdir()) == []


# -- the real DIRAC client ----------------------------------------------------------------------


@pytest.mark.dirac
def test_real_dirac_client_uploads_and_downloads(server: ThreadedServer, creds: Creds) -> None:
    """DIRAC 9's TornadoClient sends streamFromClient exactly as SandboxStoreClient does
    (the archive as a b64 JEncode marker) and reads the reply of streamToClient."""
    python = os.environ.get("PILOTWMS_DIRAC_CLIENT_PYTHON") or subprocess.run(
        ["bash", str(REPO / "scripts/install-dirac-client.sh")], capture_output=True, text=True,
        timeout=900, check=True).stdout.strip().splitlines()[-1]
    data = tarball({"job.sh": b"echo dirac\n"})
    proxy = creds.proxy(creds.alice)

    def call(method: str, *args: Any) -> dict[str, Any]:
        proc = subprocess.run(
            [python, str(REPO / "tests/interop/dirac_call.py"), "--url", f"{server.url}/{SVC}",
             "--proxy", str(proxy), "--ca-dir", str(creds.ca_dir), "--method", method, "--args",
             encode(list(args))], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return dict(decode(proc.stdout.strip().splitlines()[-1]))

    up = call("streamFromClient", [f"{md5(data)}.tar.bz2", {}], "", len(data), data)
    assert up["OK"] is True, up
    assert up["Value"].startswith("SB:ProductionSandboxSE|/SandBox/a/alice.demo_user/")
    down = call("streamToClient", up["Value"], "")
    assert down["OK"] is True and down["Value"] == data


# -- unpacking ----------------------------------------------------------------------------------


@pytest.mark.parametrize("member", ["/etc/evil", "../evil", "a/../../evil", "link", "hard"])
def test_unpack_refuses_what_leaves_the_directory(tmp_path: Path, member: str) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(member)
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "../../etc/passwd"
        elif member == "hard":
            info.type, info.linkname = tarfile.LNKTYPE, "/etc/passwd"
        else:
            info.size = 1
        tar.addfile(info, io.BytesIO(b"x") if info.size else None)
    buf.seek(0)
    with pytest.raises(InvalidArgumentError):
        unpack(buf, tmp_path / "out")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "out" / member).exists()


@pytest.mark.parametrize("with_filter", [True, False])
def test_unpack_without_tarfile_filters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        with_filter: bool) -> None:
    """Python before 3.11.4 (Debian 12's python3 is 3.11.2, the container images) has no
    extraction filters: archives unpack the same, with setuid bits dropped."""
    if not with_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        info = tarfile.TarInfo("out/run.sh")
        body = b"#!/bin/sh\necho hi\n"
        info.size, info.mode = len(body), 0o4755
        tar.addfile(info, io.BytesIO(body))
    data.seek(0)
    tops = unpack(data, tmp_path / "x")
    assert tops == [tmp_path / "x" / "out"]
    path = tmp_path / "x" / "out" / "run.sh"
    assert path.read_bytes() == b"#!/bin/sh\necho hi\n"
    assert path.stat().st_mode & 0o7777 == 0o755
