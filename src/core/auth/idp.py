"""Signing users in at their VO's external OpenID Connect provider.

pilotwms is not an identity provider: ``/auth/device/verify`` and ``/auth/authorize`` send the
user's browser to the VO's IdP (``Auth.Server.IdPs.<VO>``) with an authorization-code request
(PKCE S256, ``state``, ``nonce``); ``/auth/callback`` redeems the code there (Authlib's
``OAuth2Session``), verifies the ID token (signature by the IdP's JWKS, issuer, audience,
expiry, nonce), reads the groups claim (ID token, else userinfo) and finds the registry user by
``Users.<u>.TokenSubjects`` (issuer, sub).

Blocking (HTTP to the IdP): call from a thread pool. Discovery and JWKS are cached one hour.

Example::

    client = IdPClient("demo", config.auth.server.idps["demo"],
                       "https://wms.example.org/auth/callback")
    pending = begin_signin(srv, "demo", "device", "BCDF-GHJK")
    url = client.authorization_url(pending)         # send the browser there
    ...                                             # the IdP calls back with code & state
    who = client.finish(code, take_signin(srv, state))
    who.subject, who.groups
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import requests
import sqlalchemy as sa
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from core.auth import tables as t
from core.auth.errors import AuthServerError
from core.auth.grants import AuthServer
from core.config.schema import IdPConfig
from core.db import utcnow, write_transaction
from core.security.tokens import LEEWAY

#: how long a user may take at the IdP, in seconds
SIGNIN_LIFETIME = 900
CACHE_SECONDS = 3600


@dataclass(frozen=True)
class PendingSignIn:
    state: str
    nonce: str
    code_verifier: str
    vo: str
    kind: str
    ref: str


@dataclass(frozen=True)
class SignedIn:
    issuer: str
    subject: str
    groups: list[str]
    claims: dict[str, Any]


def begin_signin(srv: AuthServer, vo: str, kind: str, ref: str) -> PendingSignIn:
    """Remember a sign-in about to start at ``vo``'s IdP (``kind``: device or authorize)."""
    pending = PendingSignIn(secrets.token_urlsafe(24), secrets.token_urlsafe(24),
                            secrets.token_urlsafe(48), vo, kind, ref)
    with write_transaction(srv.engine) as conn:
        conn.execute(sa.insert(t.login_sessions).values(
            state=pending.state, nonce=pending.nonce, code_verifier=pending.code_verifier,
            vo=vo, kind=kind, ref=ref,
            expires=utcnow() + timedelta(seconds=SIGNIN_LIFETIME)))
    return pending


def take_signin(srv: AuthServer, state: str) -> PendingSignIn:
    """The sign-in a callback's ``state`` belongs to; usable once."""
    with write_transaction(srv.engine) as conn:
        row = conn.execute(sa.select(t.login_sessions).where(
            t.login_sessions.c.state == state)).mappings().first()
        if row is None:
            raise AuthServerError("invalid_request", "unknown or already used state")
        conn.execute(sa.delete(t.login_sessions).where(t.login_sessions.c.state == state))
    if row["expires"] < utcnow():
        raise AuthServerError("invalid_request", "the sign-in took too long: start again")
    return PendingSignIn(row["state"], row["nonce"], row["code_verifier"], row["vo"],
                         row["kind"], row["ref"])


