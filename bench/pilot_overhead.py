"""Pilot overhead: submit -> Done time of ``/bin/true`` jobs run by one warm pilot.

A throw-away instance (``pilotwms init`` in a temp dir), a server in a thread hosting every
service, one pilot (the zipapp, run by the system ``/usr/bin/python3 -S -I``) polling every
0.05-0.1 s; then N jobs submitted one after the other, each timed from ``submitJob`` to the
first status poll (every 10 ms) that shows ``Done``. Prints median and p90.

Usage::

    python bench/pilot_overhead.py [--jobs 20] [--python /usr/bin/python3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

# run as a script, sys.path[0] is bench/ itself, where bench/transformation.py shadows the
# transformation package that the hosted services import: the repository root replaces it
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from tests.support.servers import ThreadedServer  # noqa: E402

from bench.machine import machine_line  # noqa: E402
from core.cli.instance import create_instance  # noqa: E402
from core.config.loader import load_config  # noqa: E402
from core.rpc.runner import available_services  # noqa: E402
from core.security.tokens import TokenIssuer  # noqa: E402
from pilot.build import build  # noqa: E402

JDL = '[Executable = "/bin/true"; CPUTime = 600; OutputSandbox = {"std.out", "std.err"};]'


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=20)
    p.add_argument("--python", default="/usr/bin/python3")
    args = p.parse_args()
    print(machine_line(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        instance = create_instance(base / "inst", port=8443)
        config = load_config(instance.config, environ={})
        assert config.auth.signing is not None
        token = TokenIssuer(config.auth.signing).issue("pilot", group="demo_pilot", vo="demo")
        (base / "token").write_text(token)
        cert, key = instance.user_cert("alice")
        alice = (str(cert), str(key))
        pyz = build(base / "pilot.pyz")
        with ThreadedServer(config, available_services().values()) as server:

            def call(service: str, method: str, *a: Any) -> Any:
                reply = requests.post(f"{server.url}/WorkloadManagement/{service}",
                                      data={"method": method, "args": json.dumps(list(a))},
                                      cert=alice, verify=str(instance.ca_dir), timeout=60)
                body = reply.json()
                if not body["OK"]:
                    raise RuntimeError(body)
                return body["Value"]

            work = base / "pilot"
            work.mkdir()
            log = (base / "pilot.log").open("wb")
            pilot = subprocess.Popen(  # noqa: S603
                [args.python, "-S", "-I", str(pyz), "--url", server.url, "--token-file",
                 str(base / "token"), "--ca-dir", str(instance.ca_dir), "--site",
                 "LCG.Bench.org", "--workdir", str(work), "--max-failed-matches", "1000000",
                 "--poll", "0.05", "--max-sleep", "0.1", "--processors", "1"],
                stdout=log, stderr=subprocess.STDOUT)
            try:
                time.sleep(1.0)  # the pilot is up and polling: warm
                delays = []
                for _ in range(args.jobs):
                    start = time.perf_counter()
                    job = call("JobManager", "submitJob", JDL)
                    deadline = start + 60
                    while call("JobMonitoring", "getJobsStatus", [job])[str(job)][
                            "Status"] != "Done":
                        if time.perf_counter() > deadline:
                            raise RuntimeError(f"job {job} not Done after 60 s")
                        time.sleep(0.01)
                    delays.append(time.perf_counter() - start)
            finally:
                (work / ".drain").touch()
                pilot.wait(60)
                log.close()
    delays.sort()
    p90 = delays[max(0, int(round(0.9 * len(delays))) - 1)]
    print(f"{len(delays)} jobs /bin/true, warm pilot: submit -> Done median "
          f"{statistics.median(delays):.3f} s, p90 {p90:.3f} s, max {delays[-1]:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
