"""Delegated credentials: agents acting for a user later (transfers, transformation tasks).

A user (signed in, or by certificate) stores a delegation for one of their groups through
``Framework/Auth.delegate``; it is valid for ``Auth.Server.DelegationDays`` and renewed before
expiry by the Auth service's background task (:func:`renew_delegations`), never past
``DelegationMaxDays`` after the user gave it and never once the user has left the registry or
the group (it is then marked ``refused``). From a valid delegation, agents mint short-lived
access tokens (``DelegatedTokenLifetime``) carrying the owner's user, group and properties
and nothing more, plus ``act: {"sub": <agent>}`` (RFC 8693) naming who acts.

Example::

    store_delegation(engine, config, "alice", "demo_user")
    token = mint_delegated_token(engine, config, "alice", "demo_user", actor="TransferAgent")
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.auth.grants import AuthServer, mint_access_token
from core.auth.tables import delegations
from core.config.schema import AuthServerConfig, Config
from core.db import utcnow, write_transaction
from core.exceptions import ConfigError, NotAuthorizedError, NotFoundError
from core.security.registry import Registry


def _settings(config: Config) -> AuthServerConfig:
    if config.auth.server is None:
        raise ConfigError("Auth.Server is not configured: no delegated credentials")
    return config.auth.server


def _member(registry: Registry, user: str, group: str) -> bool:
    return registry.has_user(user) and registry.is_member(user, group)


def store_delegation(engine: Engine, config: Config, user: str, group: str,
                     *, days: float | None = None) -> datetime:
    """Store (or replace) ``user``'s delegation for ``group``; returns when it expires."""
    settings = _settings(config)
    registry = Registry(config.registry)
    if not _member(registry, user, group):
        raise NotAuthorizedError(f"{user} is not a member of group {group}")
    gconf = registry.group(group)
    assert gconf is not None  # noqa: S101 - membership implies the group exists
    now = utcnow()
    max_until = now + timedelta(days=min(days or settings.delegation_max_days,
                                         settings.delegation_max_days))
    expires = min(now + timedelta(days=settings.delegation_days), max_until)
    values = {"vo": gconf.vo, "status": "active", "created": now, "renewed": now,
              "expires": expires, "max_until": max_until}
    key = (delegations.c.username == user) & (delegations.c.group_name == group)
    with write_transaction(engine) as conn:
        if conn.execute(sa.update(delegations).where(key).values(**values)).rowcount == 0:
            conn.execute(sa.insert(delegations).values(username=user, group_name=group,
                                                       **values))
    return expires


def remove_delegation(engine: Engine, user: str, group: str) -> bool:
    with write_transaction(engine) as conn:
        return bool(conn.execute(sa.delete(delegations).where(
            delegations.c.username == user, delegations.c.group_name == group)).rowcount)


def list_delegations(engine: Engine, user: str | None = None) -> list[dict[str, Any]]:
    query = sa.select(delegations).order_by(delegations.c.username, delegations.c.group_name)
    if user is not None:
        query = query.where(delegations.c.username == user)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def mint_delegated_token(engine: Engine, config: Config, user: str, group: str,
                         *, actor: str | None = None, lifetime: int | None = None) -> str:
    """A short-lived access token for ``user`` in ``group`` from their stored delegation.

    Refused (:class:`NotFoundError`, :class:`NotAuthorizedError`) without an active,
    unexpired delegation or once the user is no longer in the registry or the group.
    """
    settings = _settings(config)
    srv = AuthServer.from_config(config, engine)
    with engine.connect() as conn:
        row = conn.execute(sa.select(delegations).where(
            delegations.c.username == user,
            delegations.c.group_name == group)).mappings().first()
    if row is None:
        raise NotFoundError(f"no delegated credential for {user} in {group}")
    now = utcnow()
    if row["status"] != "active" or row["expires"] <= now:
        raise NotAuthorizedError(f"the delegated credential of {user} in {group} is "
                                 f"{'expired' if row['status'] == 'active' else row['status']}")
    if not _member(srv.registry, user, group):
        _mark(engine, user, group, "refused")
        raise NotAuthorizedError(f"{user} may no longer act in {group}")
    left = int((row["expires"] - now).total_seconds())
    life = max(1, min(lifetime or settings.delegated_token_lifetime,
                      settings.delegated_token_lifetime, left))
    extra: dict[str, Any] = {"delegated": True}
    if actor:
        extra["act"] = {"sub": actor}
    token, _jti, _exp = mint_access_token(srv, user, group, lifetime=life,
                                          client_id="pilotwms-delegation", extra=extra)
    return token


def _mark(engine: Engine, user: str, group: str, status: str) -> None:
    with write_transaction(engine) as conn:
        conn.execute(sa.update(delegations).where(
            delegations.c.username == user, delegations.c.group_name == group
        ).values(status=status))


@dataclass
class RenewReport:
    renewed: int = 0
    refused: int = 0
    expired: int = 0


def renew_delegations(engine: Engine, config: Config, *,
                      within: timedelta | None = None) -> RenewReport:
    """Renew active delegations expiring within ``within`` (default: half their lifetime)."""
    settings = _settings(config)
    registry = Registry(config.registry)
    lifetime = timedelta(days=settings.delegation_days)
    within = within if within is not None else lifetime / 2
    now = utcnow()
    report = RenewReport()
    with write_transaction(engine) as conn:
        rows = conn.execute(sa.select(delegations).where(
            delegations.c.status == "active",
            delegations.c.expires <= now + within)).mappings().all()
        for row in rows:
            key = ((delegations.c.username == row["username"])
                   & (delegations.c.group_name == row["group_name"]))
            if not _member(registry, row["username"], row["group_name"]):
                conn.execute(sa.update(delegations).where(key).values(status="refused"))
                report.refused += 1
            elif row["expires"] <= now or row["max_until"] <= now:
                conn.execute(sa.update(delegations).where(key).values(status="expired"))
                report.expired += 1
            else:
                conn.execute(sa.update(delegations).where(key).values(
                    renewed=now, expires=min(now + lifetime, row["max_until"])))
                report.renewed += 1
    return report
