"""The HTTP endpoints of the login server (Tornado handlers; routes from ``Framework/Auth``).

===================================  =========================================================
``GET /.well-known/openid-configuration``  discovery (RFC 8414 / OpenID Discovery)
``GET /auth/jwks``                  public signing keys, current and retired-but-trusted
``POST /auth/device``               device authorization (RFC 8628 3.1)
``GET /auth/device/verify``         the user opens this (``user_code``), confirms (POST):
                                    off to the IdP
``GET /auth/authorize``             authorization code + PKCE S256 (web portal)
``GET /auth/callback``              the IdP returns here; the device code or code is granted
``POST /auth/token``                grants: device_code, authorization_code, refresh_token,
                                    ``urn:pilotwms:params:oauth:grant-type:x509-proxy``
``POST /auth/revoke``               RFC 7009
``GET|POST /auth/userinfo``         the bearer's user, group, VO and properties
===================================  =========================================================

Errors are RFC 6749/8628 JSON (``{"error": ..., "error_description": ...}``, HTTP 400, or 401
for ``invalid_client``/``invalid_token``); pages the user sees carry ``id="error"`` elements.
Blocking work (database, the IdP) runs in the server's thread pool.

Example::

    requests.post(f"{base}/auth/device", data={"client_id": "pilotwms-cli",
                                                "scope": "group:demo_user"}).json()
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import html
import json
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import tornado.web
from cryptography import x509 as cx509
from tornado.iostream import SSLIOStream

from core.auth import grants
from core.auth.errors import AuthServerError
from core.auth.idp import begin_signin, signed_in_user, take_signin
from core.exceptions import CredentialError, NotAuthenticatedError, PilotWMSError
from core.security.identity import Identity
from core.security.x509 import identity_from_chain, verified_chain_der

if TYPE_CHECKING:
    from core.auth.service import AuthService

T = TypeVar("T")


class OAuthHandler(tornado.web.RequestHandler):
    def initialize(self, service: AuthService) -> None:
        self.service = service

    @property
    def srv(self) -> grants.AuthServer:
        srv = self.service.server
        assert srv is not None  # noqa: S101 - routes exist only when configured
        return srv

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("Pragma", "no-cache")

    async def blocking(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.service.ctx.executor,
                                          functools.partial(func, *args, **kwargs))

    def arg(self, name: str) -> str | None:
        value = self.get_argument(name, default=None)
        return value if value not in (None, "") else None

    def reply(self, body: dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def client_credentials(self) -> tuple[str | None, str | None]:
        """client_id/secret from HTTP Basic (RFC 6749 2.3.1) or the form."""
        authz = self.request.headers.get("Authorization", "")
        if authz.lower().startswith("basic "):
            try:
                raw = base64.b64decode(authz[6:].strip()).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise AuthServerError("invalid_client", "bad Basic credentials") from None
            cid, _, secret = raw.partition(":")
            return urllib.parse.unquote(cid), urllib.parse.unquote(secret)
        return self.arg("client_id"), self.arg("client_secret")

    def page(self, title: str, text: str, status: int = 200, error: str | None = None) -> None:
        """A plain HTML page for the user's browser (no forms: nothing more to do)."""
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        body = f"<p>{html.escape(text)}</p>"
        if error:
            body = (f'<p id="error">{html.escape(error)}</p>'
                    f'<p id="error_description">{html.escape(text)}</p>')
        self.finish(f"<!doctype html><html><head><title>{html.escape(title)}</title></head>"
                    f"<body><h1>{html.escape(title)}</h1>{body}</body></html>")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        if isinstance(exc, AuthServerError):
            if exc.error == "invalid_token":
                self.set_header("WWW-Authenticate", 'Bearer error="invalid_token"')
            self.reply(exc.body(), exc.status)
        elif isinstance(exc, tornado.web.HTTPError) and status_code < 500:
            self.reply({"error": "invalid_request", "error_description": exc.log_message
                        or self._reason}, status_code)
        else:
            self.reply({"error": "server_error"}, 500)

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, AuthServerError) and not self._finished:
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if not isinstance(value, AuthServerError):
            super().log_exception(typ, value, tb)


class DiscoveryHandler(OAuthHandler):
    def get(self) -> None:
        self.reply(self.service.discovery())


class JWKSHandler(OAuthHandler):
    async def get(self) -> None:
        self.set_header("Cache-Control", "public, max-age=300")
        self.reply(await self.blocking(self.srv.issuer.public_jwks))


#: the device flow's refusal on a server without identity providers (dlogin recognises it)
NO_IDP = ("no identity provider is configured on this server (Auth.Server.IdPs): the device "
          "flow cannot log anyone in")


