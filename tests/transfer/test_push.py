"""Data push end to end: ``pilotwms mover`` processes pulling from two real sshd source hosts,
the per-source and per-mover limits (measured), retries, a mover killed with SIGKILL in the
middle of a retrieval, synchronous pushes through a mover, forwarding to an association, and
the ``dpush`` command; one source host is an HTTPS web server."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.config.schema import Config
from core.db import make_engine
from dms.storage.base import adler32_bytes
from tests.support.credentials import Creds
from tests.support.https_files import HTTPSFiles
from tests.support.sshd import SSHServer
from tests.support.tcpproxy import FaultProxy
from tests.transfer.conftest import Remote
from tests.transfer.env import SE, Movers, TransferEnv, command, max_overlap, until
from transfer.db.datafiles import retrieval_intervals

HOME = "/demo/user/a/alice"


@pytest.fixture(scope="module")
def source_hosts() -> Iterator[list[SSHServer]]:
    servers = [SSHServer(), SSHServer()]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def source_config(server: SSHServer, port: int | None = None,
                  known_hosts: Path | None = None) -> dict[str, Any]:
    return {"Host": "127.0.0.1", "Port": port or server.port, "KeyFile": str(server.key),
            "KnownHosts": str(known_hosts or server.known_hosts)}


@pytest.fixture
def env(config: Config, tmp_path: Path, creds: Creds) -> Iterator[TransferEnv]:
    e = TransferEnv(config, tmp_path, creds, push={"MaxPerSourceHost": 2}).start()
    try:
        yield e
    finally:
        e.stop()


def make_files(server: SSHServer, prefix: str, count: int, size: int) -> list[tuple[str, bytes]]:
    out = []
    directory = server.home / "data"
    directory.mkdir(exist_ok=True)
    for i in range(count):
        data = os.urandom(size)
        path = directory / f"{prefix}{i:03d}.grib"
        path.write_bytes(data)
        path.chmod(0o644)
        out.append((str(path), data))
    return out


def test_async_group_limits_retries_and_wait(env: TransferEnv, source_hosts: list[SSHServer]
                                             ) -> None:
    a, b = source_hosts
    files = {"src-a": make_files(a, "a", 12, 150_000), "src-b": make_files(b, "b", 12, 150_000)}
    movers = Movers(env, {"src-a": source_config(a), "src-b": source_config(b)})
    try:
        for name in ("m1", "m2", "m3"):
            movers.start(name, capacity=2)
        listing = env.base / "files.txt"
        lines = [f"{host} {a.user} {path} {len(data)} adler32:{adler32_bytes(data)}"
                 for host, items in files.items() for path, data in items]
        bad_path, bad_data = files["src-a"][0][0] + ".x", b"corrupt"
        Path(bad_path).write_bytes(bad_data)
        Path(bad_path).chmod(0o644)
        lines.append(f"src-a {a.user} {bad_path} {len(bad_data)} adler32:00000001")
        lines.append(f"src-b {b.user} /no/such/file.grib 10")
        listing.write_text("\n".join(lines) + "\n")
        dest = f"{SE}:{HOME}/push"
        ids = command(env, "dpush", "--async", "--list", str(listing), "--group", "run00",
                      "--dest", dest).stdout.split()
        assert len(ids) == 26 and all(i.isdigit() for i in ids)
        waited = command(env, "dpush", "--wait-group", "run00", check=False)
        assert waited.returncode == 2, waited.stderr
        assert "group run00: 24 Done, 2 Failed" in waited.stdout
        assert "adler32" in waited.stdout and "expected 00000001" in waited.stdout
        assert "gave up after 2 attempts" in waited.stdout  # retried, then failed
        assert "no such file" in waited.stdout
        status = json.loads(command(env, "dpush", "status", "--group", "run00", "-f",
                                    "json").stdout)
        assert status["Complete"] is True and status["Counts"] == {"Done": 24, "Failed": 2}
        for items in files.values():
            for path, data in items:
                stored = env.base / "se" / HOME.lstrip("/") / "push" / Path(path).name
                assert stored.read_bytes() == data
        engine = make_engine(env.config.database_url("Transfer"))
        intervals = retrieval_intervals(engine)
        engine.dispose()
        for host in ("src-a", "src-b"):
            assert max_overlap([(s, e) for _, h, s, e in intervals if h == host]) <= 2
        per_mover = {m: [(s, e) for mm, _, s, e in intervals if mm == m]
                     for m in ("m1", "m2", "m3")}
        assert all(max_overlap(v) <= 2 for v in per_mover.values())
        assert sum(1 for v in per_mover.values() if v) >= 2  # the work was spread
    finally:
        movers.stop()


def test_mover_killed_mid_retrieval_is_reassigned(env: TransferEnv,
                                                  source_hosts: list[SSHServer]) -> None:
    a = source_hosts[0]
    proxy = FaultProxy(("127.0.0.1", a.port), rate=1_500_000).start()
    known = env.base / "known_hosts_proxy"
    known.write_text(a.known_hosts.read_text().replace(f"]:{a.port} ", f"]:{proxy.port} "))
    (path, data), = make_files(a, "big", 1, 6 * 1024 * 1024)
    movers = Movers(env, {"slow": source_config(a, proxy.port, known)})
    try:
        work1 = movers.start("k1", capacity=1)
        (fid,) = env.push.push_async([{"SourceHost": "slow", "User": a.user, "Path": path,
                                       "Size": len(data), "Checksum": adler32_bytes(data),
                                       "Group": "kill", "Destination": f"{SE}:{HOME}/kill"}])
        until(lambda: any(p.stat().st_size > 100_000 for p in work1.glob(".*.part")),
              timeout=30, message="k1 retrieving")
        moving = until(lambda: (lambda r: r if r["BytesDone"] > 0 else None)(
            env.push.get_data_files([fid])[0]), timeout=10, message="progress reported")
        assert moving["Status"] == "Retrieving" and moving["Mover"] == "k1"
        assert 0 < moving["BytesDone"] < len(data)
        killed_at = time.monotonic()
        movers.kill("k1")  # SIGKILL in the middle of the retrieval
        # only then the second mover: started earlier, on a loaded machine its start-up could
        # outlast k1's whole retrieval
        movers.start("k2", capacity=1)
        row = until(lambda: (lambda r: r if r["Status"] == "Done" else None)(
            env.push.get_data_files([fid])[0]), timeout=60, message="completed by k2")
        assert row["Mover"] == "k2" and row["Attempts"] == 1  # a death costs no attempt
        assert time.monotonic() - killed_at > 3  # declared dead after its silence
        stored = env.base / "se" / HOME.lstrip("/") / "kill" / Path(path).name
        assert stored.read_bytes() == data
        engine = make_engine(env.config.database_url("Transfer"))
        with engine.connect() as conn:
            from transfer.db.tables import retrievals

            rows = conn.execute(retrievals.select().where(retrievals.c.file_id == fid)
                                .order_by(retrievals.c.retrieval_id)).mappings().all()
        engine.dispose()
        assert [(r["mover"], r["outcome"]) for r in rows] == [("k1", "Lost"), ("k2", "OK")]
    finally:
        movers.stop()
        proxy.stop()


def test_sync_push_and_forward_to_association(env: TransferEnv, source_hosts: list[SSHServer],
                                              sftp_host: Remote) -> None:
    a = source_hosts[1]
    web_root = env.base / "web"
    (web_root / "obs").mkdir(parents=True)
    web_data = os.urandom(70_000)
    (web_root / "obs" / "w.bufr").write_bytes(web_data)
    inst = env.creds.instance.directory / "host"
    web = HTTPSFiles(web_root, inst / "hostcert.pem", inst / "hostkey.pem").__enter__()
    movers = Movers(env, {"src": source_config(a), "web": {
        "Protocol": "https", "BaseURL": f"https://127.0.0.1:{web.port}"}})
    try:
        movers.start("s1", capacity=2, listen=True)
        (wid,) = env.push.push_async([{"SourceHost": "web", "Path": "/obs/w.bufr",
                                       "Size": len(web_data), "Group": "web",
                                       "Checksum": adler32_bytes(web_data),
                                       "Destination": f"{SE}:{HOME}/web"}])
        until(lambda: env.push.get_group("web", files=False)["Complete"], timeout=60,
              message="https source retrieved")
        assert env.push.get_data_files([wid])[0]["Status"] == "Done"
        assert (env.base / "se" / HOME.lstrip("/") / "web" / "w.bufr").read_bytes() == \
            web_data
        local = env.base / "sync.grib"
        local.write_bytes(os.urandom(300_000))
        out = command(env, "dpush", str(local), "--dest", f"{SE}:{HOME}/sync", "--group",
                      "sg").stdout.split()
        (fid,) = out
        row = env.push.get_data_files([int(fid)])[0]
        assert row["Status"] == "Done" and row["Mode"] == "sync"  # stored before the ID came
        assert (env.base / "se" / HOME.lstrip("/") / "sync" / "sync.grib").read_bytes() == \
            local.read_bytes()
        refused = command(env, "dpush", str(local), "--dest", "NOPE:/x", check=False)
        assert refused.returncode == 2 and "unknown storage element" in refused.stderr
        env.client.put_association("fwd", {
            "protocol": "sftp", "host": sftp_host.host, "port": sftp_host.port,
            "user": sftp_host.user, "password": sftp_host.password,
            "directory": str(sftp_host.root / "forwarded")})
        (path, data), = make_files(a, "fwd", 1, 50_000)
        env.start_agent()
        (fid2,) = env.push.push_async([{"SourceHost": "src", "User": a.user, "Path": path,
                                        "Size": len(data), "Destination": "assoc:fwd",
                                        "Group": "fg"}])
        done = until(lambda: (lambda r: r if r["Status"] in ("Done", "Failed") else None)(
            env.push.get_data_files([fid2])[0]), timeout=60, message="forwarded")
        assert done["Status"] == "Done" and done["TransferID"]
        assert (sftp_host.root / "forwarded" / Path(path).name).read_bytes() == data
        staged = env.base / "se" / "demo" / "staging" / str(fid2) / Path(path).name
        assert not staged.exists()  # the staged copy went once forwarded
        assert env.client.get_transfer(done["TransferID"])["Status"] == "Done"
    finally:
        movers.stop()
        web.__exit__()
