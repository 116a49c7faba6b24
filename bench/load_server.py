"""The server side of ``bench/load.py``: a ``pilotwms init`` instance with two user groups of
given shares and users with proxies, ``pilotwms serve`` started and probed through /proc (CPU
seconds and RSS of the supervisor and its workers), and the database checked after a run.

Example::

    config_path, config, users = prepare(Path("/tmp/x"), users=4, shares=(70, 30),
                                         processes=2, database=None)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa
import yaml

from core.cli.dbcmd import init_all
from core.cli.instance import create_instance
from core.config.loader import load_config
from core.config.schema import Config
from core.db import make_engine
from core.security.ca import CertificateAuthority, write_pem
from core.security.proxy import create_proxy
from wms.db.tables import job_logging, jobs

GROUPS = ("load_a", "load_b")


def prepare(base: Path, *, users: int, shares: tuple[int, int], processes: int,
            database: str | None) -> tuple[Path, Config, list[tuple[Path, str]]]:
    """A ``pilotwms init`` instance with two user groups of the given shares, ``--users``
    users alternating between them (each with a proxy of its group), and its database."""
    inst = create_instance(base / "inst", port=0)
    data = load_config(inst.config, environ={}).model_dump(by_alias=True, exclude_none=True,
                                                           mode="json")
    if database:
        data["Database"] = database
    data["Server"]["Processes"] = processes
    data.setdefault("Systems", {})["WorkloadManagement"] = {"Services": {"SandboxStore": {
        "Options": {"BasePath": str(base / "sandboxes")}}}}
    ca = CertificateAuthority.load(inst.directory / "ca")
    registry = data["Registry"]
    made: list[tuple[Path, str]] = []
    for name, share in zip(GROUPS, shares, strict=True):
        registry["Groups"][name] = {"VO": "demo", "Users": [], "Properties": ["NormalUser"],
                                    "JobShare": share}
    for i in range(users):
        name, group = f"loaduser{i:02d}", GROUPS[i % 2]
        cert, key = ca.issue(name, kind="user")
        registry["Users"][name] = {"DNs": [f"/O=pilotwms/OU=Users/CN={name}"]}
        registry["Groups"][group]["Users"].append(name)
        proxy = create_proxy(cert, key, group=group)
        made.append((write_pem(base / f"{name}-proxy.pem", proxy), group))
    path = base / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path, environ={})
    init_all(config)
    return path, config, made


def proc_stat(pid: int) -> tuple[float, int, int]:
    """(CPU seconds, RSS kB, parent PID) of a process; zeros when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0, 0, 0
    fields = stat[stat.rfind(")") + 2:].split()
    rss = next((int(line.split()[1]) for line in status.splitlines()
                if line.startswith("VmRSS:")), 0)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), rss, int(fields[1])


def tree(pid: int) -> list[int]:
    """``pid`` and its children (the server's supervisor and its workers)."""
    kids = [int(n) for n in os.listdir("/proc")
            if n.isdigit() and proc_stat(int(n))[2] == pid]
    return [pid, *kids]


def serve(config: Path, port: int, processes: int, log: Path, ca_dir: Path
          ) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "core.cli.admin", "serve", "--config", str(config),
             "--port", str(port), "--processes", str(processes), "--log-level", "WARNING"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"pilotwms serve exited:\n{log.read_text()}")
        try:
            requests.post(f"https://127.0.0.1:{port}/Framework/Registry",
                          data={"method": "ping"}, verify=str(ca_dir), timeout=5)
            if processes == 1 or len(tree(proc.pid)) > processes:  # 1: no fork
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.3)
    os.killpg(proc.pid, 9)
    raise RuntimeError(f"pilotwms serve did not answer within 180 s:\n{log.read_text()[-3000:]}")


def check_database(url: str) -> dict[str, Any]:
    """Final statuses, jobs matched more than once (logging rows), database size (MB)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            statuses = Counter({str(s): int(n) for s, n in conn.execute(
                sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status))})
            twice = conn.execute(
                sa.select(job_logging.c.job_id).where(job_logging.c.status == "Matched")
                .group_by(job_logging.c.job_id).having(sa.func.count() > 1)).scalars().all()
            final = {int(j): str(s) for j, s in conn.execute(
                sa.select(jobs.c.job_id, jobs.c.status))}
            if engine.dialect.name == "sqlite":
                path = Path(str(engine.url.database))
                size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
            else:
                size = int(conn.execute(sa.text(
                    "SELECT COALESCE(SUM(data_length + index_length), 0) FROM "
                    "information_schema.tables WHERE table_schema = DATABASE()")).scalar_one())
    finally:
        engine.dispose()
    return {"statuses": statuses, "matched_twice": list(twice), "final": final,
            "size_mb": size / 2**20}
