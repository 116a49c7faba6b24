"""Read the YAML configuration and the environment into a validated :class:`Config`.

Settings that differ per deployment and may be secret come from the environment, kept apart
from the YAML (the DiracX way):

* ``PILOTWMS_DB`` overrides the top-level ``Database`` (the default of every system);
* ``PILOTWMS_DB_<SYSTEM>`` (system name upper-cased, e.g. ``PILOTWMS_DB_WORKLOADMANAGEMENT``)
  overrides ``Systems.<System>.Database``;
* ``PILOTWMS_CONFIG`` names the file when no path is given.

Example::

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "config.yaml"
    >>> _ = path.write_text("Server:\\n  Port: 9443\\n  HostCert: host.pem\\n")
    >>> cfg = load_config(path, environ={})
    >>> cfg.server.port, cfg.server.host_cert == path.parent / "host.pem"
    (9443, True)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from core.config.schema import Config
from core.exceptions import ConfigError

ENV_CONFIG = "PILOTWMS_CONFIG"
ENV_DB_PREFIX = "PILOTWMS_DB_"


def _format_errors(source: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{source}: {where}: {msg}")
    return "\n".join(lines)


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    if environ.get("PILOTWMS_DB"):
        data["Database"] = environ["PILOTWMS_DB"]
    # copies: the caller's mapping (and its nested sections) must not change
    systems = dict(data.get("Systems") or {})
    data["Systems"] = systems
    by_upper = {name.upper(): name for name in systems}
    for key, value in environ.items():
        if not key.startswith(ENV_DB_PREFIX) or not value:
            continue
        upper = key.removeprefix(ENV_DB_PREFIX)
        name = by_upper.get(upper)
        if name is None:
            continue  # a DB for a system this config does not run
        section = dict(systems[name] or {})
        section["Database"] = value
        systems[name] = section


def parse_config(
    data: Mapping[str, Any] | None,
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Validate an already-parsed mapping; errors name the key path and what is wrong."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping, not {type(data).__name__}")
    mutable = dict(data)
    _apply_env(mutable, os.environ if environ is None else environ)
    try:
        return Config.model_validate(mutable, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc)) from None


def load_config(
    path: str | Path | None = None, *, environ: Mapping[str, str] | None = None
) -> Config:
    """Load and validate the configuration file at ``path`` (or ``$PILOTWMS_CONFIG``)."""
    env = os.environ if environ is None else environ
    if path is None:
        if not env.get(ENV_CONFIG):
            raise ConfigError(f"No configuration file given and {ENV_CONFIG} is not set")
        path = env[ENV_CONFIG]
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where}: not valid YAML: {exc}") from None
    return parse_config(data, source=str(path), base_dir=path.parent.resolve(), environ=env)
