"""The grants' rules at the logic level, on SQLite and MariaDB: device-code polling
(slow_down, expiry, one use), refresh rotation, groups and scopes, delegated credentials."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from core.auth import grants
from core.auth.delegation import (
    list_delegations,
    mint_delegated_token,
    renew_delegations,
    store_delegation,
)
from core.auth.errors import AuthServerError
from core.auth.grants import AuthServer
from core.auth.revocation import RevocationCache
from core.auth.tables import delegations, device_codes, refresh_tokens
from core.config.schema import Config
from core.db import utcnow
from core.exceptions import NotAuthorizedError, NotFoundError
from core.security.authenticate import Authenticator
from core.security.tokens import TokenVerifier

CLI = grants.CLI_CLIENT


def _error(func: object, *args: object, **kw: object) -> AuthServerError:
    with pytest.raises(AuthServerError) as info:
        func(*args, **kw)  # type: ignore[operator]
    return info.value


def test_device_polling_rules(srv: AuthServer) -> None:
    srv.settings = srv.settings.model_copy(update={"poll_interval": 30})
    start = grants.start_device(srv, CLI, "group:demo_user")
    assert start["interval"] == 30
    code = start["device_code"]
    assert _error(grants.poll_device, srv, CLI, code).error == "authorization_pending"
    slow = _error(grants.poll_device, srv, CLI, code)
    assert slow.error == "slow_down" and "35" in slow.description
    assert _error(grants.poll_device, srv, "other", code).error == "invalid_grant"
    assert grants.approve_device(srv, start["user_code"].lower(), "alice", None) == "demo_user"
    assert "access_token" in grants.poll_device(srv, CLI, code)
    assert _error(grants.poll_device, srv, CLI, code).error == "invalid_grant"


def test_expired_device_code(srv: AuthServer) -> None:
    start = grants.start_device(srv, CLI, None)
    with srv.engine.begin() as conn:
        conn.execute(sa.update(device_codes).values(expires=utcnow() - timedelta(seconds=1)))
    assert _error(grants.poll_device, srv, CLI, start["device_code"]).error == "expired_token"
    assert _error(grants.approve_device, srv, start["user_code"], "alice",
                  None).error == "expired_token"


def test_group_resolution(srv: AuthServer) -> None:
    rules = {"/demo/admins": "demo_admin"}
    assert grants.resolve_group(srv, "alice", "vo:demo") == "demo_user"
    assert grants.resolve_group(srv, "alice", "group:demo_admin", idp_groups=["/demo/admins"],
                                rules=rules) == "demo_admin"
    denied = _error(grants.resolve_group, srv, "bob", "group:demo_admin",
                    idp_groups=["/demo/users"], rules=rules)
    assert denied.error == "access_denied"
    assert _error(grants.resolve_group, srv, "alice", "group:demo_pilot").error == "invalid_scope"
    assert _error(grants.resolve_group, srv, "nobody", None).error == "access_denied"
    assert _error(grants.check_scope, srv, "group:a group:b").error == "invalid_scope"
    assert _error(grants.check_scope, srv, "vo:other").error == "invalid_scope"


def _login(srv: AuthServer, user: str = "alice", group: str = "demo_user") -> dict[str, str]:
    start = grants.start_device(srv, CLI, f"group:{group}")
    grants.approve_device(srv, start["user_code"], user, None)
    return dict(grants.poll_device(srv, CLI, start["device_code"]))


def test_refresh_family(srv: AuthServer) -> None:
    seen: list[str] = []
    srv.on_revoke.append(seen.extend)
    first = _login(srv)
    second = grants.refresh(srv, CLI, first["refresh_token"])
    third = grants.refresh(srv, CLI, second["refresh_token"])
    assert _error(grants.refresh, srv, "other", third["refresh_token"]).error == "invalid_grant"
    reuse = _error(grants.refresh, srv, CLI, second["refresh_token"])
    assert "reused" in reuse.description
    assert len(seen) == 3  # the three access tokens of the family
    with srv.engine.connect() as conn:
        statuses = set(conn.execute(sa.select(refresh_tokens.c.status)).scalars())
    assert statuses == {"revoked"}
    assert _error(grants.refresh, srv, CLI, third["refresh_token"]).error == "invalid_grant"


def test_refresh_refused_once_the_user_leaves_the_group(srv: AuthServer,
                                                         auth_cfg: Config) -> None:
    tokens = _login(srv, "bob")
    data = auth_cfg.model_dump(by_alias=True, exclude_none=True)
    data["Registry"]["Groups"]["demo_user"]["Users"].remove("bob")
    srv.registry = AuthServer.from_config(Config.model_validate(data), srv.engine).registry
    err = _error(grants.refresh, srv, CLI, tokens["refresh_token"])
    assert "no longer" in err.description


def test_revocation_cache_bound(srv: AuthServer, auth_cfg: Config) -> None:
    """A token revoked elsewhere is refused once the cache is older than its TTL."""
    cache = RevocationCache(srv.engine, ttl=0.2)
    verifier = TokenVerifier(auth_cfg.auth, is_revoked=cache)
    tokens = _login(srv)
    claims = verifier.verify(tokens["access_token"])
    grants.revoke(srv, CLI, tokens["access_token"], claims)   # another process: no hook
    import time

    time.sleep(0.5)  # > 2 x TTL: the next check re-reads synchronously
    from core.exceptions import NotAuthenticatedError

    with pytest.raises(NotAuthenticatedError, match="revoked"):
        verifier.verify(tokens["access_token"])
    # a fresh process loads every live revocation at once
    assert RevocationCache(srv.engine, ttl=60)(claims["jti"])


def test_delegated_credentials(srv: AuthServer, auth_cfg: Config) -> None:
    engine = srv.engine
    with pytest.raises(NotFoundError):
        mint_delegated_token(engine, auth_cfg, "alice", "demo_user")
    with pytest.raises(NotAuthorizedError):
        store_delegation(engine, auth_cfg, "alice", "demo_pilot")
    expires = store_delegation(engine, auth_cfg, "alice", "demo_user", days=10)
    assert timedelta(hours=23) < expires - utcnow() <= timedelta(days=1)
    token = mint_delegated_token(engine, auth_cfg, "alice", "demo_user", actor="Transfer")
    claims = TokenVerifier(auth_cfg.auth).verify(token)
    assert claims["act"] == {"sub": "Transfer"} and claims["delegated"] is True
    assert claims["exp"] - claims["iat"] <= auth_cfg.auth.server.delegated_token_lifetime  # type: ignore[union-attr]
    ident = Authenticator(auth_cfg).from_token(token)
    assert (ident.username, ident.group, ident.properties) == ("alice", "demo_user",
                                                               frozenset({"NormalUser"}))
    # renewal: expiring soon -> extended, but never past the owner's limit (10 days)
    with engine.begin() as conn:
        conn.execute(sa.update(delegations).values(expires=utcnow() + timedelta(minutes=5)))
    assert renew_delegations(engine, auth_cfg).renewed == 1
    row = list_delegations(engine, "alice")[0]
    assert row["expires"] - utcnow() > timedelta(hours=23) and row["status"] == "active"
    # the owner leaves the registry: renewal refuses it, and so does minting
    data = auth_cfg.model_dump(by_alias=True, exclude_none=True)
    data["Registry"]["Groups"]["demo_user"]["Users"].remove("alice")
    gone = Config.model_validate(data)
    with pytest.raises(NotAuthorizedError, match="no longer"):
        mint_delegated_token(engine, gone, "alice", "demo_user")
    store_delegation(engine, auth_cfg, "alice", "demo_user")
    with engine.begin() as conn:
        conn.execute(sa.update(delegations).values(expires=utcnow() + timedelta(minutes=5)))
    assert renew_delegations(engine, gone).refused == 1
    with pytest.raises(NotAuthorizedError, match="refused"):
        mint_delegated_token(engine, auth_cfg, "alice", "demo_user")
    # an expired delegation is not renewed
    store_delegation(engine, auth_cfg, "alice", "demo_user")
    with engine.begin() as conn:
        conn.execute(sa.update(delegations).values(expires=utcnow() - timedelta(seconds=1)))
    with pytest.raises(NotAuthorizedError, match="expired"):
        mint_delegated_token(engine, auth_cfg, "alice", "demo_user")
    assert renew_delegations(engine, auth_cfg).expired == 1


def test_confidential_clients_and_expired_refresh(srv: AuthServer) -> None:
    from core.config.schema import OAuthClientConfig

    clients = {"portal": OAuthClientConfig(secret="s3cret",
                                           redirect_uris=["https://portal.example.org/cb"])}
    srv.settings = srv.settings.model_copy(update={"clients": clients})
    assert _error(srv.check_client, "portal", None).error == "invalid_client"
    assert _error(srv.check_client, "portal", "wrong").status == 401
    srv.check_client("portal", "s3cret")
    srv.check_client(CLI, None)                       # the public CLI client is always known
    grants.check_redirect_uri(srv, "portal", "https://portal.example.org/cb")
    grants.check_redirect_uri(srv, CLI, "http://127.0.0.1:4242/any/path")
    assert _error(grants.check_redirect_uri, srv, "portal",
                  "https://portal.example.org/other").error == "invalid_request"
    tokens = _login(srv)
    with srv.engine.begin() as conn:
        conn.execute(sa.update(refresh_tokens).values(expires=utcnow() - timedelta(seconds=1)))
    assert "expired" in _error(grants.refresh, srv, CLI, tokens["refresh_token"]).description
