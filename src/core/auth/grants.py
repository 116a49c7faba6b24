"""The grants of the login server: device code (RFC 8628), authorization code with PKCE,
refresh-token rotation with reuse detection, the X509 proxy exchange, and revocation.

Every function takes an :class:`AuthServer` (engine, configuration, token issuer, registry)
and raises :class:`~core.auth.errors.AuthServerError` with the RFC error code on refusal.

Example (a device code approved by hand, as the IdP callback does; ``config`` has
``Auth.Signing`` and ``Auth.Server``, the engine the ``Auth`` schema)::

    srv = AuthServer.from_config(config, engine)
    start = start_device(srv, "pilotwms-cli", "group:demo_user")
    approve_device(srv, start["user_code"], "alice", "group:demo_user")   # 'demo_user'
    poll_device(srv, "pilotwms-cli", start["device_code"])["access_token"]
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from sqlalchemy.engine import Connection, Engine

from core.auth import tables as t
from core.auth.errors import AuthServerError
from core.config.schema import AuthServerConfig, Config, OAuthClientConfig
from core.db import utcnow, write_transaction
from core.security.identity import Identity
from core.security.registry import Registry
from core.security.tokens import LEEWAY, TokenIssuer

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: exchange of the X509 proxy presented on the TLS connection for an access token
X509_GRANT = "urn:pilotwms:params:oauth:grant-type:x509-proxy"
#: the command-line client, public, known without configuration
CLI_CLIENT = "pilotwms-cli"
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # no vowels: no words, no 0/O 1/I confusion


@dataclass
class AuthServer:
    """What the grants need; one per server process (or per CLI/agent run)."""

    engine: Engine
    config: Config
    settings: AuthServerConfig
    issuer: TokenIssuer
    registry: Registry
    #: told about jtis revoked here, so this process refuses them at once
    on_revoke: list[Callable[[list[str]], None]] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: Config, engine: Engine) -> AuthServer:
        if config.auth.signing is None or config.auth.server is None:
            raise AuthServerError("server_error", "Auth.Signing and Auth.Server must be configured")
        return cls(engine, config, config.auth.server, TokenIssuer(config.auth.signing),
                   Registry(config.registry))

    @property
    def base_url(self) -> str:
        assert self.config.auth.signing is not None  # noqa: S101 - checked in from_config
        return self.config.auth.signing.issuer.rstrip("/")

    def client(self, client_id: str) -> OAuthClientConfig:
        conf = self.settings.clients.get(client_id)
        if conf is None and client_id == CLI_CLIENT:
            return OAuthClientConfig()
        if conf is None:
            raise AuthServerError("invalid_client", f"unknown client {client_id!r}")
        return conf

    def check_client(self, client_id: str | None, secret: str | None) -> OAuthClientConfig:
        if not client_id:
            raise AuthServerError("invalid_client", "client_id is required")
        conf = self.client(client_id)
        if conf.secret is not None and not (
                secret is not None and hmac.compare_digest(conf.secret, secret)):
            raise AuthServerError("invalid_client", "client authentication failed")
        return conf

    def revoked(self, jtis: list[str]) -> None:
        for hook in self.on_revoke:
            hook(jtis)


# -- scopes and groups ---------------------------------------------------------------------


def parse_scope(scope: str | None) -> tuple[str | None, str | None]:
    """(group, vo) named by ``group:<g>`` and ``vo:<v>`` in a scope string."""
    group = vo = None
    for item in (scope or "").split():
        if item.startswith("group:"):
            if group is not None and item[6:] != group:
                raise AuthServerError("invalid_scope", "only one group may be requested")
            group = item[6:]
        elif item.startswith("vo:"):
            vo = item[3:]
    return group, vo


def check_scope(srv: AuthServer, scope: str | None) -> tuple[str | None, str | None]:
    """Refuse unknown groups/VOs before anyone signs in; returns (group, vo)."""
    group, vo = parse_scope(scope)
    if group is not None:
        gconf = srv.registry.group(group)
        if gconf is None:
            raise AuthServerError("invalid_scope", f"unknown group {group!r}")
        if vo is not None and gconf.vo != vo:
            raise AuthServerError("invalid_scope", f"group {group} is not in VO {vo}")
        vo = gconf.vo
    if vo is not None and vo not in srv.registry.config.vos:
        raise AuthServerError("invalid_scope", f"unknown VO {vo!r}")
    return group, vo


def resolve_group(srv: AuthServer, username: str, scope: str | None, *,
                  idp_groups: Iterable[str] | None = None,
                  rules: dict[str, str] | None = None) -> str:
    """The group the user gets: the requested one, else the VO's default for them.

    The registry must list the user in it; when ``rules`` (IdP group -> pilotwms group) name
    the group, the IdP must also have asserted a matching IdP group.
    """
    group, vo = check_scope(srv, scope)
    if not srv.registry.has_user(username):
        raise AuthServerError("access_denied", f"{username} is not a registered user")
    if group is None:
        group = srv.registry.default_group(username, vo)
        if group is None:
            raise AuthServerError("access_denied", f"{username} has no group"
                                  + (f" in VO {vo}" if vo else ""))
    if not srv.registry.is_member(username, group):
        raise AuthServerError("invalid_scope", f"{username} is not a member of group {group}")
    if rules and group in rules.values():
        granted = {rules[g] for g in (idp_groups or ()) if g in rules}
        if group not in granted:
            raise AuthServerError("access_denied",
                                  f"the identity provider does not put {username} in group {group}")
    return group


# -- tokens ----------------------------------------------------------------------------------


def mint_access_token(srv: AuthServer, username: str, group: str, *, lifetime: int,
                      client_id: str, extra: dict[str, Any] | None = None
                      ) -> tuple[str, str, int]:
    """(token, jti, exp) for a registry user acting in ``group``."""
    gconf = srv.registry.group(group)
    if gconf is None:
        raise AuthServerError("invalid_scope", f"unknown group {group!r}")
    jti = uuid.uuid4().hex
    exp = int(utcnow().timestamp()) + lifetime
    token = srv.issuer.issue(username, group=group, vo=gconf.vo, lifetime=lifetime,
                             extra_claims={"jti": jti, "properties": sorted(gconf.properties),
                                           "client_id": client_id, **(extra or {})})
    return token, jti, exp


def _issue(srv: AuthServer, conn: Connection, username: str, group: str, client_id: str,
           *, family: str | None = None, refresh: bool = True) -> dict[str, Any]:
    lifetime = srv.settings.access_token_lifetime
    token, jti, exp = mint_access_token(srv, username, group, lifetime=lifetime,
                                        client_id=client_id)
    gconf = srv.registry.group(group)
    assert gconf is not None  # noqa: S101 - checked by mint_access_token
    reply: dict[str, Any] = {"access_token": token, "token_type": "Bearer",
                             "expires_in": lifetime, "scope": f"vo:{gconf.vo} group:{group}"}
    if refresh:
        secret = secrets.token_urlsafe(32)
        now = utcnow()
        conn.execute(sa.insert(t.refresh_tokens).values(
            token_hash=t.secret_hash(secret), family=family or uuid.uuid4().hex,
            client_id=client_id, username=username, group_name=group, scope=reply["scope"],
            access_jti=jti, access_expires=now + timedelta(seconds=lifetime + LEEWAY),
            status="active", created=now,
            expires=now + timedelta(seconds=srv.settings.refresh_token_lifetime)))
        reply["refresh_token"] = secret
    return reply


# -- device flow (RFC 8628) ------------------------------------------------------------------


def normalise_user_code(code: str) -> str:
    return "".join(c for c in code.upper() if c.isalpha())


def start_device(srv: AuthServer, client_id: str, scope: str | None) -> dict[str, Any]:
    """The device authorization response (device_code, user_code, verification URIs...)."""
    srv.client(client_id)
    check_scope(srv, scope)
    device_code = secrets.token_urlsafe(32)
    user_code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
    now = utcnow()
    life = srv.settings.device_code_lifetime
    with write_transaction(srv.engine) as conn:
        conn.execute(sa.insert(t.device_codes).values(
            code_hash=t.secret_hash(device_code), user_code=user_code, client_id=client_id,
            scope=scope or "", status="pending", created=now,
            expires=now + timedelta(seconds=life), poll_interval=srv.settings.poll_interval))
    shown = f"{user_code[:4]}-{user_code[4:]}"
    verify = f"{srv.base_url}/auth/device/verify"
    return {"device_code": device_code, "user_code": shown, "verification_uri": verify,
            "verification_uri_complete": f"{verify}?user_code={shown}",
            "expires_in": life, "interval": srv.settings.poll_interval}


def pending_device(srv: AuthServer, user_code: str) -> dict[str, Any]:
    """The pending request of a user code (scope, client); refused when unknown or over."""
    code = normalise_user_code(user_code)
    with srv.engine.connect() as conn:
        row = conn.execute(sa.select(t.device_codes).where(
            t.device_codes.c.user_code == code)).mappings().first()
    if row is None or row["status"] != "pending":
        raise AuthServerError("invalid_request", "unknown or already used code")
    if row["expires"] < utcnow():
        raise AuthServerError("expired_token", "this code has expired: start again")
    return dict(row)


def approve_device(srv: AuthServer, user_code: str, username: str, scope: str | None,
                   **group_rules: Any) -> str:
    """Approve a pending device code for ``username``; returns the group granted."""
    row = pending_device(srv, user_code)
    group = resolve_group(srv, username, scope or row["scope"], **group_rules)
    with write_transaction(srv.engine) as conn:
        done = conn.execute(sa.update(t.device_codes).where(
            t.device_codes.c.code_hash == row["code_hash"],
            t.device_codes.c.status == "pending").values(
                status="approved", username=username, group_name=group)).rowcount
    if not done:
        raise AuthServerError("invalid_request", "the code was answered meanwhile")
    return group


def deny_device(srv: AuthServer, user_code: str) -> None:
    code = normalise_user_code(user_code)
    with write_transaction(srv.engine) as conn:
        conn.execute(sa.update(t.device_codes).where(
            t.device_codes.c.user_code == code, t.device_codes.c.status == "pending"
        ).values(status="denied"))


def poll_device(srv: AuthServer, client_id: str, device_code: str) -> dict[str, Any]:
    """The token response once approved; RFC 8628 errors until then."""
    now = utcnow()
    error: AuthServerError | None = None
    with write_transaction(srv.engine) as conn:
        row = conn.execute(sa.select(t.device_codes).where(
            t.device_codes.c.code_hash == t.secret_hash(device_code))).mappings().first()
        if row is None or row["client_id"] != client_id:
            raise AuthServerError("invalid_grant", "unknown device code")
        if row["status"] == "done":
            raise AuthServerError("invalid_grant", "this device code was already used")
        if row["expires"] < now:
            raise AuthServerError("expired_token", "the device code has expired")
        if row["status"] == "denied":
            raise AuthServerError("access_denied", "the user refused, or may not log in")
        where = t.device_codes.c.code_hash == row["code_hash"]
        if row["status"] != "pending":
            conn.execute(sa.update(t.device_codes).where(where).values(status="done"))
            return _issue(srv, conn, row["username"], row["group_name"], client_id)
        # pending: the poll time is recorded (committed), then the error is raised
        last, interval = row["last_poll"], row["poll_interval"]
        if last is not None and (now - last).total_seconds() < interval:
            # RFC 8628 3.5: slow down, and the interval grows by 5 seconds
            interval += 5
            error = AuthServerError("slow_down", f"poll every {interval} seconds")
        else:
            error = AuthServerError("authorization_pending", "the user has not answered yet")
        conn.execute(sa.update(t.device_codes).where(where).values(
            last_poll=now, poll_interval=interval))
    raise error


# -- authorization code + PKCE ---------------------------------------------------------------


def check_redirect_uri(srv: AuthServer, client_id: str, redirect_uri: str) -> None:
    """Registered URIs, or any loopback http URI (RFC 8252 native apps)."""
    conf = srv.client(client_id)
    if redirect_uri in conf.redirect_uris:
        return
    from urllib.parse import urlsplit

    parts = urlsplit(redirect_uri)
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost"):
        return
    raise AuthServerError("invalid_request", f"redirect_uri {redirect_uri!r} is not registered")


def issue_code(srv: AuthServer, request: dict[str, str], username: str, **rules: Any) -> str:
    """After sign-in: the one-time code for an /auth/authorize request (a dict of its
    parameters, checked when it arrived)."""
    group = resolve_group(srv, username, request.get("scope"), **rules)
    code = secrets.token_urlsafe(32)
    with write_transaction(srv.engine) as conn:
        conn.execute(sa.insert(t.auth_codes).values(
            code_hash=t.secret_hash(code), client_id=request["client_id"],
            redirect_uri=request["redirect_uri"], code_challenge=request["code_challenge"],
            scope=request.get("scope", ""), username=username, group_name=group,
            expires=utcnow() + timedelta(seconds=60), used=False))
    return code


def redeem_code(srv: AuthServer, client_id: str, code: str, redirect_uri: str,
                code_verifier: str) -> dict[str, Any]:
    with write_transaction(srv.engine) as conn:
        row = conn.execute(sa.select(t.auth_codes).where(
            t.auth_codes.c.code_hash == t.secret_hash(code))).mappings().first()
        if row is None or row["client_id"] != client_id or row["used"]:
            raise AuthServerError("invalid_grant", "unknown or used authorization code")
        # spent by any attempt, good or bad (committed before an error is raised)
        conn.execute(sa.update(t.auth_codes).where(
            t.auth_codes.c.code_hash == row["code_hash"]).values(used=True))
        error = None
        if row["expires"] < utcnow():
            error = AuthServerError("invalid_grant", "the authorization code has expired")
        elif row["redirect_uri"] != redirect_uri:
            error = AuthServerError("invalid_grant", "redirect_uri does not match")
        elif not code_verifier or not hmac.compare_digest(
                create_s256_code_challenge(code_verifier), row["code_challenge"]):
            error = AuthServerError("invalid_grant", "PKCE verification failed")
        else:
            return _issue(srv, conn, row["username"], row["group_name"], client_id)
    raise error


# -- refresh tokens: rotation, reuse detection ---------------------------------------------


def _revoke_family(srv: AuthServer, conn: Connection, family: str) -> list[str]:
    rows = conn.execute(sa.select(t.refresh_tokens.c.access_jti,
                                  t.refresh_tokens.c.access_expires).where(
        t.refresh_tokens.c.family == family)).all()
    now = utcnow()
    live = [(jti, exp) for jti, exp in rows if exp > now]
    conn.execute(sa.update(t.refresh_tokens).where(
        t.refresh_tokens.c.family == family).values(status="revoked"))
    t.revoke_jtis(conn, live, now)
    return [jti for jti, _ in live]


def refresh(srv: AuthServer, client_id: str, token: str) -> dict[str, Any]:
    """A new access and refresh token; the presented one is spent. Presenting a spent one
    again revokes its whole family (every refresh token and their access tokens)."""
    revoked: list[str] = []
    error: AuthServerError | None = None
    with write_transaction(srv.engine) as conn:
        row = conn.execute(sa.select(t.refresh_tokens).where(
            t.refresh_tokens.c.token_hash == t.secret_hash(token))).mappings().first()
        if row is None or row["client_id"] != client_id:
            raise AuthServerError("invalid_grant", "unknown refresh token")
        if row["status"] == "rotated":
            revoked = _revoke_family(srv, conn, row["family"])
            error = AuthServerError("invalid_grant",
                                    "refresh token reused: the whole session is revoked")
        elif row["status"] != "active":
            raise AuthServerError("invalid_grant", "refresh token revoked")
        elif row["expires"] < utcnow():
            raise AuthServerError("invalid_grant", "refresh token expired")
        else:
            user, group = row["username"], row["group_name"]
            if not (srv.registry.has_user(user) and srv.registry.is_member(user, group)):
                revoked = _revoke_family(srv, conn, row["family"])
                error = AuthServerError("invalid_grant", f"{user} may no longer act in {group}")
            else:
                spent = conn.execute(sa.update(t.refresh_tokens).where(
                    t.refresh_tokens.c.token_hash == row["token_hash"],
                    t.refresh_tokens.c.status == "active").values(status="rotated")).rowcount
                if not spent:
                    raise AuthServerError("invalid_grant", "refresh token already used")
                return _issue(srv, conn, user, group, client_id, family=row["family"])
    srv.revoked(revoked)
    assert error is not None  # noqa: S101 - every other path returned or raised
    raise error


# -- X509 proxy exchange ---------------------------------------------------------------------


def exchange_proxy(srv: AuthServer, client_id: str, ident: Identity, proxy_group: str | None,
                   scope: str | None) -> dict[str, Any]:
    """An access token (no refresh token: the proxy is the long-lived credential) for the
    user of a verified X509 chain (``ident``). The group is ``proxy_group`` (the proxy's DIRAC
    extension), else the one in ``scope``, else the user's default; a limited proxy is
    refused."""
    if ident.auth_method != "x509" or ident.dn is None:
        raise AuthServerError("invalid_grant", "present an X509 proxy on the TLS connection")
    if ident.is_host or not ident.valid_dn or ident.username is None:
        raise AuthServerError("invalid_grant", f"{ident.dn} is not a registered user")
    if ident.is_limited_proxy:
        raise AuthServerError("invalid_grant", "a limited proxy cannot be exchanged for a token")
    wanted, _vo = check_scope(srv, scope)
    if proxy_group and wanted and proxy_group != wanted:
        raise AuthServerError("invalid_scope",
                              f"the proxy is for group {proxy_group}, not {wanted}")
    chosen = proxy_group or wanted
    group = resolve_group(srv, ident.username, f"group:{chosen}" if chosen else scope)
    with write_transaction(srv.engine) as conn:
        return _issue(srv, conn, ident.username, group, client_id, refresh=False)


# -- revocation (RFC 7009) -------------------------------------------------------------------


def revoke(srv: AuthServer, client_id: str, token: str, claims: dict[str, Any] | None) -> None:
    """Revoke an access token (``claims``: its verified claims) or a refresh token (its
    whole family). Unknown tokens are ignored, as RFC 7009 asks."""
    revoked: list[str] = []
    with write_transaction(srv.engine) as conn:
        if claims is not None:
            jti, exp = claims.get("jti"), claims.get("exp")
            if isinstance(jti, str) and isinstance(exp, int):
                expires = t.from_timestamp(exp + LEEWAY)
                t.revoke_jtis(conn, [(jti, expires)], utcnow())
                revoked = [jti]
        else:
            row = conn.execute(sa.select(t.refresh_tokens.c.family).where(
                t.refresh_tokens.c.token_hash == t.secret_hash(token))).first()
            if row is not None:
                revoked = _revoke_family(srv, conn, row[0])
    srv.revoked(revoked)
