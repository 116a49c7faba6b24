"""The page, its assets, and signing in and out.

* ``GET /portal/``: the page (a small HTML shell; never cached, so a new release is picked up
  at once); assets are referenced with a content hash (``?v=``) and cached for a year. An
  import map gives every JavaScript module its hashed URL, so modules importing each other
  are cached the same way. The Content-Security-Policy allows the page's own files and the
  import map (by its hash) only.
* ``GET /portal/login[?group=G&next=#/view]``: authorization code flow with PKCE through the
  login server (``<issuer>/auth/authorize``); ``GET /portal/login/callback`` redeems the code.
* ``GET /portal/login/certificate[?group=G]``: a session for the browser's certificate.
* ``POST /portal/api/logout``: ends the session (its refresh token is revoked).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import secrets
import urllib.parse
from pathlib import Path
from typing import Any

import tornado.web
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from core.auth import grants
from core.auth.errors import AuthServerError
from core.exceptions import NotAuthenticatedError, PilotWMSError
from portal.handlers.base import CSP, LOGIN_COOKIE, PortalHandler
from portal.logic import sessions as sess
from portal.logic.identity import certificate_user, token_reply

STATIC = Path(__file__).resolve().parent.parent / "static"
PREFIX = "/portal"
#: modules every first load needs (the shell, its helpers, the default view)
PRELOAD = ("js/app.js", "js/api.js", "js/dom.js", "js/jobs.js")
#: one year: assets are addressed by their content hash
ASSET_SECONDS = 365 * 86400


@functools.cache
def asset_versions() -> dict[str, str]:
    """Asset path (relative to static/) -> content hash, read once per process."""
    return {str(p.relative_to(STATIC)): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
            for p in sorted(STATIC.rglob("*")) if p.is_file()}


class Shell:
    """The HTML shell with hashed asset URLs, built once per process."""

    def __init__(self) -> None:
        self.versions = asset_versions()
        modules = [name for name in self.versions
                   if name.startswith("js/") and name.endswith(".js")]
        imports = {f"{PREFIX}/static/{m}": self.url(m) for m in modules}
        importmap = json.dumps({"imports": imports}, separators=(",", ":"), sort_keys=True)
        digest = base64.b64encode(hashlib.sha256(importmap.encode()).digest()).decode()
        self.csp = CSP.format(extra=f" 'sha256-{digest}'")
        # the modules of the first view (the job monitor); the others load when opened
        preload = "".join(f'<link rel="modulepreload" href="{self.url(m)}">' for m in modules
                          if m in PRELOAD)
        template = (STATIC / "index.html").read_text()
        self.html = (template.replace("{{importmap}}", importmap)
                     .replace("{{preload}}", preload)
                     .replace("{{css}}", self.url("css/portal.css"))
                     .replace("{{chartcss}}", self.url("css/uPlot.min.css"))
                     .replace("{{icon}}", self.url("icon.svg"))
                     .replace("{{app}}", self.url("js/app.js")))

    def url(self, name: str) -> str:
        return f"{PREFIX}/static/{name}?v={self.versions[name]}"


class IndexHandler(PortalHandler):
    SUPPORTED_METHODS = ("GET",)  # type: ignore[assignment]
    shells: dict[int, Shell] = {}

    def get(self) -> None:
        shell = self.shells.get(id(self.portal))
        if shell is None:
            shell = self.shells[id(self.portal)] = Shell()
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("Content-Security-Policy", shell.csp)
        self.finish(shell.html)


class StaticHandler(tornado.web.StaticFileHandler):
    """Assets: a year of caching when asked with the current hash, else revalidation (ETag)."""

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")

    def get_cache_time(self, path: str, modified: Any, mime_type: str) -> int:
        wanted = self.get_argument("v", None)
        current = asset_versions().get(path) if wanted else None
        return ASSET_SECONDS if wanted and wanted == current else 0

    def set_extra_headers(self, path: str) -> None:
        if self.get_cache_time(path, None, "") > 0:
            self.set_header("Cache-Control", f"public, max-age={ASSET_SECONDS}, immutable")
        else:
            self.set_header("Cache-Control", "no-cache")


def _local_path(value: str | None) -> str:
    """Only a fragment of the portal itself (``#/...``) may be a place to come back to."""
    if value and value.startswith("#/") and len(value) < 400:
        return value
    return "#/jobs"


def _login_page(message: str, next_path: str = "#/jobs") -> str:
    query = urllib.parse.urlencode({"error": message})
    return f"{PREFIX}/?{query}{_local_path(next_path)}"


class LoginHandler(PortalHandler):
    """Start the authorization code flow (PKCE S256) at the login server."""

    SUPPORTED_METHODS = ("GET",)  # type: ignore[assignment]

    async def get(self) -> None:
        next_path = _local_path(self.get_argument("next", None))
        portal = self.portal
        if not portal.token_login:
            self.redirect(_login_page("sign-in through the login server is not configured "
                                      "here: use your certificate", next_path))
            return
        group = self.get_argument("group", None) or portal.settings.login_group or ""
        browser = sess.new_secret()
        verifier = secrets.token_urlsafe(48)
        state = await self.blocking(sess.start_login, portal.engine, browser, verifier, group,
                                    next_path)
        self.set_cookie(LOGIN_COOKIE, browser, path="/", secure=True, httponly=True,
                        samesite="Lax", max_age=sess.LOGIN_SECONDS)
        base = portal.public_url(self.own_origin())
        query = {"response_type": "code", "client_id": portal.settings.client_id,
                 "redirect_uri": f"{base}{PREFIX}/login/callback", "state": state,
                 "code_challenge": create_s256_code_challenge(verifier),
                 "code_challenge_method": "S256"}
        if group:
            query["scope"] = f"group:{group}"
        self.redirect(f"{base}/auth/authorize?{urllib.parse.urlencode(query)}")


class CallbackHandler(PortalHandler):
    """The login server sends the browser back here with a code (or an error)."""

    SUPPORTED_METHODS = ("GET",)  # type: ignore[assignment]

    async def get(self) -> None:
        portal = self.portal
        state = self.get_argument("state", "")
        browser = self.get_cookie(LOGIN_COOKIE) or ""
        self.clear_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="Lax")
        login = await self.blocking(sess.take_login, portal.engine, state, browser)
        if login is None:
            self.redirect(_login_page("this sign-in expired or was started in another "
                                      "browser: please sign in again"))
            return
        next_path = login["next_path"]
        error = self.get_argument("error", None)
        if error:
            text = self.get_argument("error_description", None) or error
            self.redirect(_login_page(f"sign-in refused: {text}", next_path))
            return
        try:
            tokens = await self.blocking(self._redeem, self.get_argument("code", ""),
                                         login["verifier"])
        except (AuthServerError, PilotWMSError) as exc:
            text = exc.description if isinstance(exc, AuthServerError) else exc.message
            self.redirect(_login_page(f"sign-in failed: {text}", next_path))
            return
        ident = self.ctx.authenticator.from_token(tokens["access"])
        await self._replace_session()
        secret, _session = await self.blocking(
            sess.create_session, portal.engine, portal.settings.session_seconds, kind="token",
            username=ident.username or "", group=ident.group or "", dn=ident.dn or "",
            tokens=tokens)
        self.set_session_cookie(secret)
        self.redirect(f"{PREFIX}/{next_path}")

    def _redeem(self, code: str, verifier: str) -> dict[str, Any]:
        portal = self.portal
        srv = portal.auth_server()
        settings = portal.settings
        srv.check_client(settings.client_id, settings.client_secret)
        base = portal.public_url(self.own_origin())
        reply = grants.redeem_code(srv, settings.client_id, code,
                                   f"{base}{PREFIX}/login/callback", verifier)
        return token_reply(reply)

    async def _replace_session(self) -> None:
        old = self.get_cookie("__Host-pwms_session")
        if old:
            await self.blocking(sess.delete_session, self.portal.engine, sess.digest(old))


