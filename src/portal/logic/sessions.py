"""Browser sessions of the portal: made at sign-in, found from the cookie, refreshed, ended.

The cookie carries a random secret; the database keeps its SHA-256 (the row's key) and the
user's tokens encrypted with a key derived from the secret (Fernet), so neither the table
nor the cookie alone is a credential. A session also has a CSRF token that the page sends
back in a header with every state-changing request.

Example::

    >>> from core.db import init_schema, make_engine
    >>> from portal.db import PORTAL_SCHEMA
    >>> engine = make_engine("sqlite://")
    >>> _ = init_schema(engine, PORTAL_SCHEMA)
    >>> secret, made = create_session(engine, 3600, kind="x509", username="alice",
    ...                               group="demo_user", dn="/CN=alice")
    >>> found = load_session(engine, secret, idle_seconds=600)
    >>> (found.username, found.group, found.csrf == made.csrf)
    ('alice', 'demo_user', True)
    >>> load_session(engine, "forged", idle_seconds=600) is None
    True
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.engine import Engine

from core.db import utcnow, write_transaction
from portal.db import logins, sessions

#: last_seen is written at most this often (seconds): reads stay reads
TOUCH_EVERY = 60
#: a sign-in between redirect and callback lives this long (seconds)
LOGIN_SECONDS = 600


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _box(secret: str) -> Fernet:
    key = hashlib.sha256(b"pilotwms-portal-tokens\0" + secret.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal(secret: str, tokens: dict[str, Any]) -> str:
    return _box(secret).encrypt(json.dumps(tokens).encode()).decode()


def unseal(secret: str, sealed: str) -> dict[str, Any] | None:
    if not sealed:
        return None
    try:
        return dict(json.loads(_box(secret).decrypt(sealed.encode())))
    except (InvalidToken, ValueError):
        return None


@dataclass
class Session:
    key: str
    kind: str
    username: str
    group: str
    dn: str
    csrf: str
    tokens: dict[str, Any] | None
    #: the tokens as stored (encrypted): a refresh claims the row only if they are unchanged
    sealed: str
    refreshing_until: datetime | None
    last_seen: datetime
    expires: datetime


def create_session(engine: Engine, lifetime: int, *, kind: str, username: str, group: str,
                   dn: str = "", tokens: dict[str, Any] | None = None) -> tuple[str, Session]:
    """A new session; returns (cookie secret, session)."""
    secret = new_secret()
    now = utcnow()
    row = {"session_hash": digest(secret), "kind": kind, "username": username,
           "group_name": group, "dn": dn, "csrf": secrets.token_urlsafe(24),
           "tokens": seal(secret, tokens) if tokens else "", "refreshing_until": None,
           "created": now, "last_seen": now, "expires": now + timedelta(seconds=lifetime)}
    with write_transaction(engine) as conn:
        conn.execute(sa.insert(sessions).values(**row))
    return secret, _session(row, secret)


def _session(row: Any, secret: str) -> Session:
    return Session(key=row["session_hash"], kind=row["kind"], username=row["username"],
                   group=row["group_name"], dn=row["dn"], csrf=row["csrf"],
                   tokens=unseal(secret, row["tokens"]), sealed=row["tokens"],
                   refreshing_until=row["refreshing_until"], last_seen=row["last_seen"],
                   expires=row["expires"])


def load_session(engine: Engine, secret: str, *, idle_seconds: int,
                 now: datetime | None = None) -> Session | None:
    """The live session of a cookie secret (None when unknown, expired or idle too long)."""
    if not secret or len(secret) > 100:
        return None
    now = now or utcnow()
    key = digest(secret)
    with engine.connect() as conn:
        row = conn.execute(sa.select(sessions).where(sessions.c.session_hash == key)
                           ).mappings().first()
    if row is None:
        return None
    if row["expires"] <= now or (now - row["last_seen"]).total_seconds() > idle_seconds:
        delete_session(engine, key)
        return None
    found = _session(row, secret)
    if (now - found.last_seen).total_seconds() >= TOUCH_EVERY:
        with engine.begin() as conn:
            conn.execute(sa.update(sessions).where(sessions.c.session_hash == key)
                         .values(last_seen=now))
        found.last_seen = now
    return found


def update_session(engine: Engine, session: Session, secret: str, *,
                   tokens: dict[str, Any] | None = None, group: str | None = None) -> None:
    """New tokens and/or group for a session (ends any refresh claim)."""
    values: dict[str, Any] = {"refreshing_until": None}
    if tokens is not None:
        values["tokens"] = session.sealed = seal(secret, tokens)
        session.tokens = tokens
    if group is not None:
        values["group_name"] = group
        session.group = group
    with write_transaction(engine) as conn:
        conn.execute(sa.update(sessions).where(sessions.c.session_hash == session.key)
                     .values(**values))


def claim_refresh(engine: Engine, session: Session, seconds: int = 30) -> bool:
    """Become the one request that refreshes this session's tokens: compare-and-set on the
    tokens this request read (another request may have refreshed them meanwhile: presenting
    the old refresh token again would end the whole sign-in) and on no refresh under way."""
    now = utcnow()
    with write_transaction(engine) as conn:
        done = conn.execute(sa.update(sessions).where(
            sessions.c.session_hash == session.key, sessions.c.tokens == session.sealed,
            sa.or_(sessions.c.refreshing_until.is_(None), sessions.c.refreshing_until < now),
        ).values(refreshing_until=now + timedelta(seconds=seconds))).rowcount
    return bool(done)


def release_refresh(engine: Engine, session: Session) -> None:
    with write_transaction(engine) as conn:
        conn.execute(sa.update(sessions).where(sessions.c.session_hash == session.key)
                     .values(refreshing_until=None))


def delete_session(engine: Engine, key: str) -> None:
    with write_transaction(engine) as conn:
        conn.execute(sa.delete(sessions).where(sessions.c.session_hash == key))


def start_login(engine: Engine, browser_secret: str, verifier: str, group: str,
                next_path: str) -> str:
    """Remember a sign-in about to go to the login server; returns its ``state``."""
    state = new_secret()
    with write_transaction(engine) as conn:
        conn.execute(sa.insert(logins).values(
            state_hash=digest(state), browser_hash=digest(browser_secret), verifier=verifier,
            group_name=group, next_path=next_path,
            expires=utcnow() + timedelta(seconds=LOGIN_SECONDS)))
    return state


def take_login(engine: Engine, state: str, browser_secret: str) -> dict[str, Any] | None:
    """The sign-in of ``state`` if it was started by this browser and is not over (used once)."""
    with write_transaction(engine) as conn:
        row = conn.execute(sa.select(logins).where(logins.c.state_hash == digest(state))
                           ).mappings().first()
        if row is None:
            return None
        conn.execute(sa.delete(logins).where(logins.c.state_hash == row["state_hash"]))
    if row["expires"] <= utcnow() or not secrets.compare_digest(
            row["browser_hash"], digest(browser_secret or "")):
        return None
    return dict(row)


def purge(engine: Engine, *, idle_seconds: int, now: datetime | None = None) -> int:
    """Remove expired or idle sessions and stale sign-ins; returns how many rows went."""
    now = now or utcnow()
    idle = now - timedelta(seconds=idle_seconds)
    with write_transaction(engine) as conn:
        gone = conn.execute(sa.delete(sessions).where(
            sa.or_(sessions.c.expires <= now, sessions.c.last_seen < idle))).rowcount
        gone += conn.execute(sa.delete(logins).where(logins.c.expires <= now)).rowcount
    return gone
