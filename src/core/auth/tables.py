"""Tables of the login server (schema ``Auth``; database ``Systems.Auth.Database`` else
``Database``) and the few queries shared by the logic modules.

Secrets (device codes, authorization codes, refresh tokens) are stored as SHA-256 hashes only,
so a read of the database gives nothing that can be presented back.

Example::

    >>> from core.db import init_schema, make_engine
    >>> init_schema(make_engine("sqlite://"), AUTH_SCHEMA)
    0
    >>> len(secret_hash("abc"))
    64
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.db import Schema, UTCDateTime

SYSTEM = "Auth"
metadata = sa.MetaData()

device_codes = sa.Table(
    "auth_device_codes", metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("user_code", sa.String(16), nullable=False, unique=True),
    sa.Column("client_id", sa.String(128), nullable=False),
    sa.Column("scope", sa.String(1024), nullable=False, default=""),
    #: pending, approved, denied, done
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("username", sa.String(128)),
    sa.Column("group_name", sa.String(128)),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("expires", UTCDateTime, nullable=False, index=True),
    sa.Column("last_poll", UTCDateTime),
    sa.Column("poll_interval", sa.Integer, nullable=False),
)

#: a sign-in in progress at an external IdP (state -> what to do when the user comes back)
login_sessions = sa.Table(
    "auth_login_sessions", metadata,
    sa.Column("state", sa.String(64), primary_key=True),
    sa.Column("nonce", sa.String(64), nullable=False),
    sa.Column("code_verifier", sa.String(128), nullable=False),
    sa.Column("vo", sa.String(64), nullable=False),
    #: "device" (ref = user code) or "authorize" (ref = the request as JSON)
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("ref", sa.Text, nullable=False),
    sa.Column("expires", UTCDateTime, nullable=False, index=True),
)

auth_codes = sa.Table(
    "auth_codes", metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(128), nullable=False),
    sa.Column("redirect_uri", sa.String(1024), nullable=False),
    sa.Column("code_challenge", sa.String(128), nullable=False),
    sa.Column("scope", sa.String(1024), nullable=False, default=""),
    sa.Column("username", sa.String(128), nullable=False),
    sa.Column("group_name", sa.String(128), nullable=False),
    sa.Column("expires", UTCDateTime, nullable=False, index=True),
    sa.Column("used", sa.Boolean, nullable=False, default=False),
)

refresh_tokens = sa.Table(
    "auth_refresh_tokens", metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("family", sa.String(32), nullable=False, index=True),
    sa.Column("client_id", sa.String(128), nullable=False),
    sa.Column("username", sa.String(128), nullable=False),
    sa.Column("group_name", sa.String(128), nullable=False),
    sa.Column("scope", sa.String(1024), nullable=False, default=""),
    #: jti of the access token issued with this refresh token (revoked with the family)
    sa.Column("access_jti", sa.String(64), nullable=False),
    sa.Column("access_expires", UTCDateTime, nullable=False),
    #: active, rotated (used once), revoked
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("expires", UTCDateTime, nullable=False, index=True),
)

revoked_tokens = sa.Table(
    "auth_revoked_tokens", metadata,
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column("expires", UTCDateTime, nullable=False, index=True),
    sa.Column("revoked_at", UTCDateTime, nullable=False, index=True),
)

delegations = sa.Table(
    "auth_delegations", metadata,
    sa.Column("username", sa.String(128), primary_key=True),
    sa.Column("group_name", sa.String(128), primary_key=True),
    sa.Column("vo", sa.String(64), nullable=False),
    #: active, refused (owner left the registry or the group), expired
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("renewed", UTCDateTime, nullable=False),
    sa.Column("expires", UTCDateTime, nullable=False, index=True),
    #: renewal never goes past this (the owner's consent has a limit)
    sa.Column("max_until", UTCDateTime, nullable=False),
)

AUTH_SCHEMA = Schema(SYSTEM, metadata, migrations=[])


def secret_hash(secret: str) -> str:
    """SHA-256 hex of a bearer secret (what the tables store)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def revoke_jtis(conn: Connection, items: list[tuple[str, datetime]], now: datetime) -> None:
    """Record access-token ids as revoked until their expiry (already recorded ones stay)."""
    if not items:
        return
    known = set(conn.execute(sa.select(revoked_tokens.c.jti).where(
        revoked_tokens.c.jti.in_([jti for jti, _ in items]))).scalars())
    rows = [{"jti": jti, "expires": exp, "revoked_at": now}
            for jti, exp in dict(items).items() if jti not in known]
    if rows:
        conn.execute(sa.insert(revoked_tokens), rows)


def purge_expired(conn: Connection, now: datetime) -> int:
    """Delete rows whose time is over; returns how many went."""
    count = 0
    for table in (device_codes, login_sessions, auth_codes, refresh_tokens, revoked_tokens):
        count += conn.execute(sa.delete(table).where(table.c.expires < now)).rowcount or 0
    return count


def from_timestamp(seconds: float) -> datetime:
    """A POSIX time as an aware UTC datetime, to the second."""
    from datetime import timezone

    return datetime.fromtimestamp(int(seconds), timezone.utc)