class CertificateLoginHandler(PortalHandler):
    """A session for the certificate the browser presents (the group: asked, else default)."""

    SUPPORTED_METHODS = ("GET",)  # type: ignore[assignment]

    async def get(self) -> None:
        portal = self.portal
        next_path = _local_path(self.get_argument("next", None))
        if not portal.settings.certificate_login:
            self.redirect(_login_page("certificate sign-in is disabled here", next_path))
            return
        try:
            user = certificate_user(self.chain_identity())
            group = self.get_argument("group", None) or portal.settings.login_group
            ident = self.ctx.authenticator.for_user(user.username, dn=user.dn, group=group,
                                                    auth_method="x509")
            if not ident.authenticated:
                raise NotAuthenticatedError(f"{user.username} is not a member of group "
                                            f"{ident.group}")
        except NotAuthenticatedError as exc:
            self.redirect(_login_page(exc.message, next_path))
            return
        old = self.get_cookie("__Host-pwms_session")
        if old:
            await self.blocking(sess.delete_session, portal.engine, sess.digest(old))
        secret, _session = await self.blocking(
            sess.create_session, portal.engine, portal.settings.session_seconds, kind="x509",
            username=ident.username or "", group=ident.group or "", dn=ident.dn or "")
        self.set_session_cookie(secret)
        self.redirect(f"{PREFIX}/{next_path}")


class LogoutHandler(PortalHandler):
    SUPPORTED_METHODS = ("POST",)  # type: ignore[assignment]

    async def post(self) -> None:
        secret = self.get_cookie("__Host-pwms_session") or ""
        session = await self.blocking(sess.load_session, self.portal.engine, secret,
                                      idle_seconds=self.portal.settings.idle_seconds)
        if session is not None:
            self.check_csrf(session)
            await self.blocking(self._end, session)
        self.clear_session_cookie()
        self.reply_json(True)

    def _end(self, session: sess.Session) -> None:
        portal = self.portal
        sess.delete_session(portal.engine, session.key)
        refresh = (session.tokens or {}).get("refresh")
        if refresh and portal.token_login:
            try:  # the whole sign-in (refresh family and its access tokens) ends
                grants.revoke(portal.auth_server(), portal.settings.client_id, refresh, None)
            except AuthServerError:
                pass
