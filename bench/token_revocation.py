"""Cost of the revocation check on every bearer-token request (login server, issue 5).

In one process: verifies the same RS256 token N times with (a) no revocation hook, (b) the
per-process :class:`core.auth.revocation.RevocationCache` holding ``--revoked`` entries, and
counts the SQL statements run during (b) (the hot path must run none); then times one
incremental re-read of the list and one full load.

    python bench/token_revocation.py --calls 20000 --revoked 10000 [--db URL]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from bench.machine import machine_line
from core.auth.revocation import RevocationCache
from core.auth.tables import AUTH_SCHEMA, revoked_tokens
from core.config.schema import AuthConfig, SigningConfig
from core.db import init_schema, make_engine, utcnow
from core.security.tokens import TokenIssuer, TokenVerifier, generate_signing_key


def per_call(label: str, func: object, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        func()  # type: ignore[operator]
    took = (time.perf_counter() - start) / calls
    print(f"{label:42s} {took * 1e6:8.1f} us/call")
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--revoked", type=int, default=10000)
    parser.add_argument("--db", help="SQLAlchemy URL (default: a SQLite file)")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "jwk.json"
        generate_signing_key(key)
        signing = SigningConfig(issuer="https://127.0.0.1:8443", key_file=key)
        token = TokenIssuer(signing).issue("alice", group="demo_user", vo="demo")
        engine = make_engine(args.db or f"sqlite:///{tmp}/auth.db")
        init_schema(engine, AUTH_SCHEMA)
        now = utcnow()
        with engine.begin() as conn:
            conn.execute(sa.delete(revoked_tokens))
            conn.execute(sa.insert(revoked_tokens), [
                {"jti": uuid.uuid4().hex, "expires": now + timedelta(hours=1),
                 "revoked_at": now} for _ in range(args.revoked)])
        statements = []
        sa.event.listen(engine, "before_cursor_execute",
                        lambda *a, **k: statements.append(a[2]))
        cache = RevocationCache(engine, ttl=5.0)
        start = time.perf_counter()
        cache.refresh()
        print(f"{'full load of ' + str(args.revoked) + ' revocations':42s} "
              f"{(time.perf_counter() - start) * 1e3:8.1f} ms")
        start = time.perf_counter()
        cache.refresh()
        print(f"{'incremental re-read':42s} {(time.perf_counter() - start) * 1e3:8.1f} ms")
        plain = TokenVerifier(AuthConfig(signing=signing))
        checked = TokenVerifier(AuthConfig(signing=signing), is_revoked=cache)
        base = per_call("verify, no revocation hook", lambda: plain.verify(token), args.calls)
        before = len(statements)
        with_cache = per_call("verify + revocation cache", lambda: checked.verify(token),
                              min(args.calls, 4000))  # stays inside one TTL
        print(f"{'SQL statements during the cached calls':42s} {len(statements) - before:8d}")
        per_call("the look-up alone", lambda: cache("x"), args.calls)
        print(f"{'overhead of the revocation check':42s} {(with_cache - base) * 1e6:8.1f} us")
        engine.dispose()


if __name__ == "__main__":
    main()
