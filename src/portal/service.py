"""``Web/Portal``: the web portal's routes under ``/portal/`` and its one RPC method.

The service hosts no data of its own beyond browser sessions. Its routes (see
:mod:`portal.handlers`) serve the page and its assets, sign users in (authorization code
with PKCE through the login server, or the browser's certificate) and pass the page's calls
to the other services of this process with the signed-in user's identity, through the same
rules, argument checks and envelope as ``POST /<System>/<Service>``.

RPC: ``checkJDL(jdl)`` -> ``{"Jobs": n, "Errors": [{line, column, message}]}``, the
launchpad's inline validation (nothing is stored).

Options: ``Systems.Web.Services.Portal.Options`` (:class:`portal.settings.PortalSettings`).

Example::

    pilotwms serve --config config.yaml      # then open https://host:8443/portal/
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.engine import Engine

from core.auth.grants import AuthServer
from core.auth.tables import SYSTEM as AUTH_SYSTEM
from core.exceptions import (
    ConfigError,
    MethodNotFoundError,
    NotAuthenticatedError,
    NotAuthorizedError,
    NotFoundError,
)
from core.rpc.context import ServerContext
from core.rpc.service import Call, Service, rpc_method
from core.security.identity import Identity
from core.security.rights import allowed
from portal.logic import sessions
from portal.logic.jdl_check import check_jdl
from portal.settings import SYSTEM, PortalSettings
from wms.service.common import limits_from

log = logging.getLogger("pilotwms.portal")


class PortalService(Service):
    system = SYSTEM
    name = "Portal"

    def __init__(self, ctx: ServerContext) -> None:
        super().__init__(ctx)
        try:
            self.settings = PortalSettings.from_options(
                ctx.config.service_config(SYSTEM, self.name).options)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self._auth: AuthServer | None = None
        conf = ctx.config.auth
        if conf.server is not None and conf.signing is not None:
            self._auth = AuthServer.from_config(ctx.config, ctx.engine(AUTH_SYSTEM))

    @property
    def engine(self) -> Engine:
        return self.ctx.engine(SYSTEM)

    @property
    def token_login(self) -> bool:
        """Sign-in through the login server is possible (configured and allowed)."""
        return self.settings.token_login and self._auth is not None and bool(
            self._auth.settings.idps) and self.settings.client_id in self._auth.settings.clients

    def auth_server(self) -> AuthServer:
        if self._auth is None:
            raise ConfigError("the login server is not configured (Auth.Server)")
        return self._auth

    def public_url(self, request_base: str) -> str:
        """The portal's base URL: PublicURL, else the login server's issuer, else the
        request's own scheme and host."""
        if self.settings.public_url:
            return self.settings.public_url
        signing = self.ctx.config.auth.signing
        return signing.issuer.rstrip("/") if signing is not None else request_base

    def background_tasks(self) -> list[tuple[float, Callable[[], None]]]:
        return [(600.0, self.housekeeping)]

    def housekeeping(self) -> None:
        gone = sessions.purge(self.engine, idle_seconds=self.settings.idle_seconds)
        if gone:
            log.info("portal: %d expired sessions and sign-ins removed", gone)

    def extra_routes(self, hosted: Any, balancers: Sequence[Any]) -> list[Any]:
        from portal.handlers import routes  # the handlers import this module

        return routes(self)

    # -- in-process calls with the user's identity -------------------------------------------

    def hosted_paths(self) -> list[str]:
        return sorted(self.ctx.hosted)

    def call(self, identity: Identity, path: str, method: str, *args: Any,
             request_id: str = "portal") -> Any:
        """Run ``path``'s ``method`` as ``identity`` does over RPC: the same rules and
        argument checks (blocking: call it in the executor)."""
        hosted = self.ctx.hosted.get(path)
        if hosted is None:
            raise NotFoundError(f"{path} is not served by this server")
        spec = hosted.specs.get(method)
        if spec is None or spec.is_async:
            raise MethodNotFoundError(f"{method} is not implemented")
        if not allowed(identity, hosted.rules[method]):
            if not identity.authenticated:
                raise NotAuthenticatedError(f"{method} needs a signed-in user")
            raise NotAuthorizedError(f"{identity.username}@{identity.group} may not call "
                                     f"{method}")
        spec.check_args(list(args))
        return spec.func(hosted.service, Call(identity=identity, request_id=request_id), *args)

    # -- RPC -------------------------------------------------------------------------------

    @rpc_method("checkJDL", rights="authenticated")
    def check_jdl(self, call: Call, jdl: str) -> dict[str, Any]:
        """Validate a JDL as ``submitJob`` would for the caller; nothing is stored."""
        ident = call.identity
        return check_jdl(jdl, owner=ident.username or "", group=ident.group or "",
                         vo=ident.vo or "", limits=limits_from(self.ctx.config))
