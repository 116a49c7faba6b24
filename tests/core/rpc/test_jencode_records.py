"""``jencode.Records``: a page of records written from the cursor's tuples is, byte for byte,
the encoding of the records as dicts (or lists) with their datetimes marked, whatever the
values: unicode, control characters, None, large integers, values equal but of other types
(1, 1.0, True), str subclasses, nested lists, non-text names, names given twice."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from enum import Enum
from itertools import repeat
from typing import Any

import pytest

from core.rpc import jencode
from core.rpc.jencode import Records, datetime_marker, decode, encode, mark_datetimes

UTC = timezone.utc


class Text(str, Enum):
    DONE = "Done"


ROWS: list[tuple[Any, ...]] = [
    (1, "Done", "2026-01-02 03:04:05", None, 1.5),
    (2**63 - 1, "héllo ☃ \u2028 \"quoted\" \\ back", None, "", True),
    (-(2**63), "\x00\x1f control", "0999-12-31 23:59:59", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", 1),
    (0, "Done", "2026-01-02 03:04:05", "Done", 1.0),
    (2**70, Text.DONE, "2026-12-31 23:59:59", "x" * 300, [1, ["a", None]]),
    (5, "%s %% {}", "2026-01-02 03:04:05", "tab\there", float("nan")),
]
NAMES = ["JobID", "Status", "LastUpdateTime", "Name", "Other"]


def _general(names: list[Any], rows: list[tuple[Any, ...]], positions: list[int],
             as_lists: bool) -> str:
    marked = mark_datetimes(rows, positions)
    return encode(marked if as_lists else list(map(dict, map(zip, repeat(names), marked))))


@pytest.mark.parametrize("as_lists", [False, True])
@pytest.mark.parametrize("names", [
    NAMES, ["JobID", "Status", "JobID", "Name", "Other"],  # dict() keeps one JobID
    ["JobID", "Stätus \"☃\"", "%s", "Name", "Other"], [1, "a", None, "b", "c"]])
@pytest.mark.parametrize("positions", [[], [2], [2, 3]])
@pytest.mark.parametrize("take", [slice(None), slice(0, 1), slice(0, 0), slice(3, 4),
                                  slice(0, 4)])
def test_records_encode_as_the_records(as_lists: bool, names: list[Any],
                                       positions: list[int], take: slice) -> None:
    rows = ROWS[take]
    records = Records(names, rows, positions, as_lists=as_lists)
    assert encode(records) == _general(names, rows, positions, as_lists)
    assert encode({"OK": True, "Value": {"Total": 3, "Records": records, "X": "y"}}) == encode(
        {"OK": True, "Value": {"Total": 3, "Records": records.records(), "X": "y"}})


def test_one_column_and_no_column() -> None:
    assert encode(Records(["JobID"], [(1,), (2,)])) == '[{"JobID": 1}, {"JobID": 2}]'
    assert encode(Records(["JobID"], [(1,), (2,)], as_lists=True)) == "[[1], [2]]"
    assert encode(Records([], [(), ()])) == "[{}, {}]"
    assert encode(Records([], [(), ()], as_lists=True)) == "[[], []]"
    assert encode(Records(["T"], [(None,), ("2026-01-02 03:04:05",)], [0])) == encode(
        [{"T": None}, {"T": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}])


def test_records_are_their_records() -> None:
    records = Records(["JobID", "T"], [(1, "2026-01-02 03:04:05")], [1])
    assert len(records) == 1
    assert records == [{"JobID": 1, "T": datetime_marker("2026-01-02 03:04:05")}]
    assert records[0]["JobID"] == 1 and list(records) == records.records()
    assert decode(encode(records)) == [{"JobID": 1,
                                        "T": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}]
    with pytest.raises(ValueError):
        encode(Records(["JobID", "T"], [(1, "a"), (2,)]))  # ragged rows: a caller's bug


def test_several_records_in_one_reply_and_no_leftover_after_an_error() -> None:
    a = Records(["A"], [(1,)])
    b = Records(["B"], [(Records(["C"], [(2,)]),)])  # one inside the other
    assert encode({"a": a, "b": [b, a]}) == (
        '{"a": [{"A": 1}], "b": [[{"B": [{"C": 2}]}], [{"A": 1}]]}')
    with pytest.raises(TypeError):
        encode([a, object()])
    assert encode(["x"]) == '["x"]'
    assert not getattr(jencode._pending, "texts", None)


def test_a_placeholder_spelled_by_data_is_data() -> None:
    """Text that looks like a placeholder but was not made by this encode stays as it is."""
    fake = f"{jencode._TOKEN[:-8]}0"
    assert encode([fake, Records(["A"], [(1,)])]) == f'["{fake}", [{{"A": 1}}]]'


def test_threads_encode_their_own_records() -> None:
    errors: list[str] = []

    def work(n: int) -> None:
        records = Records(["JobID", "Name"], [(i, f"n{n}-{i}") for i in range(200)])
        expected = encode(records.records())
        for _ in range(50):
            if encode({"n": n, "Records": records}) != f'{{"n": {n}, "Records": {expected}}}':
                errors.append(f"thread {n}")
    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


@pytest.mark.parametrize("column", [
    [1, None, 2**70, 1, -5], [None, None], ["a", None, "a", "é"], ["a", "b\u2028", "a"],
    [1, 1.0, True, None], [b"x", None], [datetime(2026, 1, 2, tzinfo=UTC), None]])
@pytest.mark.parametrize("positions", [[], [0]])
def test_one_column_of_each_kind(column: list[Any], positions: list[int]) -> None:
    rows = [(v, i) for i, v in enumerate(column)]
    for as_lists in (False, True):
        assert encode(Records(["A", "B"], rows, positions, as_lists=as_lists)) == _general(
            ["A", "B"], rows, positions, as_lists)
