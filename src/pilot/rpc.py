"""A standard-library HTTPS client for DIRAC-style RPC (``method`` + JSON ``args``).

Credentials: a bearer token (file re-read when it changes) or a proxy file (certificate and key
in one PEM); trust: a hashed CA directory and/or a CA file. Connection errors are retried with
back-off, failing over along the URLs; HTTP 404/502/503/504 fail over too, and a 503 with an
envelope (the server's database restarting: nothing was done) is retried like a connection
error. ``retry_for`` keeps retrying through an outage of that many seconds; once ``stop`` is
set (the pilot got SIGTERM) every call is tried once, within a shared grace period. A read
timeout is never repeated (the server may have acted).

Example::

    client = RpcClient(["https://wms.example.org:8443"], token_file="token", ca_dir="certs")
    client.call("WorkloadManagement/Matcher", "requestJob", {"Site": "LCG.X.org"})
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
import threading
import time
import urllib.parse
from datetime import date, datetime, timezone
from typing import Any

DT_FORMAT = "%Y-%m-%d %H:%M:%S"
FAILOVER_STATUSES = (404, 502, 503, 504)


class RpcError(Exception):
    """A failed call: ``status`` is the HTTP status (0 when no server answered)."""

    def __init__(self, message: str, errno: int = 0, status: int = 200) -> None:
        super().__init__(message)
        self.errno = errno
        self.status = status


def _default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        if obj.tzinfo is not None:
            obj = obj.astimezone(timezone.utc)
        return {"__dCls": "dt", "obj": obj.strftime(DT_FORMAT)}
    if isinstance(obj, date):
        return {"__dCls": "date", "obj": obj.strftime("%Y-%m-%d")}
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"__dCls": "b64", "obj": base64.b64encode(bytes(obj)).decode("ascii")}
    raise TypeError(f"cannot send {type(obj).__name__}")


def _hook(obj: dict[str, Any]) -> Any:
    kind = obj.get("__dCls")
    value = obj.get("obj")
    if kind is None or not isinstance(value, str):
        return obj
    if kind == "dt":
        fmt = DT_FORMAT + (".%f" if "." in value else "")
        return datetime.strptime(value, fmt).replace(tzinfo=timezone.utc)
    if kind == "date":
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=timezone.utc).date()
    if kind == "b64":
        return base64.b64decode(value)
    return obj


def jencode(obj: Any) -> str:
    """DIRAC's JEncode (JSON with datetime/date/bytes markers).

    >>> jencode([b"\\x00", datetime(2026, 1, 2, tzinfo=timezone.utc)])
    '[{"__dCls": "b64", "obj": "AA=="}, {"__dCls": "dt", "obj": "2026-01-02 00:00:00"}]'
    """
    return json.dumps(obj, default=_default)


def jdecode(text: str | bytes) -> Any:
    """Parse JEncode text (markers become bytes / aware UTC datetimes)."""
    return json.loads(text, object_hook=_hook)


class RpcClient:
    """Thread-safe: one persistent connection per thread and URL."""

    def __init__(self, urls: list[str], *, token: str | None = None,
                 token_file: str | None = None, proxy: str | None = None,
                 ca_dir: str | None = None, ca_file: str | None = None,
                 timeout: float = 120.0, retries: int = 5, backoff: float = 1.0,
                 retry_for: float = 0.0, stop: threading.Event | None = None,
                 stop_grace: float = 8.0) -> None:
        if not urls:
            raise ValueError("no server URL")
        self.urls = [u.rstrip("/") for u in urls]
        self.token = token
        self.token_file = token_file
        self._token_stamp = 0.0
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        #: keep retrying connection errors and 503s for this long (s) after the first one, past
        #: ``retries``: the outage a call survives (a server restarting, a network cut)
        self.retry_for = retry_for
        #: once set (SIGTERM), calls are tried once each, and all of them together get
        #: ``stop_grace`` seconds: a stopping pilot never waits on an unreachable server
        self.stop = stop
        self.stop_grace = stop_grace
        self._stopping: dict[str, float] = {}
        self.context = ssl.create_default_context(cafile=ca_file, capath=ca_dir)
        if proxy:
            self.context.load_cert_chain(proxy)
        self._local = threading.local()
        self._proxy, self._ca_dir, self._ca_file = proxy, ca_dir, ca_file

    def with_token(self, token: str, **options: Any) -> RpcClient:
        """A client for the same servers speaking with another bearer token (``options``
        override ``timeout``, ``retries``, ``retry_for``...)."""
        settings: dict[str, Any] = {
            "timeout": self.timeout, "retries": self.retries, "backoff": self.backoff,
            "retry_for": self.retry_for, "stop": self.stop, "stop_grace": self.stop_grace}
        settings.update(options)
        client = RpcClient(self.urls, token=token, ca_dir=self._ca_dir, ca_file=self._ca_file,
                           **settings)
        client._stopping = self._stopping  # one grace period for every client of the pilot
        return client

    def with_options(self, **options: Any) -> RpcClient:
        """The same credentials with other retry settings."""
        settings: dict[str, Any] = {
            "timeout": self.timeout, "retries": self.retries, "backoff": self.backoff,
            "retry_for": self.retry_for, "stop": self.stop, "stop_grace": self.stop_grace}
        settings.update(options)
        client = RpcClient(self.urls, token=self.token, token_file=self.token_file,
                           proxy=self._proxy, ca_dir=self._ca_dir, ca_file=self._ca_file,
                           **settings)
        client._stopping = self._stopping
        return client

    def _stop_left(self) -> float | None:
        """Seconds left of the stop grace period (None: not stopping)."""
        if self.stop is None or not self.stop.is_set():
            return None
        deadline = self._stopping.setdefault("deadline", time.monotonic() + self.stop_grace)
        return deadline - time.monotonic()

    def auth_headers(self) -> dict[str, str]:
        """The ``Authorization`` header for other HTTPS requests to the same servers (empty
        with a proxy: the TLS handshake of :attr:`context` carries it)."""
        token = self._bearer()
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _bearer(self) -> str | None:
        if self.token_file:
            stamp = os.stat(self.token_file).st_mtime
            if stamp != self._token_stamp:
                with open(self.token_file, encoding="ascii") as stream:
                    self.token = stream.read().strip()
                self._token_stamp = stamp
        return self.token

    def _connection(self, base: str) -> http.client.HTTPConnection:
        conns: dict[str, http.client.HTTPConnection] = self._local.__dict__.setdefault(
            "conns", {})
        conn = conns.get(base)
        if conn is None:
            parts = urllib.parse.urlsplit(base)
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection(parts.netloc, timeout=self.timeout,
                                                   context=self.context)
            else:
                conn = http.client.HTTPConnection(parts.netloc, timeout=self.timeout)
            conns[base] = conn
        left = self._stop_left()
        timeout = self.timeout if left is None else max(0.5, min(self.timeout, left))
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _drop(self, base: str) -> None:
        conn = self._local.__dict__.get("conns", {}).pop(base, None)
        if conn is not None:
            conn.close()

    def _post(self, base: str, path: str, body: bytes) -> tuple[int, str, bytes]:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        token = self._bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        for attempt in (1, 2):  # a kept-alive connection the server closed: reconnect once
            conn = self._connection(base)
            try:
                conn.request("POST", urllib.parse.urlsplit(base).path + "/" + path, body,
                             headers)
                response = conn.getresponse()
                data = response.read()
                return response.status, response.getheader("Content-Type") or "", data
            except (http.client.RemoteDisconnected, BrokenPipeError,
                    ConnectionResetError) as exc:
                self._drop(base)
                if attempt == 2:
                    raise ConnectionError(str(exc)) from exc
            except (socket.timeout, TimeoutError):
                self._drop(base)
                raise
            except Exception:
                self._drop(base)
                raise
        raise ConnectionError("unreachable")  # pragma: no cover

    def call(self, service: str, method: str, *args: Any, raw: bool = False) -> Any:
        """Call ``method`` of ``service`` ("System/Component"); returns the ``Value`` (bytes
        for ``raw``). Raises :class:`RpcError`."""
        value, _ = self.call_full(service, method, *args, raw=raw)
        return value

    def call_full(self, service: str, method: str, *args: Any,
                  raw: bool = False) -> tuple[Any, dict[str, Any]]:
        """Like :meth:`call`, also returning the whole reply envelope (empty for raw)."""
        form = {"method": method, "args": jencode(list(args))}
        if raw:
            form["rawContent"] = "true"
        body = urllib.parse.urlencode(form).encode("ascii")
        errors: list[str] = []
        last_status = 0
        first_failure: float | None = None
        unavailable: tuple[int, str, bytes] | None = None
        attempt = 0
        while True:
            left = self._stop_left()
            if left is not None and left <= 0:
                raise RpcError(f"{method} not sent: the pilot is stopping")
            retry = False  # connection refused/reset, or every server answered 503
            for base in self.urls:
                try:
                    status, ctype, data = self._post(base, service, body)
                except (socket.timeout, TimeoutError) as exc:
                    raise RpcError(f"{base}: timeout: {exc}") from exc
                except (OSError, http.client.HTTPException) as exc:
                    errors.append(f"{base}: {type(exc).__name__}: {exc}")
                    retry = True
                    continue
                if status in FAILOVER_STATUSES:
                    errors.append(f"{base}: HTTP {status}")
                    last_status = status
                    if status == 503 and "json" in ctype:
                        retry = True  # the server's database is restarting: nothing was done
                        unavailable = (status, ctype, data)
                    continue
                return self._reply(status, ctype, data, raw, method)
            now = time.monotonic()
            first_failure = now if first_failure is None else first_failure
            if (not retry or self._stop_left() is not None
                    or (attempt >= self.retries and now - first_failure >= self.retry_for)):
                break
            pause = min(self.backoff * 2 ** attempt, 30.0)
            if self.retry_for and attempt >= self.retries:
                pause = min(pause, max(0.1, first_failure + self.retry_for - now))
            attempt += 1
            if self.stop is not None:
                self.stop.wait(pause)  # a SIGTERM ends the wait
            else:
                time.sleep(pause)
        if unavailable is not None and errors[-1].endswith("HTTP 503"):
            return self._reply(*unavailable, raw, method)  # the server's own message
        raise RpcError("no server answered: " + "; ".join(errors[-3:]), status=last_status)

    @staticmethod
    def _reply(status: int, ctype: str, data: bytes, raw: bool,
               method: str) -> tuple[Any, dict[str, Any]]:
        if raw and status == 200 and "json" not in ctype:
            return data, {}
        try:
            reply = jdecode(data)
        except ValueError:
            reply = None
        if not isinstance(reply, dict) or "OK" not in reply:
            if status == 501:
                raise RpcError(f"{method} is not implemented", status=status)
            raise RpcError(f"HTTP {status}: {data[:200]!r}", status=status)
        if not reply["OK"]:
            raise RpcError(str(reply.get("Message", "")), int(reply.get("Errno") or 0), status)
        return reply.get("Value"), reply
