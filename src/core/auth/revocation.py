"""Which access tokens are revoked: a per-process copy of ``auth_revoked_tokens``.

Every service checks each bearer token's ``jti`` here (``TokenVerifier(is_revoked=...)``), so
the check must cost no database round trip: it is a set look-up. The set is re-read in the
background once it is older than ``Auth.Server.RevocationCacheSeconds`` (only rows revoked in
the last minutes: revocations are few), and synchronously when it is older than twice that
(after an idle period). Bound: a token revoked by another process is refused at most
``2 x RevocationCacheSeconds`` after the revocation committed; the process that revoked it
refuses it at once (:meth:`RevocationCache.add`). When the database cannot be read the last
known set is kept and the failure logged (fail-open, like a stale cache).

Example::

    >>> from core.auth.tables import AUTH_SCHEMA
    >>> from core.db import init_schema, make_engine
    >>> engine = make_engine("sqlite://"); _ = init_schema(engine, AUTH_SCHEMA)
    >>> cache = RevocationCache(engine, ttl=5)
    >>> cache("abc"), cache.add(["abc"]), cache("abc")
    (False, None, True)
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.auth.tables import revoked_tokens
from core.db import utcnow

log = logging.getLogger("pilotwms.auth")
#: rows revoked this long before the last read are read again (late commits are not missed)
OVERLAP = timedelta(minutes=2)


class RevocationCache:
    def __init__(self, engine: Engine, ttl: float) -> None:
        self.engine = engine
        self.ttl = ttl
        self._revoked: dict[str, datetime] = {}
        self._read_at = 0.0  # monotonic time of the last successful read
        self._since: datetime | None = None
        self._lock = threading.Lock()
        self._busy = False
        self._failures = 0

    def __call__(self, jti: str) -> bool:
        age = time.monotonic() - self._read_at
        if age > 2 * self.ttl:
            self.refresh()
        elif age > self.ttl and not self._busy:
            self._busy = True
            threading.Thread(target=self.refresh, name="revocations", daemon=True).start()
        return jti in self._revoked

    def add(self, jtis: list[str]) -> None:
        """Revoked here: refused by this process at once."""
        far = utcnow() + timedelta(days=1)
        for jti in jtis:
            self._revoked.setdefault(jti, far)

    def refresh(self) -> None:
        """Read the revocations since the last read (all live ones the first time)."""
        with self._lock:
            try:
                started = utcnow()
                query = sa.select(revoked_tokens.c.jti, revoked_tokens.c.expires)
                if self._since is None:
                    query = query.where(revoked_tokens.c.expires >= started)
                else:
                    query = query.where(revoked_tokens.c.revoked_at >= self._since - OVERLAP)
                with self.engine.connect() as conn:
                    rows = conn.execute(query).all()
                fresh = {jti: exp for jti, exp in rows if exp >= started}
                kept = {jti: exp for jti, exp in self._revoked.items() if exp >= started}
                self._revoked = {**kept, **fresh}
                self._since = started
                self._read_at = time.monotonic()
                self._failures = 0
            except sa.exc.SQLAlchemyError as exc:
                self._failures += 1
                # retry after ttl, not at once: a down database must not be hammered
                self._read_at = time.monotonic() - self.ttl
                if self._failures in (1, 10) or self._failures % 100 == 0:
                    log.warning("cannot read revoked tokens (%d failures): %s",
                                self._failures, exc)
            finally:
                self._busy = False
