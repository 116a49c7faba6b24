"""Push-mode overhead: submit -> Done time of ``/bin/true`` jobs pushed to a real Slurm.

A throw-away instance, a server in a thread, the single-node Slurm of the tests
(``tests/support/slurm.py``; needs root and the Debian slurm packages, as scripts/test.sh
installs them), optionally reached over the tests' sshd (``--ssh``), and one PushJobAgent
cycling every ``--period`` seconds in a thread. N jobs are submitted one after the other, each
timed from ``submitJob`` to the first status poll (every 20 ms) that shows ``Done``. Prints
median, p90 and max. The time is mostly Slurm's (scheduling, job start) and the agent's poll.

Usage::

    python bench/push_overhead.py [--jobs 10] [--period 0.2] [--ssh]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

# run as a script, sys.path[0] is bench/ itself, where bench/transformation.py shadows the
# transformation package that the hosted services import: the repository root replaces it
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from tests.support.servers import ThreadedServer  # noqa: E402
from tests.support.slurm import SlurmCluster  # noqa: E402
from tests.support.sshd import SSHServer  # noqa: E402

from bench.machine import machine_line  # noqa: E402
from core.cli.instance import create_instance  # noqa: E402
from core.config.loader import load_config  # noqa: E402
from core.config.schema import Config  # noqa: E402
from core.db import init_schema, make_engine  # noqa: E402
from core.rpc.runner import available_services  # noqa: E402
from wms.agents.push_jobs import PushJobAgent  # noqa: E402
from wms.db.schema import WMS_SCHEMA  # noqa: E402

JDL = '[Executable = "/bin/true"; CPUTime = 600;]'


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=10)
    p.add_argument("--period", type=float, default=0.2)
    p.add_argument("--ssh", action="store_true", help="reach Slurm through the tests' sshd")
    args = p.parse_args()
    print(machine_line(), flush=True)
    cluster, sshd = SlurmCluster(), SSHServer() if args.ssh else None
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        cluster.start()
        try:
            settings: dict[str, Any] = {"WorkDir": str(cluster.base / "jobs" / "bench"),
                                        "Environment": cluster.env, "SacctCompletion": True}
            if sshd is not None:
                sshd.start()
                settings.update(sshd.settings, BatchSystem="Slurm")
            instance = create_instance(base / "inst", port=8443)
            data = load_config(instance.config, environ={}).model_dump(
                by_alias=True, exclude_none=True)
            data["Database"] = f"sqlite:///{base / 'bench.db'}"
            data["Resources"] = {"Sites": {"HPC.Bench.org": {"CEs": {"hpc": {
                "CEType": "SSH" if sshd else "Slurm", "PushMode": True, "Settings": settings,
                "Queues": {"debug": {"MaxCPUTime": 3600}}}}}}}
            config = Config.model_validate(data)
            engine = make_engine(data["Database"])
            init_schema(engine, WMS_SCHEMA)
            engine.dispose()
            cert, key = instance.user_cert("alice")
            with ThreadedServer(config, available_services().values()) as server:
                data["Operations"] = {"Pilot": {"URLs": [server.url]},
                                      "PushMode": {"Heartbeat": 30}}
                agent = PushJobAgent(Config.model_validate(data), instance="bench",
                                     period=args.period)
                loop = threading.Thread(target=agent.run, daemon=True)
                loop.start()

                def call(service: str, method: str, *a: Any) -> Any:
                    reply = requests.post(
                        f"{server.url}/WorkloadManagement/{service}",
                        data={"method": method, "args": json.dumps(list(a))},
                        cert=(str(cert), str(key)), verify=str(instance.ca_dir), timeout=60)
                    body = reply.json()
                    if not body["OK"]:
                        raise RuntimeError(body)
                    return body["Value"]

                delays = []
                try:
                    for _ in range(args.jobs):
                        start = time.perf_counter()
                        job = call("JobManager", "submitJob", JDL)
                        while (status := call("JobMonitoring", "getJobsStatus", [job])[
                                str(job)]["Status"]) != "Done":
                            if status == "Failed" or time.perf_counter() > start + 120:
                                raise RuntimeError(f"job {job}: {status}")
                            time.sleep(0.02)
                        delays.append(time.perf_counter() - start)
                finally:
                    agent.stop()
                    loop.join(60)
        finally:
            if sshd is not None:
                sshd.stop()
            cluster.stop()
    delays.sort()
    p90 = delays[max(0, int(round(0.9 * len(delays))) - 1)]
    print(f"{len(delays)} jobs /bin/true pushed to Slurm{' over SSH' if args.ssh else ''}: "
          f"submit -> Done median {statistics.median(delays):.3f} s, p90 {p90:.3f} s, "
          f"max {delays[-1]:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
