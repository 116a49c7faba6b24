"""What the COMDIRAC-style commands share: job-ID arguments, DIRAC's table formats, progress.

Formats are DIRAC's ``ArrayFormatter`` ones, text for text (DIRAC's own COMDIRAC commands are
the oracle, tests/interop/test_dirac_commands.py): ``pretty`` (a header, a row of ``=``, columns
separated by two spaces, values that read as integers right-aligned, a newline after every row,
"No output" when empty), ``csv`` (a comma after every field, header included, a newline after
every line) and ``json`` (a list of objects). The commands print the text with ``print``, as
DIRAC's commands log it: a table is followed by an empty line.

Example::

    >>> print(format_table([[12, "Waiting"], [3, "Done"]], ["JobID", "Status"], "pretty",
    ...                    sort="JobID"), end="")
    JobID  Status
    ================
        3  Done
       12  Waiting
    >>> format_table([[3, "Done"]], ["JobID", "Status"], "csv")
    'JobID,Status,\\n3,Done,\\n'
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
    if text.isascii() and text.isdigit():  # most integers: no exception to raise and catch
        return True
    try:
        int(text.replace(",", ""))
    except ValueError:
        return False
    return True


def _pretty(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    if not rows:
        return "No output"
    sep = "  "
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    numeric: dict[str, bool] = {}  # per distinct text: columns repeat their values

    def line(values: Sequence[str]) -> str:
        cells = []
        for v, w in zip(values, widths, strict=True):
            right = numeric.get(v)
            if right is None:
                right = numeric[v] = _is_int(v)
            cells.append(v.rjust(w) if right else v.ljust(w))
        return sep.join(cells).rstrip() if cells else ""

    out = [line([h.strip() for h in headers]), "=" * (sum(widths) + len(sep) * len(widths))]
    out.extend(line(r) for r in rows)
    return "\n".join(out) + "\n"


def format_table(records: Sequence[Sequence[Any]], headers: Sequence[str], fmt: str,
                 sort: str | None = None) -> str:
    """``records`` (rows of values in ``headers`` order) in a DIRAC format, sorted by the
    ``sort`` column when given; the text DIRAC's ``ArrayFormatter`` makes (pretty and csv end
    with a newline, json and "No output" do not)."""
    if fmt not in FORMATS:
        raise InvalidArgumentError(
            f"Output format not supported: {fmt} not in {', '.join(FORMATS)}")
    ordered: Sequence[Sequence[Any]] = records
    if sort is not None:
        column = list(headers).index(sort)
        keys = [r[column] for r in records]
        if set(map(type, keys)) == {int}:  # job IDs: the values are their own keys
            order = sorted(range(len(records)), key=keys.__getitem__)
        else:
            order = sorted(range(len(records)), key=lambda i: _sort_key(keys[i]))
        ordered = [records[i] for i in order]
    if fmt == "json":
        return json.dumps([{h: _json_value(v) for h, v in zip(headers, r, strict=True)}
                           for r in ordered])
    # cell texts a column at a time: one comprehension per column, whose values share a type
    columns = list(zip(*ordered, strict=True)) if ordered else []
    texts = zip(*map(_column_texts, columns), strict=True)
    if fmt == "csv":
        head = "".join(f"{h}," for h in headers)
        if not ordered or not headers:
            return "\n".join([head, *("" for _ in ordered)]) + "\n"
        # every line "v1,v2,...,vn," (a comma after every field): joined in C, line by line
        return head + "\n" + ",\n".join(map(",".join, texts)) + ",\n"
    return _pretty(list(texts), headers)


def _column_texts(values: Sequence[Any]) -> list[str]:
    """``[value_text(v).strip() for v in values]``, without a call per value for the usual
    columns (all text, all integers, all UTC datetimes)."""
    types = set(map(type, values))  # C speed, where all() over a generator is not
    if types == {str}:
        return list(map(str.strip, values))
    if types == {int}:
        return list(map(str, values))
    if types == {datetime} and {v.tzinfo for v in values} == {timezone.utc}:
        return [v.isoformat(" ", "seconds")[:19] for v in values]
    return [value_text(v).strip() for v in values]


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
