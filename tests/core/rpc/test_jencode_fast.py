"""The fast paths of JEncode give what the general path gives, byte for byte.

* :func:`~core.rpc.jencode.mark_datetimes` (records of a large page whose datetimes the
  database wrote as text) encodes to the bytes of encoding the datetimes themselves;
* the shared encoder writes what DIRAC's own ``JEncode.encode`` writes (the installed DIRAC
  client is the oracle) for long lists of lists, text, integers, None and datetimes;
* the datetime decoding fast path accepts and refuses what the general checks do, and gives
  ``timezone.utc`` itself.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from core.exceptions import BadRequestError
from core.rpc.jencode import Records, datetime_marker, decode, encode, mark_datetimes

UTC = timezone.utc
REPO = Path(__file__).resolve().parents[3]

EDGE_ROWS: list[tuple[Any, ...]] = [
    (1, "Done", None, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    (2**63 - 1, "héllo ☃ \u2028 \"quoted\" \\ back", "", None),
    (-(2**63), "\x00\x1f control", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
     datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    (0, "x" * 300, "tab\there", datetime(2026, 12, 31, 23, 59, 59, 500000, tzinfo=UTC)),
]


def _as_db_text(value: Any) -> Any:
    """What the database writes for a datetime: its first 19 characters, naive UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")[:19]
    return value


def test_marked_rows_encode_as_the_datetimes_do() -> None:
    texts = [tuple(_as_db_text(v) for v in row) for row in EDGE_ROWS]
    marked = mark_datetimes(texts, [3])
    assert encode(marked) == encode(EDGE_ROWS)
    names = ["JobID", "Status", "MinorStatus", "LastUpdateTime"]
    assert encode([dict(zip(names, r, strict=True)) for r in marked]) == encode(
        [dict(zip(names, r, strict=True)) for r in EDGE_ROWS])
    assert decode(encode(marked)) == [list(r) for r in EDGE_ROWS_TRUNCATED]


EDGE_ROWS_TRUNCATED = [tuple(v.replace(microsecond=0) if isinstance(v, datetime) else v
                             for v in row) for row in EDGE_ROWS]


