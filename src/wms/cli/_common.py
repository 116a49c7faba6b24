"""What the COMDIRAC-style commands share: job-ID arguments, DIRAC's table formats, progress.

Formats are DIRAC's ``ArrayFormatter`` ones: ``pretty`` (a header, a row of ``=``, columns
separated by two spaces, values that read as integers right-aligned, "No output" when empty),
``csv`` (a comma after every field, header included) and ``json`` (a list of objects).

Example::

    >>> print(format_table([[12, "Waiting"], [3, "Done"]], ["JobID", "Status"], "pretty",
    ...                    sort="JobID"))
    JobID  Status
    ================
        3  Done
       12  Waiting
    >>> print(format_table([[3, "Done"]], ["JobID", "Status"], "csv"))
    JobID,Status,
    3,Done,
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from core.exceptions import InvalidArgumentError
from wms.client import Progress

FORMATS = ("pretty", "csv", "json")
#: transfers at least this big get a progress bar (on a terminal)
LARGE_TRANSFER = 4 * 1024 * 1024


def split_ids(args: Iterable[str], input_file: str | None = None) -> list[int]:
    """Job IDs from arguments (comma-separated allowed) and an optional file of IDs.

    >>> split_ids(["1,2", "3"])
    [1, 2, 3]
    """
    parts: list[str] = []
    for arg in args:
        parts.extend(arg.split(","))
    if input_file:
        try:
            text = Path(input_file).read_text()
        except OSError as exc:
            raise InvalidArgumentError(f"cannot read {input_file}: {exc.strerror}") from None
        for line in text.splitlines():
            parts.extend(line.split(","))
    out = []
    for part in parts:
        part = part.strip()
        if not part:
            continue
        if not part.isdigit():
            raise InvalidArgumentError("Expected integer for jobID")
        out.append(int(part))
    return out


def value_text(value: Any) -> str:
    """A wire value as DIRAC prints it (datetimes without time zone nor microseconds)."""
    if type(value) is str:  # most cells: no conversion
        return value
    if isinstance(value, datetime):
        if value.tzinfo is not None and value.utcoffset():
            value = value.astimezone(timezone.utc)
        return value.isoformat(" ", "seconds")[:19]
    if isinstance(value, date):
        return value.strftime("%Y-%m-%d")
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value_text(value)
    return value


def _is_int(text: str) -> bool:
    try:
        int(text.replace(",", ""))
    except ValueError:
        return False
    return True


def _pretty(rows: list[list[str]], headers: Sequence[str]) -> str:
    if not rows:
        return "No output"
    sep = "  "
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        cells = [v.rjust(w) if _is_int(v) else v.ljust(w)
                 for v, w in zip(values, widths, strict=True)]
        return sep.join(cells).rstrip() if cells else ""

    out = [line([h.strip() for h in headers]), "=" * (sum(widths) + len(sep) * len(widths))]
    out.extend(line(r) for r in rows)
    return "\n".join(out)


def format_table(records: Sequence[Sequence[Any]], headers: Sequence[str], fmt: str,
                 sort: str | None = None) -> str:
    """``records`` (rows of values in ``headers`` order) in a DIRAC format, sorted by the
    ``sort`` column when given. No trailing newline."""
    if fmt not in FORMATS:
        raise InvalidArgumentError(
            f"Output format not supported: {fmt} not in {', '.join(FORMATS)}")
    order = list(range(len(records)))
    if sort is not None:
        column = list(headers).index(sort)
        order.sort(key=lambda i: _sort_key(records[i][column]))
    ordered = [records[i] for i in order]
    if fmt == "json":
        return json.dumps([{h: _json_value(v) for h, v in zip(headers, r, strict=True)}
                           for r in ordered])
    texts = [[value_text(v).strip() for v in r] for r in ordered]
    if fmt == "csv":
        lines = ["".join(f"{h}," for h in headers)]
        lines.extend("".join(f"{v}," for v in r) for r in texts)
        return "\n".join(lines)
    return _pretty(texts, headers)


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool) or value is None:
        return (2, str(value))
    if isinstance(value, int | float):
        return (0, value)
    return (1, value_text(value))


class ProgressBar:
    """A one-line progress bar on a terminal: ``label [#####.....] 12.0/40.0 MiB``."""

    WIDTH = 30

    def __init__(self, label: str, stream: TextIO | None = None,
                 threshold: int = LARGE_TRANSFER) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.threshold = threshold
        self.shown = False
        self._last = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        if total is not None and total < self.threshold:
            return
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self._last < 0.1 and self.shown:
            return
        self._last = now
        mib = done / 1048576
        if total:
            filled = int(self.WIDTH * done / total)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            text = f"\r{self.label} [{bar}] {mib:.1f}/{total / 1048576:.1f} MiB"
        else:
            text = f"\r{self.label} {mib:.1f} MiB"
        self.stream.write(text)
        if finished:
            self.stream.write("\n")
        self.stream.flush()
        self.shown = True


def progress_for(label: str, stream: TextIO | None = None) -> Progress | None:
    """A progress bar when ``stream`` (default stderr) is a terminal, else None."""
    stream = stream or sys.stderr
    return ProgressBar(label, stream) if stream.isatty() else None


def print_error(message: str) -> None:
    print(f"ERROR: {message}", file=sys.stderr)
