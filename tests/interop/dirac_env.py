"""Run the real DIRAC client (its Python API in batches, its command-line tools) against a
pilotwms server, configured by the ``dirac.cfg`` that ``pilotwms dirac-config`` writes.

DIRAC takes about a second of CPU to start, so checks are batched: :meth:`DiracClient.script`
runs a whole Python file of checks in one DIRAC process (``tests/interop/dirac_call.py
--script``), and :meth:`DiracClient.commands` runs several command-line tools at once.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.interop.dirac_call import _SCRUB_ENV

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE / "dirac_scripts"


@dataclass
class DiracClient:
    python: str      # the DIRAC venv's python
    url: str         # https://127.0.0.1:PORT of the pilotwms server
    cfg: Path | None  # dirac.cfg (from pilotwms dirac-config); None: a minimal one
    proxy: Path
    ca_dir: Path
    workdir: Path

    @property
    def root(self) -> Path:
        root = self.workdir / "dirac-root"
        (root / "etc").mkdir(parents=True, exist_ok=True)
        assert self.cfg is not None
        (root / "etc" / "dirac.cfg").write_text(self.cfg.read_text())
        return root

    def env(self) -> dict[str, str]:
        """The environment a DIRAC user would set (docs/interop-dirac.md, "For DIRAC users")."""
        env = {k: v for k, v in os.environ.items() if k not in _SCRUB_ENV}
        home = self.workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        env.update(DIRAC_ROOT_PATH=str(self.root), HOME=str(home),
                   X509_USER_PROXY=str(self.proxy), X509_CERT_DIR=str(self.ca_dir),
                   DIRAC_USE_ACCESS_TOKEN="false",
                   NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        return env

    def tool(self, name: str) -> str:
        return str(Path(self.python).parent / name)

    def start(self, name: str, *args: str, cwd: Path | None = None
              ) -> subprocess.Popen[str]:
        return subprocess.Popen([self.tool(name), *args], cwd=cwd or self.workdir,
                                env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def commands(self, *calls: tuple[Any, ...], timeout: float = 180
                 ) -> list[tuple[int, str]]:
        """Run DIRAC command-line tools concurrently: each call is ``(name, *args)`` or
        ``(name, *args, {"cwd": dir})``; returns (exit code, output) of each, in order."""
        procs = []
        for call in calls:
            opts = call[-1] if isinstance(call[-1], dict) else {}
            args = [str(a) for a in (call[1:-1] if opts else call[1:])]
            procs.append(self.start(call[0], *args, cwd=opts.get("cwd")))
        results = []
        for proc in procs:
            try:
                out, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            results.append((proc.returncode, out))
        return results

    def script(self, name: str, args: Any = None, timeout: float = 180) -> Any:
        """Run ``tests/interop/dirac_scripts/<name>`` in one DIRAC process; its RESULT."""
        cfg = ["--cfg", str(self.cfg)] if self.cfg else []
        proc = subprocess.run(
            [self.python, str(HERE / "dirac_call.py"), "--url", self.url, "--proxy",
             str(self.proxy), "--ca-dir", str(self.ca_dir), *cfg,
             "--workdir", str(self.workdir / "script"), "--script", str(SCRIPTS / name),
             "--script-args", json.dumps(args)],
            capture_output=True, text=True, timeout=timeout, cwd=self.workdir, check=False)
        assert proc.returncode == 0, proc.stderr[-4000:]
        reply = json.loads(proc.stdout.strip().splitlines()[-1])
        assert reply["OK"], reply
        return reply["Value"]
