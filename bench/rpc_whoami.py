"""RPC overhead: ``whoami`` calls per second and latency over HTTPS, certificate vs token.

Starts ``pilotwms serve`` on a fresh instance (127.0.0.1, a free port), then runs client
processes that each make a bounded number of calls on one kept-alive connection, and prints
calls/s, p50 and p99 latency. Bounded: at most ``--calls`` per client and ``--seconds`` each.

    python bench/rpc_whoami.py --processes 2 --clients 4 --calls 500
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.machine import machine_line


def client(url: str, ca: str, cert: tuple[str, str] | None, token: str | None, calls: int,
           seconds: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    latencies = []
    deadline = time.monotonic() + seconds
    for _ in range(calls):
        start = time.perf_counter()
        reply = session.post(url, data={"method": "whoami"}, cert=cert, verify=ca,
                             headers=headers, timeout=30)
        latencies.append(time.perf_counter() - start)
        assert reply.status_code == 200 and reply.json()["OK"], reply.text
        if time.monotonic() > deadline:
            break
    out.put(latencies)


def run(kind: str, url: str, ca: str, cert: tuple[str, str] | None, token: str | None,
        args: argparse.Namespace) -> None:
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs = [multiprocessing.Process(target=client, args=(url, ca, cert, token, args.calls,
                                                          args.seconds, queue))
             for _ in range(args.clients)]
    start = time.perf_counter()
    for proc in procs:
        proc.start()
    latencies: list[float] = []
    for _ in procs:
        latencies.extend(queue.get(timeout=args.seconds + 60))
    elapsed = time.perf_counter() - start
    for proc in procs:
        proc.join()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"{kind:6s} {len(latencies):6d} calls in {elapsed:5.2f} s = "
          f"{len(latencies) / elapsed:7.0f} calls/s   p50 {statistics.median(latencies) * 1e3:6.2f}"
          f" ms   p99 {p99 * 1e3:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=2, help="server worker processes")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--calls", type=int, default=500, help="calls per client (max)")
    parser.add_argument("--seconds", type=float, default=30, help="time per client (max)")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    pilotwms = [sys.executable, "-m", "core.cli.admin"]
    with tempfile.TemporaryDirectory() as tmp:
        inst = Path(tmp) / "inst"
        subprocess.run([*pilotwms, "init", str(inst), "--port", "0"], check=True,
                       capture_output=True)
        token = subprocess.run([*pilotwms, "token", "issue", "--config",
                                str(inst / "config.yaml"), "--user", "alice"], check=True,
                               capture_output=True, text=True).stdout.strip()
        server = subprocess.Popen([*pilotwms, "serve", "--config", str(inst / "config.yaml"),
                                   "--processes", str(args.processes), "--log-level", "WARNING"],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            base = server.stdout.readline().split(" at ")[1].split()[0]
            url = f"{base}/Framework/Registry"
            ca = str(inst / "ca/certificates")
            cert = (str(inst / "users/alice/usercert.pem"), str(inst / "users/alice/userkey.pem"))
            print(f"server: {args.processes} process(es); clients: {args.clients} x "
                  f"{args.calls} calls, keep-alive, 2-core machine shared with the clients")
            run("cert", url, ca, cert, None, args)
            run("token", url, ca, None, token, args)
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
