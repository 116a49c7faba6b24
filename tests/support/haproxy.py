"""HAProxy (Debian's ``haproxy`` 2.6) with the project's own configuration
(``container/haproxy.cfg``) on a free 127.0.0.1 port, in front of two backends.

It runs in the foreground (``-db``) as a child of the test; its state comes from the admin socket
(``show stat``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.mariadb import free_port

CONFIG = Path(__file__).resolve().parents[2] / "container" / "haproxy.cfg"


def available() -> str | None:
    return None if shutil.which("haproxy") else "haproxy is not installed (apt-get install haproxy)"


class HAProxy:
    """The balancer: TLS on ``port`` with ``cert_pem`` (certificate and key in one file)."""

    def __init__(self, cert_pem: Path, ca_bundle: Path, backends: list[str]) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="pilotwms-haproxy-"))
        self.port = free_port()
        self.stats = self.base / "admin.sock"
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                    "PILOTWMS_LB_BIND": f"127.0.0.1:{self.port}",
                    "PILOTWMS_LB_CERT": str(cert_pem), "PILOTWMS_LB_CA": str(ca_bundle),
                    "PILOTWMS_LB_STATS": str(self.stats),
                    "PILOTWMS_BACKEND_1": backends[0], "PILOTWMS_BACKEND_2": backends[1]}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> HAProxy:
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(CONFIG)], env=self.env,
                               capture_output=True, text=True, timeout=60)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy config check failed: {check.stderr}")
        log = open(self.base / "haproxy.log", "wb")  # noqa: SIM115 - kept for the process
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(CONFIG)], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.base / "haproxy.log").read_text())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("haproxy did not open its port")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> HAProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- state -----------------------------------------------------------------------------

    def admin(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(self.stats))
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stat(self) -> dict[str, dict[str, str]]:
        """``show stat`` of the backend servers and the backend itself, by server name."""
        lines = self.admin("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
        return {r["svname"]: r for r in rows if r.get("pxname") == "servers"}

    def wait_status(self, server: str, status: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < deadline:
            seen = self.stat().get(server, {}).get("status", "")
            if seen.startswith(status):
                return
            time.sleep(0.1)
        raise RuntimeError(f"haproxy: {server} is {seen!r}, not {status} after {timeout} s")
