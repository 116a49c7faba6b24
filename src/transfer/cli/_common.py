"""What the transfer commands share: output as ``key: value`` lines, tables or JSON.

Example::

    >>> print_record({"Name": "ftp1", "Port": 21})
    Name: ftp1
    Port: 21
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from core.cli.common import print_json


def text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(text(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={text(v)}" for k, v in sorted(value.items())) or "-"
    return str(value)


def print_record(record: dict[str, Any], skip: Sequence[str] = ()) -> None:
    for key, value in record.items():
        if key not in skip:
            print(f"{key}: {text(value)}")


def print_rows(fields: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    """A plain aligned table (no numbering), one line per row."""
    if not rows:
        print("No output")
        return
    cells = [[text(r.get(f)) for f in fields] for r in rows]
    widths = [max(len(f), *(len(c[i]) for c in cells)) for i, f in enumerate(fields)]
    print("  ".join(f.ljust(w) for f, w in zip(fields, widths, strict=True)).rstrip())
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())


def output(value: Any, fmt: str) -> bool:
    """Print ``value`` as JSON when ``fmt`` is json; True when done."""
    if fmt == "json":
        print_json(value)
        return True
    return False
