"""Element statuses as DIRAC's Resource Status System tables show them, from our own state.

pilotwms keeps no RSS database: a site's status is its site-mask status (``Active`` unless
banned), a computing element has its site's status, and a storage element's
``ReadAccess``/``WriteAccess``/``CheckAccess``/``RemoveAccess`` come from
``Resources.StorageElements.<SE>`` (``ReadAccess: false`` -> ``Banned``; ``CheckAccess`` follows
``ReadAccess``). The sandbox store's SE (``ProductionSandboxSE``) is always ``Active``. Rows
carry DIRAC's columns, so :func:`select` answers ``ResourceStatusClient.select`` (what DIRAC's
``ResourceStatus``/``SiteStatus`` caches, ``StorageElement`` objects and data commands read).

Example::

    >>> from core.config.schema import Config
    >>> cfg = Config.model_validate({"Resources": {"StorageElements": {"DISK": {
    ...     "Protocols": [{"Plugin": "File", "Path": "/d"}], "WriteAccess": False}}}})
    >>> now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> rows = element_rows(cfg, {}, sandbox_se="SBSE", now=now)
    >>> value, columns = select(rows, "ResourceStatus",
    ...                         {"Name": "DISK", "Meta": {"columns": ["StatusType", "Status"]}})
    >>> value, columns
    ([['ReadAccess', 'Active'], ['WriteAccess', 'Banned'], ['CheckAccess', 'Active'], \
['RemoveAccess', 'Active']], ['statustype', 'status'])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from core.config.schema import Config
from core.exceptions import InvalidArgumentError

ACTIVE = "Active"
BANNED = "Banned"
SE_STATUS_TYPES = ("ReadAccess", "WriteAccess", "CheckAccess", "RemoveAccess")
#: DIRAC's column order of the Site/Resource/Node status tables
COLUMNS = ("Name", "StatusType", "Status", "Reason", "DateEffective", "TokenExpiration",
           "ElementType", "LastCheckTime", "TokenOwner", "VO")
#: the tables DIRAC's ResourceStatusClient names (<element><tableType>)
TABLES = {f"{element}{kind}" for element in ("Site", "Resource", "Node")
          for kind in ("Status", "Log", "History")}
NEVER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
OWNER = "rs_svc"


@dataclass(frozen=True)
class ElementRow:
    table: str
    name: str
    status_type: str
    status: str
    element_type: str
    reason: str
    date_effective: datetime

    def column(self, name: str) -> Any:
        return {"name": self.name, "statustype": self.status_type, "status": self.status,
                "reason": self.reason, "dateeffective": self.date_effective,
                "tokenexpiration": NEVER, "elementtype": self.element_type,
                "lastchecktime": self.date_effective, "tokenowner": OWNER,
                "vo": "all"}[name.lower()]


def element_rows(config: Config, mask: Mapping[str, tuple[str, datetime, str]], *,
                 sandbox_se: str, now: datetime) -> list[ElementRow]:
    """Every element's rows. ``mask``: site -> (status, last change, comment) from the site
    mask (sites never set are Active)."""
    rows: list[ElementRow] = []
    sites = dict.fromkeys([*config.resources.sites, *mask])
    for site in sites:
        status, since, comment = mask.get(site, (ACTIVE, now, ""))
        reason = comment or "site mask"
        rows.append(ElementRow("SiteStatus", site, "all", status, "Site", reason, since))
        site_config = config.resources.sites.get(site)
        for ce in site_config.ces if site_config is not None else ():
            rows.append(ElementRow("ResourceStatus", ce, "all", status, "ComputingElement",
                                   f"site {site}: {reason}", since))
    for name, se in config.resources.storage_elements.items():
        flags = {"ReadAccess": se.read_access, "WriteAccess": se.write_access,
                 "CheckAccess": se.read_access, "RemoveAccess": se.remove_access}
        for kind in SE_STATUS_TYPES:
            rows.append(ElementRow("ResourceStatus", name, kind,
                                   ACTIVE if flags[kind] else BANNED, "StorageElement",
                                   "pilotwms configuration", now))
    if sandbox_se not in config.resources.storage_elements:
        for kind in SE_STATUS_TYPES:
            rows.append(ElementRow("ResourceStatus", sandbox_se, kind, ACTIVE,
                                   "StorageElement", "pilotwms sandbox store", now))
    return rows


def _matches(row: ElementRow, column: str, wanted: Any) -> bool:
    if not wanted:  # DIRAC skips empty conditions
        return True
    value = row.column(column)
    if isinstance(wanted, list | tuple):
        return value in wanted
    if isinstance(wanted, str | datetime | bool):
        return bool(value == wanted)
    return True  # DIRAC logs and ignores conditions of other types


def select(rows: list[ElementRow], table: str, params: Mapping[str, Any]
           ) -> tuple[list[list[Any]], list[str]]:
    """DIRAC's ``select(table, params)``: the rows of ``table`` matching the column
    conditions of ``params`` (a value, or a list of values), with ``Meta`` ``columns``,
    ``older``/``newer`` ([column, datetime]), ``order`` and ``limit``. Returns (rows,
    column names): the requested columns lower-cased, else DIRAC's column order."""
    if table not in TABLES:
        raise InvalidArgumentError(f"unknown table {table!r}; known: {', '.join(sorted(TABLES))}")
    params = dict(params)
    meta = params.pop("Meta", None) or {}
    if not isinstance(meta, Mapping):
        raise InvalidArgumentError("Meta must be a dict")
    wanted = [str(c).lower() for c in meta.get("columns") or []]
    known = {c.lower() for c in COLUMNS}
    unknown = sorted({*wanted, *(str(k).lower() for k in params)} - known)
    if unknown:
        raise InvalidArgumentError(f"{table} has no column(s) {', '.join(unknown)}")
    found = [r for r in rows if r.table == table
             and all(_matches(r, column, value) for column, value in params.items())]
    for key, keep in (("older", lambda a, b: a < b), ("newer", lambda a, b: a > b)):
        bound = meta.get(key)
        if bound:
            found = [r for r in found if keep(r.column(str(bound[0])), bound[1])]
    order = meta.get("order")
    if order:
        order = [order] if isinstance(order, str) else list(order)
        found.sort(key=lambda r: r.column(str(order[0])),
                   reverse=len(order) == 2 and str(order[1]).lower() == "desc")
    limit = meta.get("limit")
    if limit:
        found = found[:int(limit)]
    columns = wanted or list(COLUMNS)
    return [[r.column(c) for c in columns] for r in found], columns
