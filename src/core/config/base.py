"""The base model of every configuration section, in a module that imports pydantic only.

Commands import it through the client configuration (``core.client_config``), so that a ``d*``
command does not build the ~100 server section models at each start (~0.1 s).

Example::

    >>> class Demo(Section):
    ...     max_cpu_time: int = 0
    ...     ca_dir: str = ""
    >>> Demo.model_validate({"MaxCPUTime": 5, "CADir": "ca"}).max_cpu_time
    5
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic.alias_generators import to_pascal

#: YAML keys that are not the plain PascalCase of their attribute
SPECIAL_ALIASES = {"vos": "VOs", "dns": "DNs", "dn": "DN", "vo": "VO", "urls": "URLs",
                   "ca_dir": "CADir", "jwks_file": "JWKSFile", "jwks": "JWKS",
                   "trusted_balancers": "TrustedBalancers", "max_cpu_time": "MaxCPUTime",
                   "max_ram": "MaxRAM"}


def alias(name: str) -> str:
    """The YAML key of the attribute ``name`` (``job_share`` -> ``JobShare``)."""
    return SPECIAL_ALIASES.get(name, to_pascal(name))


class Section(BaseModel):
    """Base of every section: PascalCase keys in YAML, frozen, unknown keys refused."""

    model_config = ConfigDict(
        alias_generator=alias, populate_by_name=True, extra="forbid", frozen=True
    )

    @field_validator("*", mode="after")
    @classmethod
    def _resolve_paths(cls, value: Any, info: ValidationInfo) -> Any:
        """Relative paths are relative to the config file's directory (context ``base_dir``)."""
        base = (info.context or {}).get("base_dir")
        if base is not None and isinstance(value, Path) and not value.is_absolute():
            return Path(base) / value
        return value
