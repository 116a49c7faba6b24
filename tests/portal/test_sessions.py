"""Portal sessions and sign-ins in the database (SQLite and MariaDB): the cookie's hash as
the key, tokens sealed with the cookie, the refresh claim as a compare-and-set, expiry."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from core.db import init_schema, make_engine, utcnow
from portal.db import PORTAL_SCHEMA, sessions
from portal.logic import sessions as sess


def test_sessions_round_trip(db_url: str) -> None:
    engine = make_engine(db_url)
    init_schema(engine, PORTAL_SCHEMA)
    tokens = {"access": "a.b.c", "refresh": "r.1", "expires": 1, "lifetime": 1200}
    secret, made = sess.create_session(engine, 3600, kind="token", username="alice",
                                       group="demo_user", tokens=tokens)
    with engine.connect() as conn:
        row = conn.execute(sa.select(sessions)).mappings().one()
    assert row["session_hash"] == sess.digest(secret) and secret not in str(dict(row))
    # sealed: the plaintext tokens hold a ".", which a Fernet token (urlsafe base64) never does
    assert "a.b.c" not in row["tokens"] and "r.1" not in row["tokens"]
    assert sess.unseal("another cookie", row["tokens"]) is None

    found = sess.load_session(engine, secret, idle_seconds=600)
    assert found is not None and found.tokens == tokens and found.csrf == made.csrf
    # the refresh claim: one winner; a request holding the old tokens never wins later
    other = sess.load_session(engine, secret, idle_seconds=600)
    assert other is not None
    assert sess.claim_refresh(engine, found) is True
    assert sess.claim_refresh(engine, other) is False
    sess.update_session(engine, found, secret, tokens={**tokens, "refresh": "r2"})
    assert sess.claim_refresh(engine, other) is False  # its tokens are stale now
    fresh = sess.load_session(engine, secret, idle_seconds=600)
    assert fresh is not None and fresh.tokens is not None and fresh.tokens["refresh"] == "r2"
    assert sess.claim_refresh(engine, fresh) is True
    sess.release_refresh(engine, fresh)

    sess.update_session(engine, fresh, secret, group="demo_admin")
    again = sess.load_session(engine, secret, idle_seconds=600)
    assert again is not None and again.group == "demo_admin"

    # idle too long, then expired: gone
    with engine.begin() as conn:
        conn.execute(sa.update(sessions).values(last_seen=utcnow() - timedelta(hours=3)))
    assert sess.load_session(engine, secret, idle_seconds=600) is None
    secret2, _ = sess.create_session(engine, 60, kind="x509", username="bob",
                                     group="demo_user", dn="/CN=bob")
    assert sess.purge(engine, idle_seconds=600, now=utcnow() + timedelta(seconds=61)) == 1
    assert sess.load_session(engine, secret2, idle_seconds=600) is None
    engine.dispose()


def test_sign_ins_belong_to_their_browser(db_url: str) -> None:
    engine = make_engine(db_url)
    init_schema(engine, PORTAL_SCHEMA)
    state = sess.start_login(engine, "browser-1", "verifier", "demo_user", "#/jobs")
    assert sess.take_login(engine, state, "browser-2") is None  # and it is spent
    assert sess.take_login(engine, state, "browser-1") is None
    state = sess.start_login(engine, "browser-1", "verifier", "", "#/data")
    login = sess.take_login(engine, state, "browser-1")
    assert login is not None and login["verifier"] == "verifier"
    assert login["next_path"] == "#/data"
    assert sess.take_login(engine, state, "browser-1") is None  # used once
    engine.dispose()