def test_mark_datetimes_edges() -> None:
    assert mark_datetimes([], [0]) == []
    assert mark_datetimes([[1, "a"]], []) == [(1, "a")]
    assert mark_datetimes([(None,), ("2026-01-02 03:04:05",)], [0]) == [
        (None,), (datetime_marker("2026-01-02 03:04:05"),)]
    assert decode(encode(datetime_marker("2026-01-02 03:04:05"))) == datetime(
        2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with pytest.raises(ValueError):
        mark_datetimes([(1, "a"), (2,)], [1])  # ragged rows are a caller's bug, not data


def _dirac_python() -> str:
    venv = os.environ.get("PILOTWMS_DIRAC_VENV", str(REPO / ".cache" / "dirac-venv"))
    python = os.environ.get("PILOTWMS_DIRAC_CLIENT_PYTHON", f"{venv}/bin/python")
    if not Path(python).exists():
        proc = subprocess.run(["bash", str(REPO / "scripts/install-dirac-client.sh")],
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        python = proc.stdout.strip().splitlines()[-1]
    return python


_DIRAC_ENCODE = """
import pickle, sys
from DIRAC.Core.Utilities.JEncode import encode
for value in pickle.load(sys.stdin.buffer):
    sys.stdout.write(encode(value) + "\\n")
"""


def test_encoder_writes_dirac_s_bytes() -> None:
    """Our encoder against DIRAC's ``JEncode.encode`` on long lists and the edge cases."""
    page = [[i, f"job{i}", "Done", None, 2**40 + i, [i, [str(i), None]],
             datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC) + timedelta(seconds=i)]
            for i in range(2000)]
    values: list[Any] = [
        page,
        [dict(zip(["JobID", "Name", "Status", "Site", "Big", "Nested", "Time"], r,
                  strict=True)) for r in page[:500]],
        # DIRAC's strftime writes year 999 as "999" (the platform's %Y), JEncode's decoders
        # and ours read 4 digits: years before 1000 are left out of the comparison
        [list(r) for r in EDGE_ROWS if not (isinstance(r[3], datetime) and r[3].year < 1000)],
        {"Total": 3, "Records": [[1, "é"], [2, "☃"]], "TotalIsExact": True},
        [None, True, False, 0, -1, 2**64, -(2**70), 1.5, "", "\ud7ff", [], {}, [[[]]]],
        [date(2026, 2, 28), b"\x00\xff"],
    ]
    proc = subprocess.run([_dirac_python(), "-c", _DIRAC_ENCODE], input=pickle.dumps(values),
                          capture_output=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    theirs = proc.stdout.decode().splitlines()
    ours = [encode(v) for v in values]
    assert len(theirs) == len(ours)
    for mine, dirac in zip(ours, theirs, strict=True):
        assert mine == dirac
    # and the marked form of the page writes the same bytes again
    texts = [tuple(_as_db_text(v) for v in r) for r in page]
    assert encode(mark_datetimes(texts, [6])) == theirs[0]
    # and so does a page written from the rows by Records, as dicts and as lists
    names = ["JobID", "Name", "Status", "Site", "Big", "Nested", "Time"]
    assert encode(Records(names, texts, [6], as_lists=True)) == theirs[0]
    assert encode(Records(names, texts[:500], [6])) == theirs[1]


@pytest.mark.parametrize("text", [
    "2026-01-02 03:04:05", "2026-01-02 03:04:05.123456", "0001-01-01 00:00:00",
    "9999-12-31 23:59:59.999999", "2024-02-29 12:00:00"])
def test_datetime_fast_decode_agrees_with_the_general_parser(text: str) -> None:
    value = decode(json.dumps({"__dCls": "dt", "obj": text}))
    assert value == datetime.strptime(  # noqa: DTZ007 (zone added below)
        text, "%Y-%m-%d %H:%M:%S.%f" if "." in text else "%Y-%m-%d %H:%M:%S"
    ).replace(tzinfo=UTC)
    assert value.tzinfo is UTC


@pytest.mark.parametrize("text", [
    "2026-02-30 00:00:00", "2026-01-02 24:00:00", "2026-01-02 03:04:60",
    "2026-01-02 03:04:05.12345", "2026-01-02 03:04:05.1234567", "２０２６-01-02 03:04:05",
    "2026-01-02 03:04:05Z", "2026-01-02 03:04:05\n", " 2026-01-02 03:04:05", ""])
def test_datetime_fast_decode_refuses_what_is_not_dirac_s(text: str) -> None:
    with pytest.raises(BadRequestError):
        decode(json.dumps({"__dCls": "dt", "obj": text}))


@pytest.mark.parametrize("text", [
    "2026-01-02 03:04:05", "2026-01-02 03:04:05.123456", "0001-01-01 00:00:00",
    "9999-12-31 23:59:59.999999"])
def test_datetimes_as_text_are_the_text_of_the_decoded_datetime(text: str) -> None:
    """What a table shows: the decoded datetime, formatted as the CLI formats it."""
    wire = json.dumps([{"__dCls": "dt", "obj": text}, {"a": [{"__dCls": "b64", "obj": "AA=="}]}])
    [shown, other] = decode(wire, datetimes_as_text=True)
    [value, other_general] = decode(wire)
    assert shown == value.isoformat(" ", "seconds")[:19]
    assert other == other_general == {"a": [b"\x00"]}


@pytest.mark.parametrize("text", [
    "2026-02-30 00:00:00", "2026-01-02 03:04:05Z", "2026-01-02T03:04:05", "", "x" * 19])
def test_datetimes_as_text_refuse_what_the_general_path_refuses(text: str) -> None:
    wire = json.dumps({"__dCls": "dt", "obj": text})
    with pytest.raises(BadRequestError):
        decode(wire)
    with pytest.raises(BadRequestError):
        decode(wire, datetimes_as_text=True)


@pytest.mark.parametrize("texts", [
    ["2026-01-02 03:04:05"] * 3 + ["2026-01-02 03:04:06", "2026-01-02 03:04:05"],
    ["2026-01-02 03:04:05", "2026-01-02 03:04:05.000001", "2026-01-02 03:04:05"],
])
def test_runs_of_one_time_decode_as_each_time_does(texts: list[str]) -> None:
    """The last time decoded is given again for the same text: same values, same texts."""
    wire = json.dumps([{"__dCls": "dt", "obj": t} for t in texts])
    one_by_one = [decode(json.dumps({"__dCls": "dt", "obj": t})) for t in texts]
    assert decode(wire) == one_by_one
    assert all(v.tzinfo is UTC for v in decode(wire))
    assert decode(wire, datetimes_as_text=True) == [v.isoformat(" ", "seconds")[:19]
                                                    for v in one_by_one]


@pytest.mark.parametrize("as_text", [False, True])
def test_a_bad_time_after_good_ones_is_refused(as_text: bool) -> None:
    good = {"__dCls": "dt", "obj": "2026-01-02 03:04:05"}
    for bad in ("2026-02-30 00:00:00", "2026-01-02 03:04:05Z", 5):
        with pytest.raises(BadRequestError):
            decode(json.dumps([good, good, {"__dCls": "dt", "obj": bad}]),
                   datetimes_as_text=as_text)
    with pytest.raises(BadRequestError):  # an unknown marker with a known time's text
        decode(json.dumps([good, {"__dCls": "nope", "obj": good["obj"]}]),
               datetimes_as_text=as_text)
