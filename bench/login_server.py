"""The login server over HTTPS: token endpoint and a service call with its tokens.

Starts ``pilotwms serve`` (one process) on a fresh instance with ``Auth.Server`` enabled, then,
from one client on a kept-alive connection, times: ``whoami`` with the user certificate,
``whoami`` with a login-server token (revocation list checked), the X509 proxy exchange at
``/auth/token``, and refresh-token rotations. Bounded: ``--calls`` each.

    python bench/login_server.py --calls 300
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests
import yaml

from bench.machine import machine_line
from core.auth import grants
from core.auth.grants import AuthServer
from core.config.loader import load_config
from core.db import make_engine
from core.security.proxy import create_proxy

X509 = "urn:pilotwms:params:oauth:grant-type:x509-proxy"


def timed(label: str, calls: int, func: Callable[[], None]) -> None:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    times.sort()
    print(f"{label:40s} {calls / sum(times):7.0f} /s   p50 {statistics.median(times) * 1e3:6.2f}"
          f" ms   p99 {times[int(len(times) * 0.99) - 1] * 1e3:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    print(machine_line(), flush=True)
    admin = [sys.executable, "-m", "core.cli.admin"]
    with tempfile.TemporaryDirectory() as tmp:
        inst = Path(tmp) / "inst"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        subprocess.run([*admin, "init", str(inst), "--port", str(port)], check=True,
                       capture_output=True)
        conf_file = inst / "config.yaml"
        data = yaml.safe_load(conf_file.read_text())
        data["Auth"]["Server"] = {}
        conf_file.write_text(yaml.safe_dump(data))
        subprocess.run([*admin, "db", "init", "--config", str(conf_file)], check=True,
                       capture_output=True)
        server = subprocess.Popen([*admin, "serve", "--config", str(conf_file),
                                   "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None and "serving" in server.stdout.readline()
            base, ca = f"https://127.0.0.1:{port}", str(inst / "ca" / "certificates")
            users = inst / "users" / "alice"
            cert = (str(users / "usercert.pem"), str(users / "userkey.pem"))
            proxy = Path(tmp) / "proxy.pem"
            proxy.write_bytes(create_proxy(Path(cert[0]).read_bytes(),
                                           Path(cert[1]).read_bytes(), group="demo_user"))
            s_cert, s_token, s_proxy = requests.Session(), requests.Session(), requests.Session()
            s_cert.cert, s_proxy.cert = cert, str(proxy)
            for sess in (s_cert, s_token, s_proxy):
                sess.trust_env = False  # else $REQUESTS_CA_BUNDLE overrides sess.verify
                sess.verify = ca

            def exchange() -> str:
                r = s_proxy.post(f"{base}/auth/token", timeout=30, data={
                    "client_id": "pilotwms-cli", "grant_type": X509})
                assert r.status_code == 200, r.text
                return str(r.json()["access_token"])

            token = exchange()
            who = f"{base}/Framework/Registry"
            timed("whoami, user certificate", args.calls, lambda: _ok(s_cert.post(
                who, data={"method": "whoami"}, timeout=30)))
            timed("whoami, login-server token", args.calls, lambda: _ok(s_token.post(
                who, data={"method": "whoami"}, timeout=30,
                headers={"Authorization": f"Bearer {token}"})))
            timed("token: X509 proxy exchange", args.calls, lambda: None if exchange() else None)
            config = load_config(conf_file)
            srv = AuthServer.from_config(config, make_engine(config.database_url("Auth")))
            start = grants.start_device(srv, grants.CLI_CLIENT, None)
            grants.approve_device(srv, start["user_code"], "alice", None)
            box = [grants.poll_device(srv, grants.CLI_CLIENT, start["device_code"])]

            def rotate() -> None:
                r = s_token.post(f"{base}/auth/token", timeout=30, data={
                    "client_id": "pilotwms-cli", "grant_type": "refresh_token",
                    "refresh_token": box[0]["refresh_token"]})
                assert r.status_code == 200, r.text
                box[0] = r.json()

            timed("token: refresh rotation", args.calls, rotate)
        finally:
            server.terminate()
            server.wait(30)


def _ok(reply: requests.Response) -> None:
    assert reply.status_code == 200 and reply.json()["OK"], reply.text


if __name__ == "__main__":
    main()
