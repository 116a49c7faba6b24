"""Prometheus metrics of every server process and agent (``prometheus_client``).

What is measured:

* ``pilotwms_rpc_requests_total{service,method,status}`` and the latency histogram
  ``pilotwms_rpc_request_duration_seconds{service,method}`` of every request (recorded by
  :mod:`core.rpc.instrument` when the request finishes; unknown method names count as
  ``unknown`` so a client cannot blow up the label set);
* ``pilotwms_rpc_in_flight`` requests being served;
* ``pilotwms_matcher_requests_total{result}`` (matched / no_match / error), set by the matcher;
* ``pilotwms_agent_cycles_total{agent,result}``, ``pilotwms_agent_cycle_duration_seconds``
  and ``pilotwms_agent_last_cycle_timestamp_seconds`` of agents;
* *cached gauges* computed from the databases at most every ``Monitoring.Metrics.CacheSeconds``
  (jobs by status, task queue depth, sandbox store bytes, monitoring outbox backlog): systems
  provide them through the ``pilotwms.metrics`` entry points, so ``core`` never imports them,
  and a scrape never runs a COUNT over the jobs table more often than that.

**Several server processes** (``pilotwms serve --processes N``) use prometheus_client's
multiprocess mode: :func:`setup_multiprocess` (called by the runner before forking) points the
value store at a fresh directory of memory-mapped files, one per process; any worker answering
a scrape sums the counters and histograms of all of them, so every scrape sees the whole
server whichever process the kernel hands the connection to. Cached gauges are global values
(read from the shared databases), so the worker answering computes them. A dead worker's files
are marked dead (:func:`worker_exited`) so its live gauges vanish; its counters are kept, as
Prometheus counters must not go back.

Access (``Monitoring.Metrics``): the rules in ``Authorization`` (default: the ``Monitoring``
or ``ServiceAdministrator`` property; ``all`` opens the endpoint) or a bearer *scrape token*
(``ScrapeTokenFile`` or ``$PILOTWMS_METRICS_TOKEN``) that a Prometheus server can hold without
a certificate.

Example::

    >>> m = metrics()
    >>> m.rpc_requests.labels("Framework/Registry", "ping", "200").inc()
    >>> b"pilotwms_rpc_requests_total" in exposition()
    True
"""

from __future__ import annotations

import hmac
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("pilotwms.metrics")

ENV_DIR = "PROMETHEUS_MULTIPROC_DIR"
ENV_TOKEN = "PILOTWMS_METRICS_TOKEN"  # noqa: S105 - a variable name, not a secret
ENTRY_POINT_GROUP = "pilotwms.metrics"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0)

#: a cached-gauge source: (context) -> metric families; ``context`` is what the caller has
#: (a ServerContext in servers, the Config in agents)
Source = Callable[[Any], Iterable[Metric]]


@dataclass
class Metrics:
    rpc_requests: Counter
    rpc_latency: Histogram
    rpc_in_flight: Gauge
    matcher: Counter
    agent_cycles: Counter
    agent_latency: Histogram
    agent_last_cycle: Gauge


_metrics: Metrics | None = None
_lock = threading.Lock()


def metrics() -> Metrics:
    """The process's metrics, made on first use."""
    global _metrics
    with _lock:
        if _metrics is None:
            _metrics = Metrics(
                rpc_requests=Counter("pilotwms_rpc_requests", "RPC requests answered",
                                     ["service", "method", "status"]),
                rpc_latency=Histogram("pilotwms_rpc_request_duration_seconds",
                                      "Time to answer an RPC request",
                                      ["service", "method"], buckets=LATENCY_BUCKETS),
                rpc_in_flight=Gauge("pilotwms_rpc_in_flight", "RPC requests being served",
                                    multiprocess_mode="livesum"),
                matcher=Counter("pilotwms_matcher_requests", "Matcher job requests",
                                ["result"]),
                agent_cycles=Counter("pilotwms_agent_cycles", "Agent cycles",
                                     ["agent", "result"]),
                agent_latency=Histogram("pilotwms_agent_cycle_duration_seconds",
                                        "Duration of an agent cycle", ["agent"],
                                        buckets=(0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300,
                                                 900)),
                agent_last_cycle=Gauge("pilotwms_agent_last_cycle_timestamp_seconds",
                                       "End of the last agent cycle (Unix time)", ["agent"],
                                       multiprocess_mode="mostrecent"),
            )
        return _metrics


# -- several processes ---------------------------------------------------------------------------


