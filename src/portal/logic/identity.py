"""Who a portal request acts as: the session's user, proven again at every request.

* ``token`` sessions: the access token the login server issued to this browser's sign-in
  (verified like any bearer token: signature, issuer, audience, expiry, revocation list). It is
  refreshed through the login server's refresh grant a while before it expires; one request
  per session refreshes (a claim in the session row) while the others keep using the old,
  still valid, token, because the login server revokes a whole sign-in when a refresh token
  is presented twice.
* ``x509`` sessions: the certificate the browser presents on the TLS connection of *this*
  request (its DN must be the session's), acting in the group the user chose among theirs,
  as a proxy carrying that group would.

Example (see tests/portal/test_sessions.py)::

    ident = session_identity(portal, session, secret, chain_identity)
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from core.auth import grants
from core.auth.errors import AuthServerError
from core.db import utcnow
from core.exceptions import NotAuthenticatedError
from core.security.identity import Identity
from portal.logic import sessions as sess

if TYPE_CHECKING:
    from portal.service import PortalService

#: waiting for another request's refresh of the same session, at most (seconds)
REFRESH_WAIT = 10.0


def token_reply(reply: dict[str, Any]) -> dict[str, Any]:
    """What a session keeps of a token response."""
    lifetime = int(reply.get("expires_in", 0))
    return {"access": reply["access_token"], "refresh": reply.get("refresh_token"),
            "expires": int(utcnow().timestamp()) + lifetime, "lifetime": lifetime}


def _margin(tokens: dict[str, Any]) -> int:
    # refresh in the last quarter of the token's life, and at least a minute before its end
    return max(60, int(tokens.get("lifetime", 1200)) // 4)


def _refreshed(portal: PortalService, session: sess.Session, secret: str) -> dict[str, Any]:
    tokens = session.tokens or {}
    left = int(tokens.get("expires", 0)) - int(utcnow().timestamp())
    if left > _margin(tokens) or not tokens.get("refresh"):
        if left <= 0:
            raise NotAuthenticatedError("your portal session has expired: please sign in again")
        return tokens
    engine = portal.engine
    if sess.claim_refresh(engine, session):
        try:
            reply = grants.refresh(portal.auth_server(), portal.settings.client_id,
                                   tokens["refresh"])
        except AuthServerError as exc:
            sess.release_refresh(engine, session)
            if left <= 0:
                sess.delete_session(engine, session.key)
                raise NotAuthenticatedError(
                    f"your sign-in ended ({exc.description}): please sign in again") from None
            return tokens
        fresh = token_reply(reply)
        sess.update_session(engine, session, secret, tokens=fresh)
        return fresh
    again = sess.load_session(engine, secret, idle_seconds=portal.settings.idle_seconds)
    if again is not None and again.tokens and again.tokens.get("access") != tokens.get("access"):
        session.tokens, session.sealed = again.tokens, again.sealed
        return again.tokens  # refreshed by another request meanwhile
    if left > 5:
        return tokens  # another request is refreshing; this token is still good
    deadline = time.monotonic() + REFRESH_WAIT
    while time.monotonic() < deadline:
        time.sleep(0.2)
        again = sess.load_session(engine, secret, idle_seconds=portal.settings.idle_seconds)
        if again is None:
            break
        if again.tokens and again.tokens.get("access") != tokens.get("access"):
            session.tokens, session.sealed = again.tokens, again.sealed
            return again.tokens
    raise NotAuthenticatedError("your portal session has expired: please sign in again")


def session_identity(portal: PortalService, session: sess.Session, secret: str,
                     chain_identity: Identity | None) -> Identity:
    """The identity this request acts with (blocking: may refresh tokens)."""
    auth = portal.ctx.authenticator
    if session.kind == "x509":
        if chain_identity is None or chain_identity.dn != session.dn:
            raise NotAuthenticatedError(
                "this session belongs to a browser certificate that was not presented")
        ident = auth.for_user(
            session.username, dn=session.dn, group=session.group, auth_method="x509",
            identity=chain_identity.identity, subject=chain_identity.subject,
            issuer=chain_identity.issuer, is_proxy=chain_identity.is_proxy,
            seconds_left=chain_identity.seconds_left)
    else:
        tokens = _refreshed(portal, session, secret)
        ident = auth.from_token(str(tokens.get("access", "")))
    if not ident.authenticated:
        raise NotAuthenticatedError(
            f"{session.username} may no longer act in group {session.group}")
    return ident


def certificate_user(chain_identity: Identity | None) -> Identity:
    """The registry user of a browser certificate, checked for a portal sign-in."""
    if chain_identity is None:
        raise NotAuthenticatedError("your browser presented no certificate")
    if chain_identity.is_host:
        raise NotAuthenticatedError("host certificates cannot sign in to the portal")
    if chain_identity.is_limited_proxy:
        raise NotAuthenticatedError("a limited proxy cannot sign in to the portal")
    if not chain_identity.valid_dn or chain_identity.username is None:
        raise NotAuthenticatedError(f"{chain_identity.dn} is not a registered user")
    return chain_identity


def expiry_hint(session: sess.Session) -> int:
    """Seconds until the session ends (absolute lifetime)."""
    return max(0, int((session.expires - utcnow()) / timedelta(seconds=1)))
