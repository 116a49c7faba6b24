"""``dstat`` over a large job table: wall time of the real command against a real server.

    python bench/dstat.py [--jobs 100000] [--active 1000]

Fills the SQLite database of a fresh instance with ``--jobs`` jobs of the demo user (bulk
inserts, ``--active`` of them Waiting, the rest Done), starts ``pilotwms serve``, and times
``dstat`` (default view: the user's active jobs of the last 10 days) and ``dstat -a -f csv``
(every job of the user). Target (issue 3): dstat < 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.machine import machine_line
from core.db import make_engine, utcnow, write_transaction
from wms.db import jobs as jobs_db


def fill(url: str, total: int, active: int) -> None:
    engine = make_engine(url)
    now = utcnow()
    batch = 5000
    for start in range(0, total, batch):
        rows = [jobs_db.NewJob(owner="alice", owner_group="demo_user", vo="demo",
                               status="Waiting" if start + i < active else "Done",
                               minor_status="Pilot Agent Submission" if start + i < active
                               else "Execution Complete", original_jdl='[Executable="x";]',
                               job_name=f"job{start + i}")
                for i in range(min(batch, total - start))]
        with write_transaction(engine) as conn:
            jobs_db.insert_jobs(conn, rows, now=now, source="bench")
    engine.dispose()


def timed(cmd: list[str], env: dict[str, str], runs: int = 3) -> tuple[float, int]:
    best, lines = float("inf"), 0
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"{cmd} failed: {proc.stderr}")
        out = proc.stdout
        best = min(best, time.perf_counter() - started)
        lines = out.count("\n")
    return best, lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--active", type=int, default=1000)
    args = parser.parse_args()
    print(machine_line(), flush=True)
    pilotwms = [sys.executable, "-m", "core.cli.admin"]
    with tempfile.TemporaryDirectory() as tmp:
        inst = Path(tmp) / "inst"
        subprocess.run([*pilotwms, "init", str(inst), "--port", "0"], check=True,
                       capture_output=True)
        config = yaml.safe_load((inst / "config.yaml").read_text())
        started = time.perf_counter()
        fill(config["Database"], args.jobs, args.active)
        print(f"filled {args.jobs} jobs in {time.perf_counter() - started:.1f} s")
        server = subprocess.Popen([*pilotwms, "serve", "--config", str(inst / "config.yaml"),
                                   "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            base = server.stdout.readline().split(" at ")[1].split()[0]
            client = yaml.safe_load((inst / "client.yaml").read_text())
            client["URLs"] = [base]
            (inst / "client.yaml").write_text(yaml.safe_dump(client))
            env = {**os.environ, "PILOTWMS_CLIENT_CONFIG": str(inst / "client.yaml"),
                   "X509_USER_PROXY": "", "BEARER_TOKEN_FILE": str(inst / "n")}
            env.pop("BEARER_TOKEN", None)
            dstat = [sys.executable, "-m", "wms.cli.dstat"]
            for label, extra in (("dstat (active jobs)", []),
                                 ("dstat -a -f csv (all jobs)", ["-a", "-f", "csv"])):
                seconds, lines = timed([*dstat, *extra], env)
                print(f"{label:30s} {seconds:6.2f} s  ({lines} lines, {args.jobs} jobs in DB,"
                      " includes ~0.3 s of Python start-up)")
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
