"""HTTPS disk SE throughput and server memory while streaming a large file.

Starts ``pilotwms serve`` (one process) on a fresh instance with an HTTPS SE, then uploads and
downloads one file of ``--mib`` MiB with the HTTPS plugin (alice's certificate, adler32
verified both ways), and prints MB/s each way plus the server's resident memory before, and
its peak (VmHWM) after the transfers: streaming must keep it flat whatever the file size.

    python bench/storage.py --mib 1024
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.machine import machine_line
from core.rpc.client import Credentials
from dms.storage.https import HTTPSStorage


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mib", type=int, default=512, help="file size in MiB")
    args = p.parse_args()
    print(machine_line(), flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-se-") as tmp:
        base = Path(tmp)
        port = free_port()
        subprocess.run([sys.executable, "-m", "core.cli.admin", "init", str(base / "inst"),
                        "--port", str(port)], check=True, capture_output=True)
        config = base / "inst" / "config.yaml"
        data = yaml.safe_load(config.read_text())
        data.setdefault("Resources", {})["StorageElements"] = {"BENCH-DISK": {"Protocols": [
            {"Plugin": "HTTPS", "Host": "127.0.0.1", "Port": port,
             "Path": str(base / "se")}]}}
        config.write_text(yaml.safe_dump(data))
        server = subprocess.Popen([sys.executable, "-m", "core.cli.admin", "serve",
                                   "--config", str(config)], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
        try:
            assert server.stdout is not None
            assert "pilotwms serving" in server.stdout.readline()
            src = base / "big.bin"
            with open(src, "wb") as out:
                for _ in range(args.mib):
                    out.write(os.urandom(1024 * 1024))
            inst = base / "inst" / "users" / "alice"
            se = HTTPSStorage("BENCH-DISK", "127.0.0.1", port,
                              credentials=Credentials(cert=inst / "usercert.pem",
                                                      key=inst / "userkey.pem"),
                              ca_dir=base / "inst" / "ca" / "certificates")
            rss_before = status_kib(server.pid, "VmRSS")
            lfn = "/demo/user/a/alice/bench/big.bin"
            start = time.perf_counter()
            info = se.put(lfn, src)
            up = time.perf_counter() - start
            start = time.perf_counter()
            se.get(lfn, base / "back.bin", checksum=info.checksum)
            down = time.perf_counter() - start
            peak = status_kib(server.pid, "VmHWM")
            size_mb = args.mib * 1024 * 1024 / 1e6
            print(f"file {args.mib} MiB, adler32 {info.checksum} (verified both ways)")
            print(f"upload   {size_mb / up:7.1f} MB/s ({up:.2f} s)")
            print(f"download {size_mb / down:7.1f} MB/s ({down:.2f} s)")
            print(f"server RSS before {rss_before / 1024:.1f} MiB, peak (VmHWM) "
                  f"{peak / 1024:.1f} MiB")
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
