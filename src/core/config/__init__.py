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