def setup_multiprocess(directory: str | None = None) -> str:
    """Use memory-mapped value files in ``directory`` (a fresh temporary one by default) for
    every metric made from now on, in this process and the children it forks."""
    path = directory or tempfile.mkdtemp(prefix="pilotwms-metrics-")
    Path(path).mkdir(parents=True, exist_ok=True)
    for stale in Path(path).glob("*.db"):
        stale.unlink()
    os.environ[ENV_DIR] = path
    values.ValueClass = values.MultiProcessValue()
    return path


def multiprocess_dir() -> str | None:
    path = os.environ.get(ENV_DIR)
    return path if path and os.path.isdir(path) else None


def worker_exited(pid: int) -> None:
    """A worker died: its live gauges stop counting."""
    path = multiprocess_dir()
    if path:
        multiprocess.mark_process_dead(pid, path)


def cleanup_multiprocess(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


# -- cached gauges -------------------------------------------------------------------------------


class CachedSources(Collector):
    """Collects the ``pilotwms.metrics`` sources, each result kept ``ttl`` seconds."""

    def __init__(self, context: Any, ttl: float, sources: dict[str, Source] | None = None,
                 *, refresh_on_collect: bool = False) -> None:
        self.context = context
        self.ttl = ttl
        self.refresh_on_collect = refresh_on_collect
        self.sources = sources if sources is not None else load_sources()
        self._cache: dict[str, tuple[float, list[Metric]]] = {}
        self._lock = threading.Lock()

    def refresh(self, now: float | None = None) -> None:
        """Recompute the sources whose values are older than the TTL (blocking: call it in a
        worker thread)."""
        now = time.monotonic() if now is None else now
        for name, source in self.sources.items():
            with self._lock:
                cached = self._cache.get(name)
                if cached is not None and now - cached[0] < self.ttl:
                    continue
            try:
                found = list(source(self.context))
            except Exception:  # noqa: BLE001 - a broken source must not break the scrape
                log.exception("metrics source %s failed", name)
                found = cached[1] if cached is not None else []
            with self._lock:
                self._cache[name] = (now, found)

    def collect(self) -> Iterable[Metric]:
        if self.refresh_on_collect:
            self.refresh()
        with self._lock:
            cached = list(self._cache.values())
        for _, found in cached:
            yield from found


def load_sources() -> dict[str, Source]:
    sources: dict[str, Source] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            sources[ep.name] = ep.load()
        except Exception:  # noqa: BLE001 - an uninstallable plugin is logged, not fatal
            log.exception("cannot load metrics source %s", ep.name)
    return sources


def gauge(name: str, doc: str, labels: list[str], samples: Iterable[tuple[list[str], float]]
          ) -> GaugeMetricFamily:
    """A gauge family for a cached source."""
    family = GaugeMetricFamily(name, doc, labels=labels)
    for label_values, value in samples:
        family.add_metric(label_values, value)
    return family


# -- exposition ----------------------------------------------------------------------------------


def exposition(extra: Collector | None = None) -> bytes:
    """The Prometheus text format of this process (or of all processes in multiprocess
    mode), plus ``extra`` collectors."""
    path = multiprocess_dir()
    if path:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path)
    else:
        registry = CollectorRegistry()
        registry.register(_Default())
    if extra is not None:
        registry.register(extra)
    return bytes(generate_latest(registry))


class _Default(Collector):
    """The default registry's metrics (this process's metrics, process and GC figures)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


CONTENT_TYPE = CONTENT_TYPE_LATEST


def scrape_token(token_file: Path | None) -> str | None:
    """The configured scrape token: ``$PILOTWMS_METRICS_TOKEN``, else the file's content."""
    env = os.environ.get(ENV_TOKEN, "").strip()
    if env:
        return env
    if token_file is not None:
        try:
            text = token_file.read_text().strip()
        except OSError as exc:
            log.error("cannot read the scrape token file %s: %s", token_file, exc)
            return None
        return text or None
    return None


def token_matches(header: str | None, token: str | None) -> bool:
    """Whether an ``Authorization`` header carries the scrape token (constant time)."""
    if not header or not token:
        return False
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode())


# -- agents: a small HTTP listener ----------------------------------------------------------------


def serve_agent_metrics(host: str, port: int, *, token: str | None, anonymous: bool,
                        extra: Collector | None = None) -> ThreadingHTTPServer:
    """``GET /metrics`` for an agent on ``host:port`` (plain HTTP: keep it on a private
    address); the scrape token is required unless ``anonymous``. Returns the running server
    (``.shutdown()`` it); ``server.server_port`` is the bound port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            if not anonymous and not token_matches(self.headers.get("Authorization"), token):
                self.send_response(401)
                self.send_header("WWW-Authenticate", "Bearer")
                self.end_headers()
                return
            body = exposition(extra)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base name
            log.debug("metrics %s", format % args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    return server
