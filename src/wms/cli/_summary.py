"""``dstat --summary``: live job counts from the newest WMS history snapshot (the Monitoring
service's ``getLatestSnapshot``), never a scan of the jobs table.

Counts are those of the last history interval (``Monitoring.HistoryPeriod``, 5 minutes by
default); users without a monitoring property see their own jobs only.

Example::

    dstat --summary               # jobs by status
    dstat --summary Site,Status   # by site and status
"""

from __future__ import annotations

from typing import Any

from core.client_config import make_client
from core.exceptions import InvalidArgumentError
from wms.cli._common import format_table, value_text

SERVICE = "Monitoring/Monitoring"
FIELDS = ("Status", "Site", "User", "UserGroup", "JobGroup", "JobType", "MinorStatus")


def summary_fields(text: str) -> list[str]:
    """``"Site,Status"`` -> the snapshot fields to group by.

    >>> summary_fields("site,Status")
    ['Site', 'Status']
    """
    known = {f.lower(): f for f in FIELDS}
    fields = []
    for item in text.split(","):
        name = known.get(item.strip().lower())
        if name is None:
            raise InvalidArgumentError(f"--summary: unknown field {item.strip()!r}; use "
                                       + ", ".join(FIELDS))
        fields.append(name)
    return fields


def print_summary(text: str, fmt: str) -> int:
    fields = summary_fields(text)
    with make_client(SERVICE) as client:
        snapshot: dict[str, Any] = client.call("getLatestSnapshot", "WMSHistory", fields)
    if snapshot.get("time") is None:
        raise InvalidArgumentError("no recent WMS history snapshot (is the WMSHistoryAgent, "
                                   "or the Monitoring service, running?)")
    rows = [list(row) for row in snapshot["rows"]]
    total = sum(int(row[-1]) for row in rows)
    print(format_table(rows, [*fields, "Jobs"], fmt))
    if fmt == "pretty":
        print(f"{total} job(s), snapshot of {value_text(snapshot['time'])} UTC")
    return 0
