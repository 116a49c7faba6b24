"""``Framework/Auth``: the login server's HTTP endpoints and its RPC methods.

The endpoints (see :mod:`core.auth.handlers`) are routes of this service, so any
``pilotwms serve`` hosting it is the authorization server of ``Auth.Signing.Issuer``; without
``Auth.Server`` in the configuration the service has no routes and its methods say so.

RPC methods (delegated credentials for work done later, see :mod:`core.auth.delegation`):

* ``delegate(days=None)``: the caller stores a delegation for their user and group;
* ``getDelegations()``: the caller's delegations; ``removeDelegation(group)``;
* ``mintDelegatedToken(user, group)``: a short-lived token from a stored delegation
  (``FullDelegation`` or ``TrustedHost``).

Background tasks (every worker): expired codes/sessions/tokens purged, delegations renewed,
both every 10 minutes.

Example::

    pilotwms call Framework/Auth delegate 7
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from core.auth import delegation, handlers
from core.auth.grants import DEVICE_GRANT, X509_GRANT, AuthServer
from core.auth.idp import IdPClient
from core.auth.tables import SYSTEM, purge_expired
from core.db import utcnow, write_transaction
from core.exceptions import ConfigError, InvalidArgumentError, NotAuthorizedError
from core.rpc.context import ServerContext
from core.rpc.service import Call, Service, rpc_method

log = logging.getLogger("pilotwms.auth")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AuthService(Service):
    system = "Framework"
    name = "Auth"

    def __init__(self, ctx: ServerContext) -> None:
        super().__init__(ctx)
        self.server: AuthServer | None = None
        self._idps: dict[str, IdPClient] = {}
        conf = ctx.config.auth
        if conf.server is not None and conf.signing is not None:
            self.server = AuthServer.from_config(ctx.config, ctx.engine(SYSTEM))
            revocations = getattr(ctx, "revocations", None)
            if revocations is not None:
                self.server.on_revoke.append(revocations.add)
            callback = f"{self.server.base_url}/auth/callback"
            self._idps = {vo: IdPClient(vo, idp, callback) for vo, idp in conf.server.idps.items()}

    def _srv(self) -> AuthServer:
        if self.server is None:
            raise ConfigError("the login server is not configured (Auth.Server)")
        return self.server

    def idp(self, vo: str) -> IdPClient:
        return self._idps[vo]

    def discovery(self) -> dict[str, Any]:
        """The OpenID Provider metadata of this server."""
        srv = self._srv()
        base = srv.base_url
        groups = sorted(srv.registry.config.groups)
        return {
            "issuer": base,
            "authorization_endpoint": f"{base}/auth/authorize",
            "token_endpoint": f"{base}/auth/token",
            "device_authorization_endpoint": f"{base}/auth/device",
            "revocation_endpoint": f"{base}/auth/revoke",
            "userinfo_endpoint": f"{base}/auth/userinfo",
            "jwks_uri": f"{base}/auth/jwks",
            "grant_types_supported": [DEVICE_GRANT, "authorization_code", "refresh_token",
                                      X509_GRANT],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic",
                                                      "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic",
                                                           "client_secret_post"],
            "scopes_supported": [f"vo:{vo}" for vo in sorted(srv.registry.config.vos)]
            + [f"group:{g}" for g in groups],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "jti", "vo", "dirac_group",
                                 "preferred_username", "scope", "properties"],
        }

    def background_tasks(self) -> list[tuple[float, Callable[[], None]]]:
        return [(600.0, self.housekeeping)] if self.server is not None else []

    def housekeeping(self) -> None:
        srv = self._srv()
        with write_transaction(srv.engine) as conn:
            purged = purge_expired(conn, utcnow())
        report = delegation.renew_delegations(srv.engine, self.ctx.config)
        if purged or report.renewed or report.refused:
            log.info("auth housekeeping: %d rows purged, delegations %s", purged, report)

    def extra_routes(self, hosted: Any, balancers: Sequence[Network]) -> list[Any]:
        if self.server is None:
            return []
        kw = {"service": self}
        return [
            (r"/\.well-known/openid-configuration", handlers.DiscoveryHandler, kw),
            (r"/auth/jwks", handlers.JWKSHandler, kw),
            (r"/auth/device", handlers.DeviceHandler, kw),
            (r"/auth/device/verify", handlers.DeviceVerifyHandler, kw),
            (r"/auth/authorize", handlers.AuthorizeHandler, kw),
            (r"/auth/callback", handlers.CallbackHandler, kw),
            (r"/auth/token", handlers.TokenHandler, kw),
            (r"/auth/revoke", handlers.RevokeHandler, kw),
            (r"/auth/userinfo", handlers.UserInfoHandler, kw),
        ]

    # -- delegated credentials ---------------------------------------------------------------

    def _own(self, call: Call) -> tuple[str, str]:
        ident = call.identity
        if ident.is_host or ident.username is None or ident.group is None:
            raise NotAuthorizedError("only users may delegate their credentials")
        return ident.username, ident.group

    @rpc_method("delegate")
    def delegate(self, call: Call, days: float | None = None) -> datetime:
        """Store a delegation of the caller's user and group; returns its expiry."""
        if days is not None and days <= 0:
            raise InvalidArgumentError("days must be positive")
        user, group = self._own(call)
        return delegation.store_delegation(self._srv().engine, self.ctx.config, user, group,
                                           days=days)

    @rpc_method("getDelegations")
    def get_delegations(self, call: Call) -> list[dict[str, Any]]:
        user, _group = self._own(call)
        return delegation.list_delegations(self._srv().engine, user)

    @rpc_method("removeDelegation")
    def remove_delegation(self, call: Call, group: str) -> bool:
        user, _group = self._own(call)
        return delegation.remove_delegation(self._srv().engine, user, group)

    @rpc_method("mintDelegatedToken", rights=["FullDelegation", "TrustedHost"])
    def mint_delegated_token(self, call: Call, user: str, group: str) -> str:
        return delegation.mint_delegated_token(self._srv().engine, self.ctx.config, user,
                                               group, actor=call.identity.username)
