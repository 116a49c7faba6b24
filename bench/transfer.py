"""Data push benchmark: asynchronous push of N files from two source hosts through data movers.

Usage::

    python bench/transfer.py                       # 1,000 files of 128 KiB, 3 movers,
                                                   # at most 4 retrievals per source host
    python bench/transfer.py --files 200 --size-kib 1024 --movers 2 --capacity 8

Set-up (all real, on 127.0.0.1): two OpenSSH sshd as source hosts (key login,
tests/support/sshd.py), a pilotwms server (Transfer/DataPush and an HTTPS disk SE, in this
process's threads), ``pilotwms mover`` subprocesses. The files are registered with one
``pushAsync`` call (metadata and adler32); the clock runs from that call until ``getGroup``
says the group is complete. Each file is pulled over sftp by a mover, verified, PUT to the
SE (verified again there) and reported.

Figures printed:

* wall time and throughput (files/s, MB/s) of the push, and the same files copied by two
  plain ``scp`` processes (one per source host, in parallel) for comparison;
* the highest number of retrievals measured at the same time per source host (from the
  start/end times the movers report; must not exceed ``--per-source``) and per mover;
* how the files were spread over the movers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# this file's directory must not stay first on the path: it would shadow the transfer package
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from tests.support.credentials import Creds  # noqa: E402
from tests.support.sshd import SSHServer  # noqa: E402
from tests.transfer.env import SE, Movers, TransferEnv, max_overlap  # noqa: E402

from bench.machine import machine_line  # noqa: E402
from core.cli.instance import create_instance  # noqa: E402
from core.config.loader import load_config  # noqa: E402
from core.db import make_engine  # noqa: E402
from dms.storage.base import adler32_bytes  # noqa: E402
from transfer.db.datafiles import retrieval_intervals  # noqa: E402


def make_files(server: SSHServer, prefix: str, count: int, size: int) -> list[tuple[str, str]]:
    directory = server.home / "bench"
    directory.mkdir(exist_ok=True)
    out = []
    for i in range(count):
        data = os.urandom(size)
        path = directory / f"{prefix}{i:05d}.grib"
        path.write_bytes(data)
        path.chmod(0o644)
        out.append((str(path), adler32_bytes(data)))
    return out


def scp_time(servers: list[SSHServer], dest: Path) -> float:
    started = time.monotonic()
    procs = []
    for n, server in enumerate(servers):
        target = dest / f"scp{n}"
        target.mkdir()
        procs.append(subprocess.Popen(
            ["scp", "-q", "-P", str(server.port), "-i", str(server.key), "-o",
             "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o",
             f"UserKnownHostsFile={server.known_hosts}", "-o", "StrictHostKeyChecking=yes",
             f"{server.user}@127.0.0.1:{server.home}/bench/*", str(target)]))
    for proc in procs:
        if proc.wait() != 0:
            raise RuntimeError("scp failed")
    return time.monotonic() - started


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=1000)
    p.add_argument("--size-kib", type=int, default=128)
    p.add_argument("--movers", type=int, default=3)
    p.add_argument("--capacity", type=int, default=4, help="retrievals per mover")
    p.add_argument("--per-source", type=int, default=4, help="retrievals per source host")
    ns = p.parse_args()
    print(machine_line(), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as tmp:
        base = Path(tmp)
        instance = create_instance(base / "inst", port=8443)
        creds = Creds(instance, base, load_config(instance.config))
        config = load_config(instance.config, environ={})
        servers = [SSHServer(), SSHServer()]
        env = None
        movers = None
        try:
            for server in servers:
                server.start()
            half = ns.files // 2
            size = ns.size_kib * 1024
            files = {"src-a": make_files(servers[0], "a", half, size),
                     "src-b": make_files(servers[1], "b", ns.files - half, size)}
            (base / "work").mkdir()
            env = TransferEnv(config, base / "work", creds,
                              push={"MaxPerSourceHost": ns.per_source,
                                    "MoverDeadAfterSeconds": 30}).start()
            movers = Movers(env, {
                name: {"Host": "127.0.0.1", "Port": s.port, "KeyFile": str(s.key),
                       "KnownHosts": str(s.known_hosts)}
                for name, s in zip(("src-a", "src-b"), servers, strict=True)})
            for n in range(ns.movers):
                movers.start(f"m{n + 1}", capacity=ns.capacity)
            items = [{"SourceHost": host, "User": servers[0].user, "Path": path,
                      "Size": size, "Checksum": f"adler32:{checksum}", "Group": "bench",
                      "Destination": f"{SE}:/demo/user/a/alice/bench"}
                     for host, entries in files.items() for path, checksum in entries]
            push = env.push
            started = time.monotonic()
            push.push_async(items)
            while True:
                group = push.get_group("bench", files=False)
                if group["Complete"]:
                    break
                time.sleep(0.5)
            elapsed = time.monotonic() - started
            counts = group["Counts"]
            engine = make_engine(env.config.database_url("Transfer"))
            intervals = retrieval_intervals(engine)
            engine.dispose()
            per_host = {h: max_overlap([(s, e) for _, hh, s, e in intervals if hh == h])
                        for h in ("src-a", "src-b")}
            per_mover = {}
            spread = {}
            for n in range(ns.movers):
                name = f"m{n + 1}"
                mine = [(s, e) for m, _, s, e in intervals if m == name]
                per_mover[name] = max_overlap(mine)
                spread[name] = len(mine)
            mean_sftp = sum(e - s for _, _, s, e in intervals) / max(len(intervals), 1) / 1e3
            scp = scp_time(servers, base)
            total_mb = ns.files * size / 1e6
            print(f"files: {ns.files} x {ns.size_kib} KiB from 2 source hosts, "
                  f"{ns.movers} movers x {ns.capacity}, per-source limit {ns.per_source}")
            print(f"outcome: {counts}")
            print(f"push: {elapsed:.1f} s, {ns.files / elapsed:.1f} files/s, "
                  f"{total_mb / elapsed:.1f} MB/s")
            print(f"scp (2 in parallel): {scp:.1f} s, {ns.files / scp:.1f} files/s, "
                  f"{total_mb / scp:.1f} MB/s; push/scp time ratio {elapsed / scp:.2f}")
            slots = min(2 * ns.per_source, ns.movers * ns.capacity)
            print(f"mean sftp retrieval per file (open, read, close): {mean_sftp:.1f} ms; "
                  f"mean time per file and slot overall: "
                  f"{elapsed * slots / ns.files * 1e3:.0f} ms")
            print(f"max concurrent retrievals per source host: {per_host} "
                  f"(limit {ns.per_source})")
            print(f"max concurrent retrievals per mover: {per_mover}; files per mover: "
                  f"{spread}")
            print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
            if counts != {"Done": ns.files} or max(per_host.values()) > ns.per_source:
                print("FAILED: not every file arrived, or a limit was exceeded")
                return 1
        finally:
            if movers is not None:
                movers.stop()
            if env is not None:
                env.stop()
            for server in servers:
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
