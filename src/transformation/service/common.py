"""What the transformation services share: engines, the catalog view, settings, actors.

Example::

    >>> from core.security.identity import Identity
    >>> actor_of(Identity(username="alice", group="prod", vo="demo")).user
    'alice'
"""

from __future__ import annotations

from core.config.schema import Config
from core.rpc.context import ServerContext
from core.security.identity import Identity
from transformation.db.schema import SYSTEM
from transformation.logic.catalog import CatalogView
from transformation.logic.transformations import Actor

DMS_SYSTEM = "DataManagement"


def actor_of(ident: Identity) -> Actor:
    return Actor(ident.username or "", ident.group or "", ident.vo or "",
                 frozenset(ident.properties))


def catalog_of(ctx: ServerContext) -> CatalogView:
    return CatalogView(ctx.engine(DMS_SYSTEM))


def known_ses(config: Config) -> list[str] | None:
    """The configured SEs (None when none are configured: names are not checked)."""
    return sorted(config.resources.storage_elements) or None


__all__ = ["SYSTEM", "actor_of", "catalog_of", "known_ses"]
