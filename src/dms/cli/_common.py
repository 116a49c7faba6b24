"""What the catalog commands share: the client, the session, DIRAC's listing and table formats.

* :func:`print_table` is DIRAC's ``printTable`` (numbered rows, a ``=`` rule under the header,
  numbers right-aligned, a final ``Total`` row unnumbered and followed by a ``-`` rule, a blank
  line at the end); :func:`int_with_commas` its thousands separator.
* :func:`mode_string` is DIRAC's ``rwxr-x---`` rendering.
* Errors are printed as COMDIRAC prints them; the commands then exit with status 2.

Example::

    >>> print_table(["StorageElement", "Size", "Replicas"],
    ...             [("DISK", "1,024", "2"), ("Total", "1,024", "2")])
       StorageElement Size  Replicas
    ================================
     1 DISK           1,024        2
       Total          1,024        2
    ---------------------------------
    <BLANKLINE>
    >>> mode_string(0o750), int_with_commas(1234567)
    ('rwxr-x---', '1,234,567')
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from dms.catalog_client import FileCatalogClient
from dms.cli.session import Session, current_session


def catalog() -> FileCatalogClient:
    return FileCatalogClient.from_config()


def session() -> Session:
    return current_session()


def int_with_commas(value: int) -> str:
    return f"{int(value):,}"


def mode_string(mode: int) -> str:
    bits = ((stat.S_IRUSR, "r"), (stat.S_IWUSR, "w"), (stat.S_IXUSR, "x"),
            (stat.S_IRGRP, "r"), (stat.S_IWGRP, "w"), (stat.S_IXGRP, "x"),
            (stat.S_IROTH, "r"), (stat.S_IWOTH, "w"), (stat.S_IXOTH, "x"))
    return "".join(char if mode & bit else "-" for bit, char in bits)


def date_text(value: Any) -> str:
    """A catalog date as DIRAC prints it (``YYYY-mm-dd HH:MM:SS``, UTC)."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _is_number(text: str) -> bool:
    try:
        int(text.replace(",", ""))
    except ValueError:
        return False
    return True


def print_table(fields: Sequence[str], records: Sequence[Sequence[str]]) -> None:
    """DIRAC's ``printTable`` with numbering and a one-space column separator."""
    if not records:
        print("No output")
        return
    rows = [[str(v).strip() for v in rec] for rec in records]
    names = [f.strip() for f in fields]
    widths = [max([len(names[i])] + [len(r[i]) for r in rows]) for i in range(len(names))]
    number_width = len(str(len(rows))) + 1
    total_length = sum(widths) + len(names) + number_width + 1

    def cell(value: str, width: int, last: bool) -> str:
        text = (value.rjust(width) if _is_number(value) else value.ljust(width)) + " "
        return text.rstrip() if last else text

    out = [" " * (number_width + 1)]
    top = number_width + 1
    for i, name in enumerate(names):
        text = cell(name, widths[i], i == len(names) - 1)
        out.append(text)
        top += len(text)
    out.append("\n" + "=" * top + "\n")
    for index, row in enumerate(rows):
        total = index == len(rows) - 1 and row[0] == "Total"
        out.append(" " * (number_width + 1) if total else
                   str(index + 1).rjust(number_width) + " ")
        out.extend(cell(v, widths[i], i == len(row) - 1) for i, v in enumerate(row))
        out.append("\n")
        if total:
            out.append("-" * total_length + "\n")
    print("".join(out))


def human_size(num: float) -> str:
    """COMDIRAC's ``dls -H`` sizes (powers of 2: ``1.0KiB``, ``20.0MiB``)."""
    for unit in ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi"):
        if abs(num) < 1024.0:
            return f"{num:3.1f}{unit}B"
        num /= 1024.0
    return f"{num:.1f}YiB"