class DeviceHandler(OAuthHandler):
    async def post(self) -> None:
        client_id, secret = self.client_credentials()
        self.srv.check_client(client_id, secret)
        assert client_id is not None  # noqa: S101 - check_client refuses None
        if not self.srv.settings.idps:  # say so now, not after the user opened the page
            raise AuthServerError("invalid_request", NO_IDP)
        self.reply(await self.blocking(grants.start_device, self.srv, client_id,
                                       self.arg("scope")))


def _choose_vo(srv: grants.AuthServer, scope: str | None) -> str:
    group, vo = grants.check_scope(srv, scope)
    idps = srv.settings.idps
    if vo is None and len(idps) == 1:
        vo = next(iter(idps))
    if vo is None:
        raise AuthServerError("invalid_scope", "name a VO (vo:<name>) or a group (group:<name>)")
    if vo not in idps:
        raise AuthServerError("invalid_request", f"no identity provider configured for VO {vo}")
    return vo


class DeviceVerifyHandler(OAuthHandler):
    """GET without a code: a form to type it. GET with ``user_code``: what is being asked
    (client, scope) and a Continue button (RFC 8628 5.4: the user confirms before signing
    in). POST: off to the VO's identity provider."""

    async def get(self) -> None:
        code = self.arg("user_code")
        self.set_header("Content-Type", "text/html; charset=utf-8")
        if code is None:
            self.finish('<!doctype html><html><body><h1>pilotwms login</h1>'
                        '<form id="user-code-form" method="get"><label>Code '
                        '<input name="user_code" autofocus></label>'
                        '<button type="submit">Continue</button></form></body></html>')
            return
        try:
            row = await self.blocking(grants.pending_device, self.srv, code)
            _choose_vo(self.srv, row["scope"])
        except AuthServerError as exc:
            self.page("Login refused", exc.description, 400, exc.error)
            return
        shown = row["user_code"][:4] + "-" + row["user_code"][4:]
        scope = row["scope"] or "your default group"
        self.finish(
            "<!doctype html><html><body><h1>pilotwms login</h1>"
            f"<p>The program <b>{html.escape(row['client_id'])}</b> asks to act for you with "
            f"<b>{html.escape(scope)}</b> (code {html.escape(shown)}). Continue only if you "
            "started this login yourself.</p>"
            '<form id="device-confirm-form" method="post">'
            f'<input type="hidden" name="user_code" value="{html.escape(shown)}">'
            '<button type="submit">Continue</button></form></body></html>')

    async def post(self) -> None:
        try:
            row = await self.blocking(grants.pending_device, self.srv,
                                      self.arg("user_code") or "")
            vo = _choose_vo(self.srv, row["scope"])
            pending = await self.blocking(begin_signin, self.srv, vo, "device",
                                          row["user_code"])
            url = await self.blocking(self.service.idp(vo).authorization_url, pending)
        except AuthServerError as exc:
            self.page("Login refused", exc.description, 400, exc.error)
            return
        self.redirect(url)


class AuthorizeHandler(OAuthHandler):
    async def get(self) -> None:
        client_id, redirect_uri = self.arg("client_id"), self.arg("redirect_uri")
        try:
            if client_id is None or redirect_uri is None:
                raise AuthServerError("invalid_request", "client_id and redirect_uri are required")
            grants.check_redirect_uri(self.srv, client_id, redirect_uri)
        except AuthServerError as exc:  # never redirect to an unchecked URI
            self.page("Login refused", exc.description, 400, exc.error)
            return
        state = self.arg("state")
        try:
            if self.arg("response_type") != "code":
                raise AuthServerError("unsupported_response_type", "only response_type=code")
            challenge = self.arg("code_challenge")
            if challenge is None or self.arg("code_challenge_method") != "S256":
                raise AuthServerError("invalid_request", "PKCE with code_challenge_method=S256 "
                                      "is required")
            scope = self.arg("scope") or ""
            vo = _choose_vo(self.srv, scope)
            request = {"client_id": client_id, "redirect_uri": redirect_uri, "scope": scope,
                       "code_challenge": challenge, "state": state or ""}
            pending = await self.blocking(begin_signin, self.srv, vo, "authorize",
                                          json.dumps(request))
            url = await self.blocking(self.service.idp(vo).authorization_url, pending)
        except AuthServerError as exc:
            self.redirect(_with_query(redirect_uri, {"error": exc.error, "error_description":
                                                     exc.description, "state": state}))
            return
        self.redirect(url)


def _with_query(uri: str, params: dict[str, str | None]) -> str:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    return f"{uri}{'&' if '?' in uri else '?'}{query}"


