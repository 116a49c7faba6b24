"""Who may do what in the catalog: POSIX-like owner/group/mode checks, administrators, homes.

* An administrator (a group property in :attr:`CatalogSettings.admin_properties`, by default
  ``FileCatalogManagement``, or a trusted host) may do everything.
* Otherwise the object's owner uses the owner bits of its mode, members of its group (the
  caller's current group) the group bits, everybody else the other bits; reading an entry also
  needs ``x`` on every directory above it.
* VO areas: ``/<vo>``, ``/<vo>/user`` and ``/<vo>/user/<initial>`` belong to the VO (owner
  ``<vo>``, group the VO's default group, mode 755); ``/<vo>/user/<i>/<name>`` belongs to
  ``<name>``. They are made on demand when a user first writes under their own home.

Example::

    >>> from types import SimpleNamespace as Row
    >>> alice = Requester("alice", "demo_user", "demo")
    >>> may(alice, Row(owner="bob", owner_group="demo_user", mode=0o750), READ)
    True
    >>> may(alice, Row(owner="bob", owner_group="other", mode=0o750), READ)
    False
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

READ, WRITE, EXECUTE = 4, 2, 1
ADMIN_PROPERTY = "FileCatalogManagement"


@dataclass(frozen=True)
class Requester:
    """The caller, as the catalog sees it."""

    user: str
    group: str
    vo: str | None = None
    admin: bool = False
    #: every group the user belongs to (chgrp may give files to one of them)
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True)
class CatalogSettings:
    dir_mode: int = 0o755
    file_mode: int = 0o644
    admin_properties: frozenset[str] = frozenset({ADMIN_PROPERTY})
    #: VO name -> its default group (owner group of the VO areas)
    vo_groups: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: Mapping[str, Any], vo_groups: Mapping[str, str]
                     ) -> CatalogSettings:
        """From ``Systems.DataManagement.Services.FileCatalog.Options`` (DefaultDirMode,
        DefaultFileMode as octal strings, AdminProperties)."""
        def mode(key: str, default: int) -> int:
            value = options.get(key)
            if value is None:
                return default
            number = int(str(value), 8)
            if not 0 <= number <= 0o777:
                raise ValueError(f"{key} {value!r} is not a mode")
            return number

        props = options.get("AdminProperties") or [ADMIN_PROPERTY]
        if isinstance(props, str):
            props = [p.strip() for p in props.split(",") if p.strip()]
        return cls(dir_mode=mode("DefaultDirMode", 0o755),
                   file_mode=mode("DefaultFileMode", 0o644),
                   admin_properties=frozenset(props), vo_groups=dict(vo_groups))


def may(req: Requester, row: Any, bit: int) -> bool:
    """``req`` has permission ``bit`` (READ/WRITE/EXECUTE) on an entry with owner/group/mode."""
    if req.admin:
        return True
    if row.owner == req.user:
        shift = 6
    elif row.owner_group == req.group:
        shift = 3
    else:
        shift = 0
    return bool((row.mode >> shift) & bit)


def system_owner(path: str, settings: CatalogSettings) -> tuple[str, str] | None:
    """(owner, group) of a VO area or a user home, None for ordinary paths."""
    parts = path.split("/")[1:]
    if not parts or parts[0] not in settings.vo_groups:
        return None
    vo = parts[0]
    vo_group = settings.vo_groups[vo]
    if len(parts) == 1 or (parts[1] == "user" and len(parts) <= 3):
        return vo, vo_group
    if parts[1] == "user" and len(parts) == 4 and parts[3][:1] == parts[2]:
        return parts[3], vo_group
    return None


def on_own_home_chain(req: Requester, path: str) -> bool:
    """``path`` is the caller's home or one of the VO areas above it."""
    if not req.vo or not req.user:
        return False
    home = f"/{req.vo}/user/{req.user[0]}/{req.user}"
    return home == path or home.startswith(path.rstrip("/") + "/")
