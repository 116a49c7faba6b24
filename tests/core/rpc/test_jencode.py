"""JEncode: every wire type round-trips and matches DIRAC's markers byte for byte."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest

from core.exceptions import BadRequestError
from core.rpc.jencode import REPLY_LIMITS, REQUEST_LIMITS, Limits, decode, encode

UTC = timezone.utc


@pytest.mark.parametrize(
    "value",
    [
        None, True, False, 0, -7, 2**53, 1.5, "", "héllo ☃", [], {}, [1, "a", None],
        {"nested": {"list": [1, [2, [3]]]}},
        datetime(2026, 11, 22, 10, 11, 12, tzinfo=UTC),
        date(2026, 2, 28),
        b"", b"\x00\xff binary",
        {"when": [datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC)], "raw": [b"x"]},
    ],
)
def test_round_trip(value: object) -> None:
    assert decode(encode(value)) == value


def test_markers_are_dirac_s() -> None:
    text = encode([datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC), date(2026, 1, 2), b"ab"])
    assert json.loads(text) == [
        {"__dCls": "dt", "obj": "2026-01-02 03:04:05"},
        {"__dCls": "date", "obj": "2026-01-02"},
        {"__dCls": "b64", "obj": "YWI="},
    ]


def test_tuples_become_lists_and_int_keys_strings() -> None:
    assert decode(encode({"t": (1, (2, 3))})) == {"t": [1, [2, 3]]}
    assert decode(encode({12: "job", 13: "other"})) == {"12": "job", "13": "other"}


def test_datetimes_are_sent_in_utc_and_decoded_aware() -> None:
    paris = timezone(timedelta(hours=1))
    decoded = decode(encode(datetime(2026, 1, 1, 12, 0, 0, tzinfo=paris)))
    assert decoded == datetime(2026, 1, 1, 11, 0, 0, tzinfo=UTC)
    assert decoded.tzinfo is UTC
    # naive values are taken as UTC already, as DIRAC stores them
    naive = datetime(2026, 1, 1, 12)  # noqa: DTZ001
    assert decode(encode(naive)) == datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_dirac_microsecond_variant_is_accepted() -> None:
    value = decode('{"__dCls": "dt", "obj": "2026-01-02 03:04:05.123456"}')
    assert value == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    ["{", '{"__dCls": "dt", "obj": "yesterday"}', '{"__dCls": "b64", "obj": "@@@"}',
     '{"__dCls": "nope", "obj": "x"}', '{"__dCls": "dt", "obj": 5}',
     # only DIRAC's two forms: no other ISO 8601 spelling, no offset that would shift the time
     '{"__dCls": "dt", "obj": "2026-01-02T03:04:05"}',
     '{"__dCls": "dt", "obj": "2026-01-02 03:04+01"}',
     '{"__dCls": "dt", "obj": "2026-01-02 03:04:05+01:00"}',
     '{"__dCls": "dt", "obj": "2026-01-02 03:04:05,123456"}',
     '{"__dCls": "dt", "obj": "2026-13-02 03:04:05"}'],
)
def test_bad_input_is_a_bad_request(text: str) -> None:
    with pytest.raises(BadRequestError):
        decode(text)


def test_unsupported_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="object"):
        encode(object())


@pytest.mark.parametrize("text", ["[1e999]", '{"a": [{"b": -1e999}]}', "2e308", "[1.5, 2e308]",
                                  '[{"x": 1}, [3, -5e400]]'])
def test_numbers_beyond_the_float_range_are_refused_by_the_walk(text: str) -> None:
    """Server-side limits walk the data (no ``parse_float`` hook per number): an infinity
    anywhere is refused; without a walk the hook refuses it; a reply may carry it."""
    with pytest.raises(BadRequestError, match="floating point range"):
        decode(text, REQUEST_LIMITS)
    no_walk = Limits(max_depth=None, max_items=None, int_bits=None)
    with pytest.raises(BadRequestError, match="floating point range"):
        decode(text, no_walk)
    assert "inf" in repr(decode(text, REPLY_LIMITS))


def test_finite_floats_and_their_values_pass_the_walk() -> None:
    assert decode("[1e308, -1.7976931348623157e308, 0.1, 5e-324]", REQUEST_LIMITS) == [
        1e308, -1.7976931348623157e308, 0.1, 5e-324]
