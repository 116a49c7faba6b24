"""A real process speaking the OpenSearch REST API: ``osmem-server`` from PyPI (an in-memory
reimplementation of the OpenSearch 3.x API, a static Go binary in the wheel), on 127.0.0.1 and
a port it picks itself. It is a stand-in for OpenSearch, not OpenSearch: the monitoring code
only uses the documented API so a real cluster works unchanged (docs/monitoring.md).

Example::

    with OsmemServer() as server:
        OpenSearch(hosts=[server.url]).info()
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import requests


class OsmemServer:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, addr: str = "127.0.0.1:0") -> OsmemServer:
        import osmem_server

        binary = osmem_server.resolve_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        ready = self.workdir / "ready.json"
        ready.unlink(missing_ok=True)
        with ready.open("wb") as out, (self.workdir / "server.log").open("ab") as err:
            self.proc = subprocess.Popen(  # noqa: S603 - the stand-in server
                [str(binary), "-addr", addr, "-no-stdin-watch", "-no-ja",
                 "-parent-pid", str(os.getpid())],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = ready.read_text() if ready.exists() else ""
            if text.strip():
                self.url = json.loads(text.splitlines()[0])["url"]
                try:
                    if requests.get(self.url, timeout=2).ok:
                        return self
                except requests.RequestException:
                    pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"osmem-server exited: {self.log()}")
            time.sleep(0.05)
        raise RuntimeError(f"osmem-server did not start: {self.log()}")

    @property
    def address(self) -> str:
        return self.url.removeprefix("http://")

    def log(self) -> str:
        path = self.workdir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        """Start again on the same address (the data is gone: it is in memory)."""
        address = self.address
        self.stop()
        self.start(address)

    def __enter__(self) -> OsmemServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
