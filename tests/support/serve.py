"""``pilotwms serve`` as a real subprocess on a free 127.0.0.1 port, for the scale-out tests
(several servers over one database, behind a balancer, killed under load)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import yaml

#: configuration keys holding paths (relative to the file)
_PATH_KEYS = {("Server", "HostCert"), ("Server", "HostKey"), ("Server", "CADir"),
              ("Auth", "Signing", "KeyFile")}


def derived_config(source: Path, dest: Path, updates: dict[str, Any]) -> Path:
    """A copy of the configuration ``source`` at ``dest`` with ``updates`` merged in (nested
    dicts merged, other values replaced); its relative paths made absolute."""
    data = yaml.safe_load(source.read_text())
    for path in _PATH_KEYS:
        node = data
        for key in path[:-1]:
            node = node.get(key) or {}
        if isinstance(node.get(path[-1]), str):
            node[path[-1]] = str((source.parent / node[path[-1]]).resolve())

    def merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
        for key, value in extra.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    merge(data, updates)
    dest.write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


class ServeProcess:
    """One ``pilotwms serve --port 0``; ``url`` once started; its output in ``log``."""

    def __init__(self, config: Path, *, env: dict[str, str] | None = None, tls: bool = True,
                 processes: int = 1, log: Path | None = None, port: int = 0) -> None:
        self.config = config
        self.env = {**os.environ, **(env or {})}
        self.tls = tls
        self.processes = processes
        self.requested_port = port
        self.log = log or config.parent / f"serve-{id(self)}.log"
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self._pump: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def start(self, timeout: float = 60) -> ServeProcess:
        args = [sys.executable, "-m", "core.cli.admin", "serve", "--config", str(self.config),
                "--port", str(self.requested_port), "--processes", str(self.processes)]
        if not self.tls:
            args.append("--no-tls")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=self.env, start_new_session=True)
        assert self.proc.stdout is not None
        out = open(self.log, "a")  # noqa: SIM115 - closed by the pump thread
        timer = threading.Timer(timeout, self.proc.kill)
        timer.start()
        try:
            for line in self.proc.stdout:
                out.write(line)
                if "pilotwms serving" in line:
                    self.url = line.split(" at ")[1].split()[0]
                    break
        finally:
            timer.cancel()
        if not self.url:
            out.close()
            raise RuntimeError(f"pilotwms serve did not start: {self.log.read_text()[-2000:]}")

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            with out:
                for line in self.proc.stdout:
                    out.write(line)
                    out.flush()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group (supervisor and workers): a crash, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        if self._pump is not None:
            self._pump.join(10)
        return self.proc.returncode

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