class IdPClient:
    """One VO's IdP, as seen by pilotwms (a confidential or public OIDC client)."""

    def __init__(self, vo: str, conf: IdPConfig, redirect_uri: str,
                 timeout: float = 15.0) -> None:
        self.vo = vo
        self.conf = conf
        self.redirect_uri = redirect_uri
        self.timeout = timeout
        self._meta: tuple[float, dict[str, Any]] | None = None
        self._jwks: tuple[float, KeySet] | None = None

    def _get(self, url: str) -> dict[str, Any]:
        try:
            reply = requests.get(url, timeout=self.timeout)
            reply.raise_for_status()
            data = reply.json()
        except (requests.RequestException, ValueError) as exc:
            raise AuthServerError("temporarily_unavailable",
                                  f"identity provider of {self.vo} unreachable: {exc}",
                                  status=503) from None
        if not isinstance(data, dict):
            raise AuthServerError("server_error", f"{url} did not return a JSON object")
        return data

    def metadata(self) -> dict[str, Any]:
        if self._meta is None or time.monotonic() - self._meta[0] > CACHE_SECONDS:
            url = self.conf.issuer.rstrip("/") + "/.well-known/openid-configuration"
            self._meta = (time.monotonic(), self._get(url))
        return self._meta[1]

    def _keys(self, refresh: bool = False) -> KeySet:
        if refresh or self._jwks is None or time.monotonic() - self._jwks[0] > CACHE_SECONDS:
            data = self._get(str(self.metadata()["jwks_uri"]))
            self._jwks = (time.monotonic(), KeySet.import_key_set(data))  # type: ignore[arg-type]
        return self._jwks[1]

    def _session(self) -> OAuth2Session:
        return OAuth2Session(self.conf.client_id, self.conf.client_secret,
                             scope=" ".join(self.conf.scopes), redirect_uri=self.redirect_uri,
                             token_endpoint_auth_method=(
                                 "client_secret_basic" if self.conf.client_secret else "none"),
                             default_timeout=self.timeout)

    def authorization_url(self, pending: PendingSignIn) -> str:
        url, _state = self._session().create_authorization_url(
            str(self.metadata()["authorization_endpoint"]), state=pending.state,
            nonce=pending.nonce, code_challenge=create_s256_code_challenge(
                pending.code_verifier), code_challenge_method="S256")
        return str(url)

    def finish(self, code: str, pending: PendingSignIn) -> SignedIn:
        """Redeem ``code``, verify the ID token; who signed in and their IdP groups."""
        meta = self.metadata()
        session = self._session()
        try:
            token = session.fetch_token(str(meta["token_endpoint"]), code=code,
                                        code_verifier=pending.code_verifier)
        except Exception as exc:  # noqa: BLE001 - authlib raises several unrelated types
            raise AuthServerError("access_denied", f"the identity provider refused the code: {exc}"
                                  ) from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise AuthServerError("access_denied", "the identity provider sent no ID token")
        claims = self._verify_id_token(id_token, pending.nonce)
        groups = claims.get(self.conf.groups_claim)
        if groups is None and meta.get("userinfo_endpoint"):
            info = session.get(str(meta["userinfo_endpoint"]), timeout=self.timeout)
            if info.ok:
                data = info.json()
                if data.get("sub") == claims["sub"]:
                    groups = data.get(self.conf.groups_claim)
        if isinstance(groups, str):
            groups = [groups]
        return SignedIn(str(claims["iss"]), str(claims["sub"]),
                        [str(g) for g in groups or []], claims)

    def _verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        try:
            try:
                decoded = jwt.decode(id_token, self._keys())
            except JoseError:
                decoded = jwt.decode(id_token, self._keys(refresh=True))  # rotated IdP key
            registry = jwt.JWTClaimsRegistry(
                leeway=LEEWAY, exp={"essential": True}, sub={"essential": True},
                iss={"essential": True, "value": self.conf.issuer.rstrip("/")},
                aud={"essential": True, "value": self.conf.client_id},
                nonce={"essential": True, "value": nonce})
            registry.validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise AuthServerError("access_denied", f"ID token refused: {exc}") from None
        return dict(decoded.claims)


def signed_in_user(srv: AuthServer, who: SignedIn) -> str:
    """The registry user of an IdP identity (``Users.<u>.TokenSubjects``)."""
    user = srv.registry.user_for_subject(who.issuer, who.subject)
    if user is None:
        raise AuthServerError("access_denied",
                              f"{who.subject} at {who.issuer} is not registered in pilotwms")
    return user
