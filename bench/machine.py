"""How fast the machine is right now, printed at the top of every benchmark's figures.

The benchmarks run on shared 2-core machines whose speed changes from day to day (the same
code and command measured 2-4x apart on different days with the load average near 1), so a
figure alone says little. :func:`machine_line` times a fixed pure-Python workload (the kind of
work the services do per request: small dicts, text formatting, JSON, sorting), best of a few
rounds, and prints it with the load average. Figures of two runs compare after dividing each
by its run's reference time; docs/performance.md records it beside each table.

Example::

    >>> from bench.machine import reference_ms
    >>> reference_ms(rounds=1, size=200) > 0
    True
    >>> machine_line(rounds=1, size=200).startswith("machine: reference workload")
    True
"""

from __future__ import annotations

import json
import os
import time


def _workload(size: int) -> int:
    """Build, encode and sort ``size`` job-like records; returns a checksum."""
    records = [{"JobID": i, "Status": ("Done", "Failed", "Waiting")[i % 3],
                "Site": f"LCG.Site{i % 17}.org", "Owner": "alice",
                "LastUpdateTime": f"2026-12-05 10:{i % 60:02d}:{i % 60:02d}"}
               for i in range(size)]
    text = json.dumps(records)
    back = json.loads(text)
    back.sort(key=lambda r: (r["Site"], -r["JobID"]))
    total = 0
    for record in back:
        total += len(record["Status"]) + record["JobID"] % 7
    return total + len(text)


def reference_ms(rounds: int = 5, size: int = 20_000) -> float:
    """Milliseconds of the fixed workload, best of ``rounds``; at the default ``size``,
    194-204 ms on 2026-12-04 at load average 2.6 (a slow day: a plain Python loop of ten
    million additions took 2.2 s)."""
    if rounds < 1 or size < 1:
        raise ValueError("rounds and size must be positive")
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        _workload(size)
        best = min(best, time.perf_counter() - start)
    return best * 1000


def machine_line(rounds: int = 5, size: int = 20_000) -> str:
    """``machine: reference workload N ms (best of R), load average a b c, C cores``."""
    ms = reference_ms(rounds, size)
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"machine: reference workload {ms:.0f} ms (best of {rounds}; lower is faster), "
            f"load average {load}, {os.cpu_count()} cores")


if __name__ == "__main__":
    print(machine_line())
