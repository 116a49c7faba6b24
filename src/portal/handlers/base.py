"""What every portal route shares: the session cookie, the user's identity, CSRF checks,
security headers, and errors as the usual JSON envelope (never a stack trace).

Portal handlers are :class:`~core.rpc.server.RPCHandler` subclasses whose ``identify()``
answers with the signed-in user's identity (:mod:`portal.logic.identity`) instead of the
request's own credentials: the routes of other services reused by the portal (the storage
element's file transfer, the RPC endpoint) then apply their usual rights to that user.

Example (a route needing a session and, as it changes state, the CSRF header)::

    class Thing(PortalHandler):
        async def post(self):
            await self.begin(csrf=True)
            ...self.portal_identity...
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from core.exceptions import CredentialError, NotAuthenticatedError, NotAuthorizedError
from core.rpc.server import RPCHandler
from core.security.identity import ANONYMOUS, Identity
from portal.logic import sessions as sess
from portal.logic.identity import session_identity

if TYPE_CHECKING:
    from portal.service import PortalService

T = TypeVar("T")
SESSION_COOKIE = "__Host-pwms_session"
LOGIN_COOKIE = "__Host-pwms_login"
CSRF_HEADER = "X-CSRF-Token"

#: the page's own scripts and styles only; no inline script but the import map (by hash)
CSP = ("default-src 'self'; script-src 'self'{extra}; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")


class CSRFError(NotAuthorizedError):
    """A state-changing request without this session's CSRF token, or from another origin."""

    http_status = 403


def balancer_networks(portal: PortalService) -> list[Any]:
    return [ipaddress.ip_network(b, strict=False)
            for b in portal.ctx.config.server.trusted_balancers]


class PortalHandler(RPCHandler):
    """Base of the portal's routes (``initialize(portal, hosted_path=None)``)."""

    SUPPORTED_METHODS = ("GET", "POST")  # type: ignore[assignment]
    portal_identity: Identity = ANONYMOUS
    session: sess.Session | None = None
    secret: str = ""

    def initialize(self, portal: PortalService, hosted_path: str | None = None,  # type: ignore[override]
                   **_: Any) -> None:
        hosted = portal.ctx.hosted.get(hosted_path) if hosted_path else None
        super().initialize(hosted, portal.ctx, balancer_networks(portal))  # type: ignore[arg-type]
        self.portal = portal
        self.portal_identity = ANONYMOUS
        self.session = None
        self.secret = ""

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Content-Security-Policy", CSP.format(extra=""))

    async def blocking(self, func: Callable[..., T], *args: Any, **kw: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.ctx.executor, functools.partial(func, *args, **kw))

    # -- who is asking -----------------------------------------------------------------------

    def chain_identity(self) -> Identity | None:
        """The identity of the certificate presented on this connection (None: none)."""
        chain = self._tls_chain() or self._balancer_chain()
        if not chain:
            return None
        try:
            return self.ctx.authenticator.from_chain(chain)
        except CredentialError:
            return None

    def identify(self) -> Identity:
        return self.portal_identity

    def own_origin(self) -> str:
        return f"{self.request.protocol}://{self.request.host}"

    def check_csrf(self, session: sess.Session) -> None:
        sent = self.request.headers.get(CSRF_HEADER, "")
        if not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            raise CSRFError("this request lacks the page's CSRF token: reload the portal")
        origin = self.request.headers.get("Origin")
        allowed = {self.own_origin()}
        public = self.portal.settings.public_url
        if public:
            parts = urlsplit(public)
            allowed.add(f"{parts.scheme}://{parts.netloc}")
        if origin is not None and origin not in allowed:
            raise CSRFError(f"requests from {origin} are refused")
        site = self.request.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            raise CSRFError("cross-site requests are refused")

    async def begin(self, *, csrf: bool) -> sess.Session:
        """Find the session of the cookie, check CSRF (``csrf``), prove the user again."""
        secret = self.get_cookie(SESSION_COOKIE) or ""
        session = await self.blocking(sess.load_session, self.portal.engine, secret,
                                      idle_seconds=self.portal.settings.idle_seconds)
        if session is None:
            raise NotAuthenticatedError("please sign in to the portal")
        if csrf:
            self.check_csrf(session)
        chain = self.chain_identity() if session.kind == "x509" else None
        self.portal_identity = await self.blocking(session_identity, self.portal, session,
                                                   secret, chain)
        self.session, self.secret = session, secret
        return session

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        """A refusal of a signed-in user is 403 Forbidden, not 401: the RPC wire keeps
        DIRAC's 401 for :class:`NotAuthorizedError`, but a browser's user IS authenticated
        (401 is for a missing or expired session: :class:`NotAuthenticatedError`). The
        envelope is unchanged (same ``ExceptionClass``)."""
        exc_info = kwargs.get("exc_info")
        if status_code == 401 and exc_info and isinstance(exc_info[1], NotAuthorizedError):
            status_code = 403
        super().send_error(status_code, **kwargs)

    def set_session_cookie(self, secret: str) -> None:
        self.set_cookie(SESSION_COOKIE, secret, path="/", secure=True, httponly=True,
                        samesite="Strict",
                        expires_days=self.portal.settings.session_seconds / 86400)

    def clear_session_cookie(self) -> None:
        self.clear_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True,
                          samesite="Strict")

    def reply_json(self, value: Any) -> None:
        from core.rpc.jencode import encode

        self.set_header("Content-Type", "application/json")
        self.finish(encode({"OK": True, "Value": value}))
