"""The server side of the Prometheus metrics: request accounting and ``GET /metrics``.

:func:`log_request` is the Tornado application's ``log_function``: Tornado calls it once per
finished request, whatever the outcome (answered, refused, crashed), so the counters are
complete without touching the request handler. It also writes the access log line Tornado
would have written.

:class:`MetricsHandler` serves ``/metrics`` on every ``pilotwms serve`` process. It finds the
caller exactly as RPC requests do (bearer token, TLS chain, trusted balancer) and applies
``Monitoring.Metrics.Authorization``, or accepts the scrape token. The cached gauges are
refreshed in the thread pool, never on the IOLoop. :func:`routes` also samples the thread
pool's queue every few seconds (``pilotwms_rpc_executor_queue``) and starts the process's
component-monitoring reports (:mod:`core.components`).

Example (what :func:`core.rpc.server.build_application` does)::

    routes.extend(instrument.routes(ctx, balancers))
    tornado.web.Application(routes, log_function=instrument.log_request)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import tornado.web
from prometheus_client import Gauge
from tornado.ioloop import PeriodicCallback

from core.components import ComponentReporter, load_sink
from core.exceptions import NotAuthenticatedError, NotAuthorizedError
from core.metrics import CONTENT_TYPE, CachedSources, exposition, metrics, scrape_token
from core.metrics import token_matches as _token_matches
from core.rpc.context import ServerContext
from core.rpc.server import RPCHandler
from core.security.rights import allowed, parse_rules

access = logging.getLogger("tornado.access")
PATH = "/metrics"
_queue_gauge: Gauge | None = None


def _queue() -> Gauge:
    global _queue_gauge
    if _queue_gauge is None:
        _queue_gauge = Gauge("pilotwms_rpc_executor_queue",
                             "Blocking calls waiting for a thread of the pool",
                             multiprocess_mode="livesum")
    return _queue_gauge


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Count and time the request (RPC requests by service, method and HTTP status), then
    write the access log line."""
    status = handler.get_status()
    duration = handler.request.request_time()
    hosted = getattr(handler, "hosted", None)
    if hosted is not None:
        raw = handler.request.body_arguments.get("method", [b""])[0]
        method = raw.decode("utf-8", "replace")
        if method not in hosted.specs:
            method = "unknown"
        service = hosted.service.path()
        m = metrics()
        m.rpc_requests.labels(service, method, str(status)).inc()
        m.rpc_latency.labels(service, method).observe(duration)
    if status < 400:
        write = access.info
    elif status < 500:
        write = access.warning
    else:
        write = access.error
    write("%d %s %.2fms", status, handler._request_summary(), 1000.0 * duration)


class MetricsHandler(RPCHandler):
    """``GET /metrics``: the Prometheus text format of the whole server."""

    SUPPORTED_METHODS = ("GET",)

    def initialize(self, ctx: ServerContext,  # type: ignore[override]
                   balancers: Sequence[Any], sources: CachedSources,
                   token: str | None) -> None:
        self.ctx = ctx
        self.balancers = balancers
        self.sources = sources
        self.token = token
        self.request_id = ""
        self.rules = parse_rules(ctx.config.monitoring.metrics.authorization)

    async def get(self) -> None:
        if not _token_matches(self.request.headers.get("Authorization"), self.token):
            ident = self.identify()
            if not allowed(ident, self.rules):
                if not ident.authenticated:
                    raise NotAuthenticatedError("/metrics needs credentials or the scrape "
                                                "token")
                raise NotAuthorizedError(f"{ident.username}@{ident.group} may not read "
                                         "/metrics")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.ctx.executor, self.sources.refresh)
        body = await loop.run_in_executor(self.ctx.executor, exposition, self.sources)
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(body)


def routes(ctx: ServerContext, balancers: Sequence[Any]) -> list[Any]:
    """The ``/metrics`` route of a server process (and its thread-pool sampler)."""
    section = ctx.config.monitoring.metrics
    sources = CachedSources(ctx, section.cache_seconds)
    token = scrape_token(section.scrape_token_file)
    gauge = _queue()
    work_queue = getattr(ctx.executor, "_work_queue", None)

    def sample() -> None:
        gauge.set(work_queue.qsize() if work_queue is not None else 0)

    sampler = PeriodicCallback(sample, 5000)
    sampler.start()
    ctx.background.append(sampler)
    period = ctx.config.monitoring.component_period
    sink = load_sink(ctx.config) if period > 0 and ctx.services else None
    if sink is not None:  # component monitoring records (core.components)
        reporter = ComponentReporter(
            "service", *(s.path() for s in ctx.services), sink=sink,
            queue_size=lambda: work_queue.qsize() if work_queue is not None else 0)

        async def report() -> None:
            await asyncio.get_running_loop().run_in_executor(ctx.executor, reporter.tick)

        ticker = PeriodicCallback(report, period * 1000, jitter=0.1)
        ticker.start()
        ctx.background.append(ticker)
    return [(PATH, MetricsHandler, {"ctx": ctx, "balancers": balancers, "sources": sources,
                                    "token": token})]
