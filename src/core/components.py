"""Component monitoring: every server process and agent reports what it did, every
``Monitoring.ComponentPeriod`` seconds (DIRAC's ServiceMonitoring and AgentMonitoring).

A :class:`ComponentReporter` reads the process's own Prometheus values (:mod:`core.metrics`)
and turns the change since its last report into one record per service (requests, errors =
answers with HTTP status >= 500, summed response time, the thread pool's queue, memory, CPU)
or per agent (cycles, failed cycles, summed cycle time). It hands them to the sink found
through the ``pilotwms.component_sinks`` entry point (``monitoring.components``), which queues
them in memory (bounded) and writes them to the monitoring backend; while that is down the
records wait and are retried, and the oldest go when the queue is full. Reporting never raises
into the server or the agent.

Example::

    >>> reporter = ComponentReporter("agent", "Demo", sink=lambda records: None)
    >>> [r["Component"] for r in reporter.sample(now=1_780_000_000)]
    ['Demo']
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from importlib.metadata import entry_points
from typing import Any

from core.metrics import metrics

log = logging.getLogger("pilotwms.components")
ENTRY_POINT_GROUP = "pilotwms.component_sinks"

#: receives a list of ComponentMonitoring records; must not block for long nor raise
Sink = Callable[[list[dict[str, Any]]], None]


def load_sink(config: Any) -> Sink | None:
    """The installed sink made for ``config`` (None when no system provides one)."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            return ep.load()(config)  # type: ignore[no-any-return,unused-ignore]
        except Exception:  # noqa: BLE001 - monitoring must not stop a component
            log.exception("cannot load the component sink %s", ep.name)
    return None


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as stream:
            return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class ComponentReporter:
    """Reports the services (``kind="service"``, ``names``: their paths) or one agent
    (``kind="agent"``, ``names``: its name) of this process."""

    def __init__(self, kind: str, *names: str, sink: Sink,
                 queue_size: Callable[[], int] | None = None) -> None:
        self.kind = kind
        self.names = names
        self.sink = sink
        self.queue_size = queue_size or (lambda: 0)
        self.host = socket.getfqdn()
        self._stamp = 0
        # counts made before this reporter started (another server earlier in the same
        # process) are not this component's: the first period starts from them
        self._last: dict[tuple[str, str], float] = {
            (component, name): value
            for component, totals in self._totals().items() for name, value in totals.items()}

    def _delta(self, component: str, what: str, total: float) -> float:
        key = (component, what)
        before = self._last.get(key, 0.0)
        self._last[key] = total
        return max(0.0, total - before)

    def _totals(self) -> dict[str, dict[str, float]]:
        m = metrics()
        out: dict[str, dict[str, float]] = {n: {} for n in self.names}
        if self.kind == "service":
            for family in m.rpc_requests.collect():
                for sample in family.samples:
                    if not sample.name.endswith("_total"):
                        continue
                    entry = out.get(sample.labels.get("service", ""))
                    if entry is None:
                        continue
                    entry["Requests"] = entry.get("Requests", 0.0) + sample.value
                    if int(sample.labels.get("status", "0")) >= 500:
                        entry["Errors"] = entry.get("Errors", 0.0) + sample.value
            for family in m.rpc_latency.collect():
                for sample in family.samples:
                    entry = out.get(sample.labels.get("service", ""))
                    if entry is not None and sample.name.endswith("_sum"):
                        entry["ResponseTime"] = entry.get("ResponseTime", 0.0) + sample.value
        else:
            for family in m.agent_cycles.collect():
                for sample in family.samples:
                    entry = out.get(sample.labels.get("agent", ""))
                    if entry is None or not sample.name.endswith("_total"):
                        continue
                    entry["Cycles"] = entry.get("Cycles", 0.0) + sample.value
                    if sample.labels.get("result") == "error":
                        entry["Errors"] = entry.get("Errors", 0.0) + sample.value
            for family in m.agent_latency.collect():
                for sample in family.samples:
                    entry = out.get(sample.labels.get("agent", ""))
                    if entry is not None and sample.name.endswith("_sum"):
                        entry["CycleTime"] = entry.get("CycleTime", 0.0) + sample.value
        return out

    def sample(self, now: float | None = None) -> list[dict[str, Any]]:
        """The records of the period since the last call."""
        now = time.time() if now is None else now
        # a record's id includes its second: never reuse one (a quick second report would
        # replace the first and lose its counts)
        self._stamp = max(int(now), self._stamp + 1)
        when = datetime.fromtimestamp(self._stamp, timezone.utc)
        cpu = os.times()
        records = []
        for component, totals in self._totals().items():
            record: dict[str, Any] = {
                "Component": component, "ComponentType": self.kind, "Host": self.host,
                "Instance": str(os.getpid()), "timestamp": when,
                "QueueSize": self.queue_size(), "MemoryUsage": _rss_bytes(),
                "CPUTime": cpu.user + cpu.system}
            for name in ("Requests", "Errors", "ResponseTime", "Cycles", "CycleTime"):
                record[name] = self._delta(component, name, totals.get(name, 0.0))
            records.append(record)
        return records

    def tick(self) -> None:
        """Sample and hand to the sink; never raises."""
        try:
            self.sink(self.sample())
        except Exception:  # noqa: BLE001 - monitoring must not stop a component
            log.exception("component monitoring failed")


def start_thread(reporter: ComponentReporter, period: float) -> threading.Event:
    """Tick every ``period`` seconds in a daemon thread (agents); set the event to stop."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(period):
            reporter.tick()

    threading.Thread(target=loop, name="component-monitoring", daemon=True).start()
    return stop


def service_names(services: Sequence[Any]) -> list[str]:
    return [s.path() for s in services]
