"""The Tornado HTTPS server: DIRAC's RPC envelope on ``POST /<System>/<Service>``.

One process hosts any set of services. For each request the handler

1. reads the form (``method``, ``args`` as a JSON list, ``clientVO``, ``clientSetup``,
   ``extraCredentials``, ``rawContent``) -- a missing ``method`` is HTTP 400;
2. finds who is calling (:meth:`RPCHandler.identify`): a bearer token, else the verified TLS
   client chain, else a trusted balancer's ``X-SSL-CERT`` header, else nobody;
3. finds the method (unknown: HTTP 501) and checks its rules (refused: HTTP 401);
4. checks the argument types, runs the method (blocking ones in the thread pool), and encodes
   ``{"OK": true, "Value": ...}``; a :class:`~core.exceptions.PilotWMSError` becomes
   ``{"OK": false, "Message": ..., "Errno": ...}`` at its HTTP status (200 for ordinary errors);
   anything else is a bug: HTTP 500, logged with the request id that the reply carries.

Example (a server on a free port, called with ``requests``; see tests/core/rpc for more)::

    from core.rpc.server import RPCServer
    server = RPCServer(config, [MyService])
    server.listen()            # binds Server.Host:Server.Port with TLS
    IOLoop.current().start()

Caveat: TLS client chains are read with ``get_verified_chain()``, public from Python 3.13 and
private (but present) in 3.10-3.12.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import ipaddress
import logging
import ssl
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import tornado.web
from cryptography import x509 as cx509
from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback
from tornado.iostream import SSLIOStream

from core.config.schema import Config
from core.db import rolled_back
from core.exceptions import (
    BadRequestError,
    CredentialError,
    DatabaseError,
    DatabaseUnavailableError,
    MethodNotFoundError,
    NotAuthenticatedError,
    NotAuthorizedError,
    PilotWMSError,
    ServerBusyError,
)
from core.faults import service_error
from core.metrics import metrics
from core.rpc.context import ServerContext
from core.rpc.jencode import REQUEST_LIMITS, decode, encode
from core.rpc.service import Call, MethodSpec, Reply, Service
from core.security.crl import CRLStore, ca_directory
from core.security.identity import ANONYMOUS, Identity
from core.security.rights import Rule, allowed, parse_rules
from core.security.x509 import (
    load_der_chain,
    load_pem_chain,
    verified_chain_der,
    verify_chain,
)

log = logging.getLogger("pilotwms.rpc")

#: positional arguments accepted in one call (DIRAC's methods take a handful)
MAX_ARGS = 64


def server_ssl_context(config: Config) -> ssl.SSLContext:
    """TLS for the server: host cert, client certs optional but verified, proxies allowed.

    A client certificate is optional so that token users can connect; one that is presented
    must verify against the CA directory or the handshake fails. A host certificate revoked by
    a CRL of the CA directory is a :class:`CredentialError` here (the server does not start).
    """
    conf = config.server
    if conf.host_cert is None or conf.host_key is None:
        raise CredentialError("Server.HostCert and Server.HostKey are required for HTTPS")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(conf.host_cert), str(conf.host_key))
    except (OSError, ssl.SSLError) as exc:
        raise CredentialError(f"cannot load the host certificate: {exc}") from None
    ca_dir = ca_directory(config)
    if not ca_dir.is_dir():
        raise CredentialError(f"CA directory {ca_dir} does not exist")
    ctx.load_verify_locations(capath=str(ca_dir))
    # a revoked host certificate would be refused by every careful client: say so at start
    host_chain = load_pem_chain(Path(conf.host_cert).read_bytes())
    CRLStore(ca_dir, expired_policy=conf.crls.expired_policy).check_chain(host_chain)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.verify_flags |= ssl.VERIFY_ALLOW_PROXY_CERTS
    return ctx


def balancer_chain(cert: str, chain: str | None = None) -> list[cx509.Certificate]:
    """The client chain a TLS-terminating balancer forwards.

    ``cert`` (header ``X-SSL-CERT``) is either PEM, URL-quoted (nginx's
    ``$ssl_client_escaped_cert``, Apache), possibly the whole chain; or base64 DER (HAProxy's
    ``%[ssl_c_der,base64]``), quotes allowed. ``chain`` (``X-SSL-CERT-CHAIN``, HAProxy's
    ``%[ssl_c_chain_der,base64]``) adds the certificates the client sent behind it (a
    proxy's issuers).
    """
    text = urllib.parse.unquote(cert).strip().strip('"')
    if "-----BEGIN" in text:
        certs = load_pem_chain(text.encode())
    else:
        certs = load_der_chain(_b64(text))
    if chain and chain.strip().strip('"'):
        extra = load_der_chain(_b64(chain.strip().strip('"')))
        certs += [c for c in extra if c != certs[0]]
    if not certs:
        raise CredentialError("no certificate in the balancer's header")
    return certs


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise CredentialError("balancer certificate header is neither PEM nor base64") \
            from None


class HostedService:
    """A service instance plus its effective rules (code defaults overridden by config)."""

    def __init__(self, service: Service, config: Config) -> None:
        self.service = service
        self.specs: dict[str, MethodSpec] = type(service).methods()
        auth = config.service_config(service.system, service.name).authorization
        default = auth.get("Default")
        self.rules: dict[str, tuple[Rule, ...]] = {}
        for wire, spec in self.specs.items():
            override = auth.get(wire, default if wire not in ("ping", "echo") else None)
            self.rules[wire] = parse_rules(override) if override is not None else spec.rights


class RPCHandler(tornado.web.RequestHandler):
    """Serves every method of one service."""

    SUPPORTED_METHODS = ("POST",)

    def initialize(self, hosted: HostedService, ctx: ServerContext,
                   balancers: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        self.hosted = hosted
        self.ctx = ctx
        self.balancers = balancers
        self.request_id = ""

    def prepare(self) -> None:
        self.request_id = uuid.uuid4().hex[:16]
        if not getattr(self, "_in_flight", False):  # some subclasses chain prepare twice
            metrics().rpc_in_flight.inc()
            self.ctx.calls_in_flight += 1  # the IOLoop's thread only: no lock
            self._in_flight = True

    def on_finish(self) -> None:
        self._done()

    def on_connection_close(self) -> None:
        self._done()  # a streaming upload cut by its client never finishes
        super().on_connection_close()

    def _done(self) -> None:
        if getattr(self, "_in_flight", False):  # once; never before prepare (405...)
            self._in_flight = False
            metrics().rpc_in_flight.dec()
            self.ctx.calls_in_flight -= 1

    # -- identity ------------------------------------------------------------------------------

    def _tls_chain(self) -> list[cx509.Certificate] | None:
        stream = getattr(self.request.connection, "stream", None)
        if not isinstance(stream, SSLIOStream):
            return None
        cached = getattr(stream, "_pilotwms_chain", None)
        if cached is not None:
            return cached or None
        ders = verified_chain_der(stream.socket)
        # the verified chain ends with the CA: identity code stops at the end-entity cert
        chain = [cx509.load_der_x509_certificate(d) for d in ders]
        stream._pilotwms_chain = chain  # type: ignore[attr-defined]
        return chain or None

    def _balancer_chain(self) -> list[cx509.Certificate] | None:
        pem = self.request.headers.get("X-SSL-CERT")
        if not pem or not self.balancers:
            return None
        try:
            addr = ipaddress.ip_address(self.request.remote_ip or "")
        except ValueError:
            return None
        if not any(addr in net for net in self.balancers):
            log.warning("ignoring X-SSL-CERT from untrusted %s", addr)
            return None
        verify = self.request.headers.get("X-Ssl_client_verify", "SUCCESS")
        if verify.upper() != "SUCCESS":
            raise NotAuthenticatedError(f"balancer reports client verification {verify}")
        try:
            chain = balancer_chain(pem, self.request.headers.get("X-SSL-CERT-CHAIN"))
        except CredentialError as exc:
            raise NotAuthenticatedError(f"certificate from balancer refused: {exc}") from None
        try:
            verify_chain(chain, ca_directory(self.ctx.config))
        except CredentialError as exc:
            raise NotAuthenticatedError(f"certificate from balancer refused: {exc}") from None
        return chain

    def identify(self) -> Identity:
        authz = self.request.headers.get("Authorization")
        authenticator = self.ctx.authenticator
        if authz:
            scheme, _, token = authz.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise NotAuthenticatedError("Authorization header must be 'Bearer <token>'")
            return authenticator.from_token(token.strip())
        stream = getattr(self.request.connection, "stream", None)
        cached = getattr(stream, "_pilotwms_identity", None)
        if cached is not None:
            # same TLS connection, same chain: only the time left changes, and the CRLs
            # (a long keep-alive connection must not outlive a revocation)
            ident, expires = cached
            try:
                authenticator.check_revoked(self._tls_chain() or [])
            except CredentialError as exc:
                raise NotAuthenticatedError(str(exc)) from None
            return dataclasses.replace(ident, seconds_left=max(0, int(expires - time.time())))
        tls_chain = self._tls_chain()
        if tls_chain:
            try:
                ident = authenticator.from_chain(tls_chain)
            except CredentialError as exc:
                raise NotAuthenticatedError(str(exc)) from None
            stream._pilotwms_identity = (ident, time.time() + ident.seconds_left)  # type: ignore[union-attr]
            return ident
        chain = self._balancer_chain()
        if chain:
            try:
                return authenticator.from_chain(chain)
            except CredentialError as exc:
                raise NotAuthenticatedError(str(exc)) from None
        return ANONYMOUS

    # -- request -----------------------------------------------------------------------------

    def _form(self, name: str) -> str | None:
        value = self.get_body_argument(name, default=None)
        return value if value not in (None, "") else None

    async def post(self) -> None:
        method = self._form("method")
        if method is None:
            raise BadRequestError("No method given")
        self._admit(method)
        raw_args = self._form("args")
        args = decode(raw_args, REQUEST_LIMITS) if raw_args is not None else []
        if not isinstance(args, list):
            raise BadRequestError("args must be a JSON list of positional arguments")
        if len(args) > MAX_ARGS:
            raise BadRequestError(f"{len(args)} arguments given, at most {MAX_ARGS} accepted")
        spec = self.hosted.specs.get(method)
        if spec is None:
            raise MethodNotFoundError(f"{method} is not implemented")
        ident = self.identify()
        extra_raw = self._form("extraCredentials")
        if extra_raw is not None:
            ident = self.ctx.authenticator.apply_extra_credentials(
                ident, decode(extra_raw, REQUEST_LIMITS))
        client_vo = self._form("clientVO")
        self.ctx.authenticator.check_vo(ident, client_vo)
        if not allowed(ident, self.hosted.rules[method]):
            if not ident.authenticated:
                raise NotAuthenticatedError(f"{method} needs credentials of a registered user")
            raise NotAuthorizedError(f"{ident.username}@{ident.group} may not call {method}")
        spec.check_args(args)
        call = Call(
            identity=ident,
            request_id=self.request_id,
            client_vo=client_vo,
            client_setup=self._form("clientSetup"),
            remote_ip=self.request.remote_ip,
            raw_content=(self._form("rawContent") or "").lower() in ("true", "1", "yes"),
            url=self.request.full_url(),
        )
        service = self.hosted.service
        if spec.is_async:
            body = self._envelope(await spec.func(service, call, *args), call, spec)
        else:
            loop = asyncio.get_running_loop()
            work = functools.partial(self._run_blocking, spec, service, call, args)
            body = await loop.run_in_executor(self.ctx.executor, work)
        self.finish(body)

    def _admit(self, method: str) -> None:
        """Refuse the call (HTTP 503, ``Retry-After``) when this process already serves
        ``Server.MaxCallsInFlight`` calls: nothing of it is done, and the client tries another
        server or again later instead of queueing behind the others (``ping`` is always
        answered: a balancer's health check must not take a busy server out)."""
        limit = self.ctx.config.server.max_calls_in_flight
        if limit and self.ctx.calls_in_flight > limit and method != "ping":
            raise ServerBusyError(
                f"this server is busy ({self.ctx.calls_in_flight - 1} calls in progress, "
                f"at most {limit}): nothing was done, try again")

    def _run_blocking(self, spec: MethodSpec, service: Service, call: Call,
                      args: list[Any]) -> bytes:
        # encoding happens here too, so a large reply never blocks the IOLoop
        try:
            result = spec.func(service, call, *args)
        except sa.exc.DBAPIError as exc:
            if not rolled_back(exc):
                raise
            # retries ran out (core.db.retry_conflicts) or the method does not retry: a clear
            # error instead of a 500; the failing transaction was rolled back by the server
            log.warning("request %s to %s: %s", self.request_id, self.request.path, exc.orig)
            raise DatabaseError(
                "the database rolled this change back (a concurrent change of the same data, "
                "or a database node leaving its cluster): try again") from None
        return self._envelope(result, call, spec)

    def _envelope(self, result: Any, call: Call, spec: MethodSpec) -> bytes:
        if call.raw_content and spec.raw and isinstance(result, bytes | bytearray):
            self.set_header("Content-Type", "application/octet-stream")
            return bytes(result)
        self.set_header("Content-Type", "application/json")
        if isinstance(result, Reply):
            return encode({"OK": True, "Value": result.value, **result.extra}).encode()
        return encode({"OK": True, "Value": result}).encode()

    # -- errors --------------------------------------------------------------------------------

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        exc = exc_info[1] if exc_info else None
        self.set_header("Content-Type", "application/json")
        if isinstance(exc, DatabaseUnavailableError):
            self.set_header("Retry-After", "2")
        elif isinstance(exc, ServerBusyError):
            self.set_header("Retry-After", "1")
        if isinstance(exc, PilotWMSError):
            body = {
                "OK": False,
                "Message": exc.wire_message(),
                "Errno": exc.errno,
                "ExceptionClass": type(exc).__name__,
                **exc.extra,
            }
        elif isinstance(exc, tornado.web.HTTPError) and status_code < 500:
            body = {"OK": False, "Message": exc.log_message or self._reason, "Errno": 22}
        else:
            body = {
                "OK": False,
                "Message": f"Internal server error (request id {self.request_id})",
                "Errno": 5,
                "RequestID": self.request_id,
            }
        self.finish(encode(body))

    def _handle_request_exception(self, e: BaseException) -> None:
        translated = service_error(e)
        if translated is not None and translated is not e:
            # a fault of the machine (disk full, database gone), not a bug: a clear error
            log.warning("request %s to %s: %s: %s", self.request_id, self.request.path,
                        type(e).__name__, str(e).splitlines()[0][:300] if str(e) else "")
            translated.__traceback__ = e.__traceback__
            e = translated
        if isinstance(e, PilotWMSError):
            if self._finished:
                return
            self.send_error(e.http_status, exc_info=(type(e), e, e.__traceback__))
            return
        if not isinstance(e, tornado.web.HTTPError):
            log.exception("request %s to %s failed", self.request_id, self.request.path)
        super()._handle_request_exception(e)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, PilotWMSError):
            return
        super().log_exception(typ, value, tb)


class NotFoundHandler(tornado.web.RequestHandler):
    """Unknown paths: 404 with an envelope (DIRAC clients then try the next URL)."""

    def prepare(self) -> None:
        self.set_status(404)
        self.set_header("Content-Type", "application/json")
        self.finish(encode({"OK": False, "Message": f"No service at {self.request.path}",
                            "Errno": 2}))


def build_application(ctx: ServerContext,
                      service_classes: Iterable[type[Service]]) -> tornado.web.Application:
    balancers = [ipaddress.ip_network(b, strict=False)
                 for b in ctx.config.server.trusted_balancers]
    routes: list[Any] = []
    for cls in service_classes:
        service = cls(ctx)
        ctx.services.append(service)
        hosted = HostedService(service, ctx.config)
        ctx.hosted[cls.path()] = hosted
        routes.append((f"/{cls.system}/{cls.name}", RPCHandler,
                       {"hosted": hosted, "ctx": ctx, "balancers": balancers}))
        routes.extend(service.extra_routes(hosted, balancers))
    from core.rpc import instrument  # Prometheus: /metrics and request counters

    routes.extend(instrument.routes(ctx, balancers))
    return tornado.web.Application(routes, default_handler_class=NotFoundHandler,
                                   transforms=[FastGzip], log_function=instrument.log_request)


class FastGzip(tornado.web.GZipContentEncoding):
    """Replies gzipped at level 1, not Tornado's 6, for clients that accept it: a search page
    of 10,000 records (1.9-2.7 MB of JEncode) costs about 35 % less server CPU to compress
    (e.g. 28.7 -> 18.8 ms) for a reply about 20 % larger (108 -> 134 KB); server CPU is what
    runs out first, the bytes are few either way. Same rules as Tornado's otherwise
    (compressible types, bodies of at least 1,000 bytes)."""

    GZIP_LEVEL = 1


@dataclasses.dataclass
class _TaskFailures:
    """A background task's run of failures: logged in full once, then briefly."""

    count: int = 0
    last_error: str = ""
    last_logged: float = 0.0


#: seconds between the one-line reminders of a background task that keeps failing the same way
FAILURE_REMINDER = 600.0


def _failed(name: str, exc: Exception, state: _TaskFailures) -> None:
    """Log a failed background run: with its traceback the first time or when the error
    changes, then one line every :data:`FAILURE_REMINDER` seconds (a database that is down
    would otherwise print a traceback per service every few seconds)."""
    error = f"{type(exc).__name__}: {exc}"
    state.count += 1
    now = time.monotonic()
    if error != state.last_error:
        state.last_error, state.last_logged = error, now
        log.error("background task of %s failed", name, exc_info=exc)
    elif now - state.last_logged >= FAILURE_REMINDER:
        state.last_logged = now
        log.error("background task of %s still failing (%d times in a row): %s", name,
                  state.count, error.splitlines()[0][:300])


def _succeeded(name: str, state: _TaskFailures) -> None:
    if state.count:
        log.warning("background task of %s works again after %d failed runs", name,
                    state.count)
        state.count, state.last_error = 0, ""


def _ticker(ctx: ServerContext, loop: asyncio.AbstractEventLoop, task: Callable[[], object],
            name: str) -> Callable[[], Awaitable[None]]:
    """One periodic run of ``task`` in the thread pool; a failing run is logged only."""
    state = _TaskFailures()

    async def tick() -> None:
        try:
            await loop.run_in_executor(ctx.executor, task)
        except Exception as exc:  # noqa: BLE001 - a sweep must never stop the server
            _failed(name, exc, state)
        else:
            _succeeded(name, state)
    return tick


def _start_background_tasks(ctx: ServerContext, services: Iterable[Service]) -> None:
    """Run each service's periodic tasks in the thread pool; a failing run is logged only."""
    loop = asyncio.get_running_loop()

    for service in services:
        for period, task in service.background_tasks():
            callback = PeriodicCallback(_ticker(ctx, loop, task, service.path()),
                                        period * 1000, jitter=0.1)
            callback.start()
            ctx.background.append(callback)
        for task in service.startup_tasks():
            ctx.startup.append(asyncio.ensure_future(_run_startup(ctx, task, service.path())))


#: seconds between attempts of a start-up task whose database cannot be reached
STARTUP_RETRY = 2.0


async def _run_startup(ctx: ServerContext, task: Any, name: str) -> None:
    """Run a start-up repair once; while its database cannot be reached, try again."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            await loop.run_in_executor(ctx.executor, task)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a repair must never stop the server
            error = service_error(exc)
            if error is None or error.http_status != 503:
                log.exception("start-up task of %s failed", name)
                return
            log.warning("start-up task of %s: %s; retrying in %.0f s", name, error.message,
                        STARTUP_RETRY)
        await asyncio.sleep(STARTUP_RETRY)


def make_http_server(ctx: ServerContext, service_classes: Iterable[type[Service]],
                     *, tls: bool = True) -> HTTPServer:
    """An HTTPServer for the services; ``tls=False`` only behind a TLS-terminating balancer.

    Must be called with the IOLoop running (it starts the services' background tasks).
    """
    app = build_application(ctx, service_classes)
    _start_background_tasks(ctx, ctx.services)
    ssl_options = server_ssl_context(ctx.config) if tls else None
    return HTTPServer(app, ssl_options=ssl_options,
                      max_body_size=ctx.config.server.max_body_size, decompress_request=True)
