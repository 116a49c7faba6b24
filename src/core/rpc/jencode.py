"""DIRAC's JEncode: JSON with markers for datetimes, dates and bytes.

The wire format every DIRAC HTTPS service speaks:

* ``datetime`` -> ``{"__dCls": "dt", "obj": "YYYY-mm-dd HH:MM:SS"}`` (UTC, no microseconds);
* ``date`` -> ``{"__dCls": "date", "obj": "YYYY-mm-dd"}``;
* ``bytes`` -> ``{"__dCls": "b64", "obj": "<base64>"}``;
* tuples travel as lists, integer dictionary keys as strings (JSON has no other keys).

Decoding gives timezone-aware UTC datetimes. A naive datetime handed to :func:`encode` is taken
as UTC already (DIRAC stores naive UTC times); an aware one is converted to UTC.

Decoding is bounded (:class:`Limits`): what a server reads from a client
(:data:`REQUEST_LIMITS`) may nest at most 64 levels, hold at most 2,000,000 values, carry
integers of 64 bits (signed) and no ``NaN``/``Infinity``; anything else is a
:class:`~core.exceptions.BadRequestError` (HTTP 400), never a crash. Replies are decoded with
looser bounds (:data:`REPLY_LIMITS`).

Example::

    >>> from datetime import datetime, timezone
    >>> text = encode({1: datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "b": b"\\x00"})
    >>> text
    '{"1": {"__dCls": "dt", "obj": "2026-01-02 03:04:05"}, "b": {"__dCls": "b64", "obj": "AA=="}}'
    >>> decode(text)["b"]
    b'\\x00'
    >>> decode("[[[1]]]", REQUEST_LIMITS)
    [[[1]]]
    >>> decode(str(2**64), REQUEST_LIMITS)
    Traceback (most recent call last):
    ...
    core.exceptions.BadRequestError: integer 18446744073709551616 is out of the 64-bit range
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from core.exceptions import BadRequestError

DT_FORMAT = "%Y-%m-%d %H:%M:%S"
DATE_FORMAT = "%Y-%m-%d"
_MARK = "__dCls"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class Limits:
    """Bounds on decoded data; ``None`` switches a bound off.

    ``max_depth`` counts container levels (``[[1]]`` is 2), ``max_items`` the values held by
    all containers together, ``int_bits`` the signed width integers must fit in.
    """

    max_depth: int | None = 64
    max_items: int | None = 2_000_000
    int_bits: int | None = 64
    allow_non_finite: bool = False


#: what a server accepts from a client
REQUEST_LIMITS = Limits()
#: what a client accepts from a server: deeper data, any integer, NaN (Python's own JSON)
REPLY_LIMITS = Limits(max_depth=512, max_items=None, int_bits=None, allow_non_finite=True)


def _default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        if obj.tzinfo is not None:
            obj = obj.astimezone(timezone.utc)
        return {_MARK: "dt", "obj": obj.strftime(DT_FORMAT)}
    if isinstance(obj, date):
        return {_MARK: "date", "obj": obj.strftime(DATE_FORMAT)}
    if isinstance(obj, bytes | bytearray | memoryview):
        return {_MARK: "b64", "obj": base64.b64encode(bytes(obj)).decode("ascii")}
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=repr)
    raise TypeError(f"Object of type {type(obj).__name__} cannot be sent over the wire")


def _hook(obj: dict[str, Any]) -> Any:
    kind = obj.get(_MARK)
    if kind is None:
        return obj
    value = obj.get("obj")
    if not isinstance(value, str):
        raise BadRequestError(f"JEncode marker {kind!r} without a string 'obj'")
    try:
        if kind == "dt":
            # DIRAC sends "%Y-%m-%d %H:%M:%S"; older clients may add microseconds
            fmt = DT_FORMAT + (".%f" if "." in value else "")
            return datetime.strptime(value, fmt).replace(tzinfo=timezone.utc)
        if kind == "date":
            return datetime.strptime(value, DATE_FORMAT).replace(tzinfo=timezone.utc).date()
        if kind == "b64":
            return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise BadRequestError(f"Bad JEncode {kind!r} value {value!r}: {exc}") from exc
    raise BadRequestError(f"Unknown JEncode marker {kind!r}")


def encode(obj: Any) -> str:
    """Serialise ``obj`` to JEncode text. Raises ``TypeError`` for types the wire cannot carry."""
    return json.dumps(obj, default=_default, separators=(", ", ": "))


def _parse_int(text: str, bits: int | None) -> int:
    if bits is not None and len(text.lstrip("-")) > (bits * 3) // 10 + 1:
        shown = text if len(text) <= 40 else f"{text[:20]}...({len(text)} digits)"
        raise BadRequestError(f"integer {shown} is out of the {bits}-bit range")
    try:
        value = int(text)
    except ValueError as exc:  # more digits than sys.get_int_max_str_digits()
        raise BadRequestError(f"integer with {len(text)} digits refused: {exc}") from None
    if bits is not None and not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise BadRequestError(f"integer {value} is out of the {bits}-bit range")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise BadRequestError(f"number {text[:40]} is out of the floating point range")
    return value


def _refuse_constant(name: str) -> Any:
    raise BadRequestError(f"{name} is not a JSON value")


def _check_shape(value: Any, limits: Limits) -> None:
    """Depth and item count of decoded data, walked without recursion."""
    max_depth = limits.max_depth
    items = 0
    stack = [(value, 1)]
    while stack:
        obj, depth = stack.pop()
        if max_depth is not None and depth > max_depth:
            raise BadRequestError(f"data nested deeper than {max_depth} levels")
        children = obj.values() if isinstance(obj, dict) else obj
        items += len(children)
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, list | dict))
    if limits.max_items is not None and items > limits.max_items:
        raise BadRequestError(f"data holds {items} values, more than {limits.max_items}")


def decode(text: str | bytes, limits: Limits = REPLY_LIMITS) -> Any:
    """Parse JEncode text within ``limits``; bad JSON, bad markers and data beyond the limits
    raise :class:`~core.exceptions.BadRequestError`."""
    kwargs: dict[str, Any] = {}
    if limits.int_bits is not None:
        bits = limits.int_bits
        kwargs["parse_int"] = lambda digits: _parse_int(digits, bits)
    if not limits.allow_non_finite:
        kwargs["parse_float"] = _parse_float
        kwargs["parse_constant"] = _refuse_constant
    try:
        value = json.loads(text, object_hook=_hook, **kwargs)
    except json.JSONDecodeError as exc:
        raise BadRequestError(f"Cannot decode JSON: {exc}") from exc
    except RecursionError:
        raise BadRequestError(
            f"data nested deeper than {limits.max_depth or 'the decoder allows'} levels"
        ) from None
    except UnicodeDecodeError as exc:
        raise BadRequestError(f"Cannot decode JSON: not UTF-8 text: {exc}") from None
    except ValueError as exc:  # e.g. more integer digits than Python converts
        raise BadRequestError(f"Cannot decode JSON: {exc}") from None
    if isinstance(value, list | dict) and (limits.max_depth or limits.max_items):
        _check_shape(value, limits)
    return value
