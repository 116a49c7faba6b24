"""The validated pilotwms configuration: one YAML file, typed objects, no global singleton.

Load it once at start-up and pass it to what needs it::

    >>> from core.config import Config
    >>> cfg = Config.model_validate({"Registry": {"VOs": {"demo": {}}}})
    >>> cfg.server.port
    8443

See :mod:`core.config.schema` for every section and :mod:`core.config.loader` for reading files
and the environment.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.config.loader import load_config
    from core.config.schema import (
        AuthConfig,
        Config,
        GroupConfig,
        IssuerConfig,
        RegistryConfig,
        ServerConfig,
        ServiceConfig,
        SystemConfig,
        UserConfig,
    )

__all__ = [
    "AuthConfig",
    "Config",
    "GroupConfig",
    "IssuerConfig",
    "RegistryConfig",
    "ServerConfig",
    "ServiceConfig",
    "SystemConfig",
    "UserConfig",
    "load_config",
]


def __getattr__(name: str) -> Any:
    """The names above, imported on first use: ``core.config.base`` (what commands need)
    stays light, without the server's section models."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module("core.config.loader" if name == "load_config"
                                     else "core.config.schema")
    return getattr(module, name)
