"""``format_table``'s column-wise fast path writes what the general per-cell path writes
(the reference below is the general path, cell by cell), for every format and the awkward
values: None, booleans, floats, big integers, unicode, padded text, aware and naive
datetimes, dates, mixed columns."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest

from wms.cli._common import _json_value, _sort_key, format_table, value_text

UTC = timezone.utc
PARIS = timezone(timedelta(hours=1))


def reference(records: Sequence[Sequence[Any]], headers: Sequence[str], fmt: str,
              sort: str | None = None) -> str:
    """The general path: a sort key and a text per cell."""
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
        return "\n".join(lines) + "\n"
    if not texts:
        return "No output"

    def is_int(text: str) -> bool:
        try:
            int(text.replace(",", ""))
        except ValueError:
            return False
        return True

    widths = [max([len(h), *(len(r[i]) for r in texts)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        cells = [v.rjust(w) if is_int(v) else v.ljust(w)
                 for v, w in zip(values, widths, strict=True)]
        return "  ".join(cells).rstrip()

    out = [line([h.strip() for h in headers]), "=" * (sum(widths) + 2 * len(widths))]
    out.extend(line(r) for r in texts)
    return "\n".join(out) + "\n"


T = datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
TABLES: list[tuple[list[str], list[list[Any]], str]] = [
    # a dstat page: integer IDs (out of order), text, UTC datetimes
    (["JobID", "Status", "Site", "SubmissionTime"],
     [[12, "Done", "LCG.CERN.cern", T], [3, "Waiting", "ANY", T + timedelta(days=1)],
      [2**70, " padded ", "héllo ☃", T], [7, "Done", "", T]], "JobID"),
    # mixed columns: None, bools, floats, digits in text, other zones, naive, dates
    (["ID", "Value", "When"],
     [[1, None, datetime(2026, 1, 1, 12, tzinfo=PARIS)], [True, 1.5, date(2026, 2, 28)],
      ["10", "1,000", datetime(2026, 1, 1, 12)],  # noqa: DTZ001 (naive, as some callers)
      [None, "²", T], [2.5, "٣", None], [-4, "-4", T]], "ID"),
    (["Name"], [["b"], ["a"], ["b"]], "Name"),
    (["JobID", "Status"], [], "JobID"),
]


@pytest.mark.parametrize("fmt", ["pretty", "csv", "json"])
@pytest.mark.parametrize(("headers", "rows", "sort"), TABLES)
def test_fast_path_writes_the_general_path_s_text(headers: list[str], rows: list[list[Any]],
                                                  sort: str, fmt: str) -> None:
    assert format_table(rows, headers, fmt, sort=sort) == reference(rows, headers, fmt, sort)
    assert format_table(rows, headers, fmt) == reference(rows, headers, fmt)
    tuples = [tuple(r) for r in rows]  # rows as the search gives them
    assert format_table(tuples, headers, fmt, sort=sort) == reference(rows, headers, fmt, sort)