class CallbackHandler(OAuthHandler):
    async def get(self) -> None:
        state = self.arg("state")
        if state is None:
            self.page("Login failed", "no state in the callback", 400, "invalid_request")
            return
        try:
            pending = await self.blocking(take_signin, self.srv, state)
        except AuthServerError as exc:
            self.page("Login failed", exc.description, 400, exc.error)
            return
        request = json.loads(pending.ref) if pending.kind == "authorize" else None
        try:
            if self.arg("error"):
                raise AuthServerError("access_denied", self.arg("error_description")
                                      or str(self.arg("error")))
            code = self.arg("code")
            if code is None:
                raise AuthServerError("invalid_request", "no code in the callback")
            idp = self.service.idp(pending.vo)
            who = await self.blocking(idp.finish, code, pending)
            user = signed_in_user(self.srv, who)
            rules = {"idp_groups": who.groups, "rules": idp.conf.group_rules}
            if request is None:
                group = await self.blocking(grants.approve_device, self.srv, pending.ref,
                                            user, None, **rules)
            else:
                code = await self.blocking(grants.issue_code, self.srv, request, user, **rules)
        except AuthServerError as exc:
            if request is not None:
                self.redirect(_with_query(request["redirect_uri"], {
                    "error": exc.error, "error_description": exc.description,
                    "state": request["state"] or None}))
                return
            await self.blocking(grants.deny_device, self.srv, pending.ref)
            self.page("Login refused", exc.description, 403, exc.error)
            return
        if request is not None:
            self.redirect(_with_query(request["redirect_uri"],
                                      {"code": code, "state": request["state"] or None}))
            return
        self.page("Logged in", f"You are logged in to pilotwms as {user} in group {group}. "
                  "You may close this window and return to your terminal.")


class TokenHandler(OAuthHandler):
    async def post(self) -> None:
        client_id, secret = self.client_credentials()
        self.srv.check_client(client_id, secret)
        assert client_id is not None  # noqa: S101 - check_client refuses None
        grant = self.arg("grant_type")
        srv = self.srv
        if grant == grants.DEVICE_GRANT:
            reply = await self.blocking(grants.poll_device, srv, client_id,
                                        self.arg("device_code") or "")
        elif grant == "authorization_code":
            reply = await self.blocking(grants.redeem_code, srv, client_id,
                                        self.arg("code") or "", self.arg("redirect_uri") or "",
                                        self.arg("code_verifier") or "")
        elif grant == "refresh_token":
            reply = await self.blocking(grants.refresh, srv, client_id,
                                        self.arg("refresh_token") or "")
        elif grant == grants.X509_GRANT:
            ident, proxy_group = self._x509_identity()
            reply = await self.blocking(grants.exchange_proxy, srv, client_id, ident,
                                        proxy_group, self.arg("scope"))
        else:
            raise AuthServerError("unsupported_grant_type",
                                  f"grant_type {grant!r} is not supported")
        self.reply(reply)

    def _x509_identity(self) -> tuple[Identity, str | None]:
        stream = getattr(self.request.connection, "stream", None)
        if not isinstance(stream, SSLIOStream):
            raise AuthServerError("invalid_grant", "the proxy exchange needs a TLS connection")
        ders = verified_chain_der(stream.socket)
        if not ders:
            raise AuthServerError("invalid_grant", "present an X509 proxy on the TLS connection")
        chain = [cx509.load_der_x509_certificate(d) for d in ders]
        try:
            group = identity_from_chain(chain).group
            return self.service.ctx.authenticator.from_chain(chain), group
        except CredentialError as exc:
            raise AuthServerError("invalid_grant", str(exc)) from None


class RevokeHandler(OAuthHandler):
    async def post(self) -> None:
        client_id, secret = self.client_credentials()
        self.srv.check_client(client_id, secret)
        assert client_id is not None  # noqa: S101 - check_client refuses None
        token = self.arg("token")
        if token is None:
            raise AuthServerError("invalid_request", "token is required")
        claims = None
        if token.count(".") == 2:
            try:
                claims = self.service.ctx.authenticator.verifier.verify(token)
            except PilotWMSError:
                self.reply({})  # expired, foreign or already revoked: nothing to do
                return
        await self.blocking(grants.revoke, self.srv, client_id, token, claims)
        self.reply({})


class UserInfoHandler(OAuthHandler):
    def _answer(self) -> None:
        authz = self.request.headers.get("Authorization", "")
        scheme, _, token = authz.partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise NotAuthenticatedError("a bearer token is required")
            ident = self.service.ctx.authenticator.from_token(token.strip())
            if not ident.authenticated:
                raise NotAuthenticatedError("the token's user or group is not valid")
        except NotAuthenticatedError as exc:
            raise AuthServerError("invalid_token", exc.message) from None
        conf = self.srv.registry.config.users.get(ident.username or "")
        self.reply({"sub": ident.subject, "preferred_username": ident.username,
                    "group": ident.group, "vo": ident.vo,
                    "properties": sorted(ident.properties), "email": conf.email if conf else None,
                    "expires_in": ident.seconds_left})

    def get(self) -> None:
        self._answer()

    def post(self) -> None:
        self._answer()
