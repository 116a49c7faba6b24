"""Profiles (server URLs, group, VO) and per-shell sessions, as COMDIRAC's ``dinit`` keeps them.

Used by ``dinit`` (core/cli/dinit.py) and by every command's client configuration.

``~/.pilotwms/profiles.yaml`` names profiles; each sets any of the client configuration's
keys (``URLs``, ``CADir``, ``Group``, ``VO``, ``Issuer``, ``ClientId``) over
``client.yaml``::

    default:                       # used by 'dinit' without a name, when present
      Group: demo_user
    admin:
      Group: demo_admin
    other-server:
      URLs: [https://other.example.org:8443]
      CADir: /etc/grid-security/certificates
      Group: other_user
      VO: other

``dinit [profile]`` records the chosen profile (and group) in a session file,
``~/.pilotwms/sessions/<key>.json`` (mode 600), where ``<key>`` is ``$PILOTWMS_SESSION`` or
else the parent process id: commands started from the same shell share the session, another
shell has its own (as COMDIRAC keys ``~/.dirac/`` sessions by the shell's pid). Every user
command's :func:`core.client_config.load_client_config` applies the session's profile.

Example::

    >>> from core.client_config import ClientConfig
    >>> cfg = ClientConfig.model_validate({"URLs": ["https://h:8443"], "Group": "a"})
    >>> apply_profile(cfg, {"Group": "b", "VO": "demo"}).group
    'b'
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from core.exceptions import ConfigError, InvalidArgumentError

if TYPE_CHECKING:
    from core.client_config import ClientConfig

ENV_SESSION = "PILOTWMS_SESSION"
PROFILE_KEYS = frozenset({"URLs", "CADir", "Group", "VO", "Issuer", "ClientId"})


def _home(environ: Mapping[str, str]) -> Path:
    from core.oauth_client import pilotwms_home

    return pilotwms_home(environ)


def profiles_path(environ: Mapping[str, str] | None = None) -> Path:
    return _home(os.environ if environ is None else environ) / "profiles.yaml"


def load_profiles(environ: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """The profiles file's content ({} when there is none); bad content is a ConfigError."""
    path = profiles_path(environ)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"{path}: expected 'name: {{Key: value, ...}}' entries")
    for name, entry in data.items():
        unknown = set(entry) - PROFILE_KEYS
        if unknown:
            raise ConfigError(f"{path}: profile {name}: unknown keys {sorted(unknown)} "
                              f"(allowed: {sorted(PROFILE_KEYS)})")
    return {str(k): dict(v) for k, v in data.items()}


def apply_profile(cfg: ClientConfig, profile: Mapping[str, Any],
                  base_dir: Path | None = None) -> ClientConfig:
    """``cfg`` with the profile's keys set over it (relative paths: from ``base_dir``)."""
    data = cfg.model_dump(by_alias=True, exclude_none=True)
    data.update(profile)
    try:
        return type(cfg).model_validate(data, context={"base_dir": base_dir} if base_dir
                                        else None)
    except ValidationError as exc:
        raise ConfigError(f"profile: {exc.errors()[0]['msg']}") from None


@dataclass
class Session:
    """What ``dinit`` remembers for one shell."""

    profile: str | None = None
    group: str | None = None
    proxy: str | None = None


def session_key(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    key = env.get(ENV_SESSION) or str(os.getppid())
    if not key.replace("-", "").replace("_", "").isalnum():
        raise InvalidArgumentError(f"${ENV_SESSION} must be letters, digits, - or _")
    return key


def session_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return _home(env) / "sessions" / f"{session_key(env)}.json"


def load_session(environ: Mapping[str, str] | None = None) -> Session | None:
    try:
        data = json.loads(session_path(environ).read_text())
        return Session(**data)
    except (OSError, ValueError, TypeError):
        return None


def save_session(session: Session, environ: Mapping[str, str] | None = None) -> Path:
    from core.oauth_client import _write_private

    path = session_path(environ)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    _write_private(path, json.dumps(asdict(session)))
    return path


def remove_session(environ: Mapping[str, str] | None = None) -> bool:
    try:
        session_path(environ).unlink()
    except FileNotFoundError:
        return False
    return True


def apply_session(cfg: ClientConfig, environ: Mapping[str, str] | None = None) -> ClientConfig:
    """``cfg`` as this shell's session sees it: its profile applied, then its group."""
    env = os.environ if environ is None else environ
    session = load_session(env)
    if session is None:
        return cfg
    if session.profile:
        profiles = load_profiles(env)
        if session.profile not in profiles:
            raise ConfigError(f"this shell's session uses the profile {session.profile!r}, "
                              f"which {profiles_path(env)} no longer has: run 'dinit' again")
        cfg = apply_profile(cfg, profiles[session.profile], profiles_path(env).parent)
    if session.group:
        cfg = cfg.model_copy(update={"group": session.group})
    return cfg
