"""Tables of the web portal (schema ``Web``): browser sessions and sign-ins under way.

* ``portal_sessions``: one row per signed-in browser, keyed by the SHA-256 of the session
  cookie (the cookie itself is never stored). The user's tokens are kept encrypted with a key
  derived from the cookie, so the table alone cannot act for anyone.
* ``portal_logins``: an authorization-code sign-in between the redirect to the login server
  and the callback (state, PKCE verifier, the browser it belongs to).

Example::

    >>> from core.db import init_schema, make_engine
    >>> init_schema(make_engine("sqlite://"), PORTAL_SCHEMA)
    0
"""

from __future__ import annotations

import sqlalchemy as sa

from core.db import Schema, UTCDateTime

metadata = sa.MetaData()

sessions = sa.Table(
    "portal_sessions",
    metadata,
    sa.Column("session_hash", sa.String(64), primary_key=True),
    #: "token" (signed in at the login server) or "x509" (the browser's certificate)
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("username", sa.String(128), nullable=False),
    sa.Column("group_name", sa.String(128), nullable=False),
    sa.Column("dn", sa.String(512), nullable=False, server_default=""),
    sa.Column("csrf", sa.String(64), nullable=False),
    #: Fernet(JSON {access, refresh, expires}) for token sessions, empty for x509 ones
    sa.Column("tokens", sa.Text, nullable=False, server_default=""),
    #: a refresh in progress (another request waits for it rather than refreshing twice)
    sa.Column("refreshing_until", UTCDateTime, nullable=True),
    sa.Column("created", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
    sa.Column("expires", UTCDateTime, nullable=False, index=True),
)

logins = sa.Table(
    "portal_logins",
    metadata,
    sa.Column("state_hash", sa.String(64), primary_key=True),
    #: SHA-256 of the short-lived sign-in cookie of the browser that started it
    sa.Column("browser_hash", sa.String(64), nullable=False),
    sa.Column("verifier", sa.String(128), nullable=False),
    sa.Column("group_name", sa.String(128), nullable=False, server_default=""),
    sa.Column("next_path", sa.String(512), nullable=False, server_default=""),
    sa.Column("expires", UTCDateTime, nullable=False, index=True),
)

PORTAL_SCHEMA = Schema("Web", metadata, migrations=[])
