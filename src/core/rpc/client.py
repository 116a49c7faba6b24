"""The Python RPC client: DIRAC's envelope over HTTPS, with failover and re-raised errors.

A client talks to one service (``"WorkloadManagement/JobMonitoring"``) at one or more servers.
It reuses connections (one ``requests.Session`` per client), tries the servers starting at a
random one and fails over to the next on connection errors and on HTTP 404/502/503/504 (when
every server answers 503, its database restarting, the call is repeated for up to
:attr:`RPCClient.unavailable_retry_seconds`: such a call did nothing), and
turns ``{"OK": false}`` replies back into the exception class the server raised, so callers
write ``except JobNotFoundError:`` whichever side raised it.

Failover is never attempted after a request may have reached a server (read timeout): the call
could have been executed, and repeating a submission would duplicate it. That case raises
:class:`~core.exceptions.ServiceUnavailableError` saying so.

With a CA directory (``ca_dir``), the server's certificate chain is also checked against that
directory's CRLs (:mod:`core.rpc.tls_client`): a revoked server is a TLS error (next URL).

Example::

    from core.rpc.client import RPCClient, Credentials
    client = RPCClient("Framework/Registry", urls=["https://127.0.0.1:8443"],
                       credentials=Credentials(cert="usercert.pem", key="userkey.pem"),
                       ca_dir="/etc/grid-security/certificates")
    client.call("whoami")["group"]
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from core.exceptions import PilotWMSError, ServiceUnavailableError, error_class
from core.rpc.jencode import decode, encode
from core.rpc.tls_client import CRLCheckingAdapter
from core.security.crl import shared_store

#: seconds: (connect, read); a read may be long (bulk submissions, large sandboxes)
DEFAULT_TIMEOUT = (10.0, 600.0)
_FAILOVER_STATUS = frozenset({404, 502, 503, 504})
_WIRE_MESSAGE = re.compile(r"^(?P<str>.*) \( (?P<errno>-?\d+) : (?P<msg>.*)\)$", re.DOTALL)
_ENVELOPE_KEYS = frozenset({"OK", "Message", "Errno", "ExceptionClass", "Value", "RequestID"})


@dataclass(frozen=True)
class Credentials:
    """What the client presents: a certificate (+key) or proxy file, and/or a bearer token.

    A token, when set, is sent and the certificate is not (the server would prefer the token).
    """

    cert: str | Path | None = None
    key: str | Path | None = None
    token: str | None = None

    def describe(self) -> str:
        if self.token:
            return "bearer token"
        if self.cert:
            return f"certificate {self.cert}"
        return "no credentials"


def error_from_reply(reply: dict[str, Any]) -> PilotWMSError:
    """The exception a ``{"OK": false}`` reply stands for."""
    message = str(reply.get("Message", "Unknown error"))
    match = _WIRE_MESSAGE.match(message)
    plain = match.group("msg") if match else message
    extra = {k: v for k, v in reply.items() if k not in _ENVELOPE_KEYS}
    exc = error_class(str(reply.get("ExceptionClass", "PilotWMSError")))(plain, **extra)
    if "Errno" in reply and isinstance(reply["Errno"], int):
        exc.errno = reply["Errno"]
    return exc


def _is_envelope(response: requests.Response) -> bool:
    return response.headers.get("Content-Type", "").startswith("application/json")


def _retry_after(response: requests.Response) -> float:
    try:
        return min(max(float(response.headers.get("Retry-After", "2")), 0.1), 10.0)
    except ValueError:
        return 2.0


class RPCClient:
    """A client of one service at one or more servers."""

    #: how long calls answered 503 by every server (a database restarting) are repeated, in
    #: seconds; the last answer is then raised (DatabaseUnavailableError)
    unavailable_retry_seconds: float = 30.0

    def __init__(
        self,
        service: str,
        *,
        urls: Sequence[str],
        credentials: Credentials | None = None,
        ca_dir: str | Path | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        client_vo: str | None = None,
        session: requests.Session | None = None,
    ) -> None:
        if not urls:
            raise ValueError("at least one server URL is needed")
        service = service.strip("/")
        if service.count("/") != 1:
            raise ValueError(f"service must be 'System/Service', not {service!r}")
        self.service = service
        self.urls = [self._service_url(u, service) for u in urls]
        self.credentials = credentials or Credentials()
        self.timeout = timeout
        self.client_vo = client_vo
        self.session = session or requests.Session()
        # given per request: a session-level value loses to $REQUESTS_CA_BUNDLE in requests
        self._verify: str | bool = str(ca_dir) if ca_dir else True
        if ca_dir:
            # the server's host certificate is checked against the CA directory's CRLs
            self.session.mount("https://", CRLCheckingAdapter(shared_store(ca_dir)))
        if self.credentials.token:
            self.session.headers["Authorization"] = f"Bearer {self.credentials.token}"
        elif self.credentials.cert:
            cert = str(self.credentials.cert)
            self.session.cert = (cert, str(self.credentials.key)) if self.credentials.key \
                else cert
        self._next = random.randrange(len(self.urls))  # noqa: S311 - load spreading only

    @property
    def verify(self) -> str | bool:
        """What TLS verification uses: the CA directory, or True for the system default."""
        return self._verify

    @staticmethod
    def _service_url(url: str, service: str) -> str:
        url = url.rstrip("/")
        return url if url.endswith("/" + service) else f"{url}/{service}"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> RPCClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls -------------------------------------------------------------------------------

    def _post(self, method: str, args: Sequence[Any], raw: bool) -> requests.Response:
        data: dict[str, str] = {"method": method, "args": encode(list(args))}
        if self.client_vo:
            data["clientVO"] = self.client_vo
        if raw:
            data["rawContent"] = "true"
        deadline = time.monotonic() + self.unavailable_retry_seconds
        while True:
            response, wait = self._post_round(method, data)
            if response is not None:
                return response
            # every server answered 503 (its database restarting): nothing was done, so the
            # call may be repeated, for a while
            if time.monotonic() + wait > deadline:
                break
            time.sleep(wait)
        return self._post_round(method, data, last=True)[0]  # type: ignore[return-value]

    def _post_round(self, method: str, data: dict[str, str], *, last: bool = False
                    ) -> tuple[requests.Response | None, float]:
        """One pass over the servers: (a response, 0), or (None, seconds to wait) when every
        server answered 503 (with ``last``, the last such response is returned instead)."""
        errors: list[str] = []
        unavailable: requests.Response | None = None
        for attempt in range(len(self.urls)):
            index = (self._next + attempt) % len(self.urls)
            url = self.urls[index]
            try:
                response = self.session.post(url, data=data, timeout=self.timeout,
                                             verify=self._verify)
            except requests.exceptions.SSLError as exc:
                errors.append(f"{url}: TLS error: {exc}")
                continue
            except (requests.exceptions.ConnectTimeout, requests.exceptions.ConnectionError) \
                    as exc:
                errors.append(f"{url}: {type(exc).__name__}")
                continue
            except requests.exceptions.Timeout as exc:
                raise ServiceUnavailableError(
                    f"{url} did not answer {method} within {self.timeout[1]} s; the call may "
                    f"have been executed"
                ) from exc
            if response.status_code in _FAILOVER_STATUS:
                errors.append(f"{url}: HTTP {response.status_code}")
                if response.status_code == 503 and _is_envelope(response):
                    unavailable = response
                continue
            self._next = index
            return response, 0.0
        if unavailable is not None and len(errors) == len(self.urls):
            if last:
                return unavailable, 0.0
            return None, _retry_after(unavailable)
        raise ServiceUnavailableError(f"{self.service}.{method}: no server answered: "
                                 + "; ".join(errors))

    def envelope(self, method: str, *args: Any, datetimes_as_text: bool = False
                 ) -> dict[str, Any]:
        """The decoded reply dict as DIRAC returns it (errors are not raised); with
        ``datetimes_as_text``, datetimes as their UTC text (``jencode.decode``)."""
        response = self._post(method, args, raw=False)
        try:
            reply = decode(response.content, datetimes_as_text=datetimes_as_text)
        except PilotWMSError:
            reply = None
        if not isinstance(reply, dict) or "OK" not in reply:
            return {"OK": False, "Errno": 5,
                    "Message": f"HTTP {response.status_code}: {response.text[:200]}"}
        return reply

    def call(self, method: str, *args: Any, datetimes_as_text: bool = False) -> Any:
        """The ``Value`` of the reply; an error reply raises its exception class.
        ``datetimes_as_text``: datetimes as their UTC text, for display."""
        reply = self.envelope(method, *args, datetimes_as_text=datetimes_as_text)
        if not reply.get("OK"):
            raise error_from_reply(reply)
        return reply.get("Value")

    def call_with_extra(self, method: str, *args: Any) -> tuple[Any, dict[str, Any]]:
        """The ``Value`` and the extra top-level keys (``JobID``, ``InvalidJobIDs``, ...)."""
        reply = self.envelope(method, *args)
        if not reply.get("OK"):
            raise error_from_reply(reply)
        return reply.get("Value"), {k: v for k, v in reply.items() if k not in _ENVELOPE_KEYS}

    def call_raw(self, method: str, *args: Any) -> bytes:
        """Raw bytes (DIRAC's ``rawContent``), e.g. a sandbox download."""
        response = self._post(method, args, raw=True)
        if response.headers.get("Content-Type", "").startswith("application/octet-stream"):
            return response.content
        reply = decode(response.content)
        if isinstance(reply, dict) and not reply.get("OK", True):
            raise error_from_reply(reply)
        raise PilotWMSError(f"{method} did not return raw content")
