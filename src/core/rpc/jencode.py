"""DIRAC's JEncode: JSON with markers for datetimes, dates and bytes.

The wire format every DIRAC HTTPS service speaks:

* ``datetime`` -> ``{"__dCls": "dt", "obj": "YYYY-mm-dd HH:MM:SS"}`` (UTC, no microseconds);
* ``date`` -> ``{"__dCls": "date", "obj": "YYYY-mm-dd"}``;
* ``bytes`` -> ``{"__dCls": "b64", "obj": "<base64>"}``;
* tuples travel as lists, integer dictionary keys as strings (JSON has no other keys).

Decoding gives timezone-aware UTC datetimes. A naive datetime handed to :func:`encode` is taken
as UTC already (DIRAC stores naive UTC times); an aware one is converted to UTC.

A page of records read from a database is best handed over as :class:`Records` (the rows'
tuples and their names): :func:`encode` writes it as the list of dicts it stands for, the
same bytes, column by column in C calls instead of a dict per record.

Decoding is bounded (:class:`Limits`): what a server reads from a client
(:data:`REQUEST_LIMITS`) may nest at most 64 levels, hold at most 2,000,000 values, carry
integers of 64 bits (signed), no ``NaN``/``Infinity`` and no lone UTF-16 surrogates in text;
anything else is a :class:`~core.exceptions.BadRequestError` (HTTP 400), never a crash.
Replies are decoded with no bounds beyond the parser's own recursion limit
(:data:`REPLY_LIMITS`).

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
import re
import secrets
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from itertools import chain, repeat
from json.encoder import encode_basestring_ascii as _quote
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
    #: text with a lone UTF-16 surrogate (``"\\ud800"``), which no database can store
    allow_lone_surrogates: bool = False


#: what a server accepts from a client
REQUEST_LIMITS = Limits()
#: what a client accepts from a server: any depth the decoder can parse, any integer, NaN
#: (Python's own JSON); no walk over the data, so large replies decode at full speed
REPLY_LIMITS = Limits(max_depth=None, max_items=None, int_bits=None, allow_non_finite=True,
                      allow_lone_surrogates=True)


def _default(obj: Any) -> Any:
    if type(obj) is Records:
        # written as text by Records.json(), put in place by encode() (the C encoder has no
        # way to take text as it is)
        texts = _pending.__dict__.setdefault("texts", [])
        texts.append(obj.json())
        return f"{_TOKEN}{len(texts) - 1}"
    if isinstance(obj, datetime):
        if obj.tzinfo is not None and obj.utcoffset():
            obj = obj.astimezone(timezone.utc)
        # isoformat is C code with no format to parse (strftime is ~40% slower); the first 19
        # characters are DT_FORMAT's, whatever offset or microseconds follow
        return {_MARK: "dt", "obj": obj.isoformat(" ", "seconds")[:19]}
    if isinstance(obj, date):
        return {_MARK: "date", "obj": obj.strftime(DATE_FORMAT)}
    if isinstance(obj, bytes | bytearray | memoryview):
        return {_MARK: "b64", "obj": base64.b64encode(bytes(obj)).decode("ascii")}
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=repr)
    raise TypeError(f"Object of type {type(obj).__name__} cannot be sent over the wire")


#: DIRAC's datetime text and its variant with microseconds, ASCII digits only
_DT_TEXT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{6})?").fullmatch
_from_iso = datetime.fromisoformat


def _hook(obj: dict[str, Any]) -> Any:
    kind = obj.get(_MARK)
    if kind is None:
        return obj
    value = obj.get("obj")
    if kind == "dt" and type(value) is str and _DT_TEXT(value) is not None:
        # the hot case (a page of 10,000 records carries 10,000s): one C call, which checks
        # the ranges and gives an aware datetime whose tzinfo is timezone.utc itself (4x
        # cheaper than fromisoformat + replace, 10x cheaper than strptime)
        try:
            return _from_iso(value + "+00:00")
        except ValueError as exc:
            raise BadRequestError(f"Bad JEncode {kind!r} value {value!r}: {exc}") from exc
    if not isinstance(value, str):
        raise BadRequestError(f"JEncode marker {kind!r} without a string 'obj'")
    try:
        if kind == "dt":
            # DIRAC sends "%Y-%m-%d %H:%M:%S"; older clients may add microseconds; nothing
            # else ISO allows
            raise ValueError("not YYYY-mm-dd HH:MM:SS[.ffffff]")
        if kind == "date":
            return datetime.strptime(value, DATE_FORMAT).replace(tzinfo=timezone.utc).date()
        if kind == "b64":
            return base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise BadRequestError(f"Bad JEncode {kind!r} value {value!r}: {exc}") from exc
    raise BadRequestError(f"Unknown JEncode marker {kind!r}")


def _cached_hooks() -> tuple[Any, Any]:
    """:func:`_hook` and :func:`_hook_text` for one decode, which keep the last ``dt`` text
    they turned into a value and give that value again for the same text: the records of a
    page often come in runs of one time (a bulk submission's jobs share theirs), and a
    comparison is several times cheaper than the checks and the parse (datetimes are
    immutable: equal texts may share one). Another text costs what it did (the comparison
    added, the parse inlined)."""
    last: list[Any] = [None, None]
    last_text: list[Any] = [None, None]

    def hook(obj: dict[str, Any]) -> Any:
        kind = obj.get(_MARK)
        if kind is None:  # a plain dict: most of them
            return obj
        value = obj.get("obj")
        if kind == "dt" and type(value) is str:
            if value == last[0]:
                return last[1]
            if _DT_TEXT(value) is not None:
                try:
                    last[1] = found = _from_iso(value + "+00:00")
                except ValueError:
                    return _hook(obj)  # which says why
                last[0] = value
                return found
        return _hook(obj)

    def hook_text(obj: dict[str, Any]) -> Any:
        kind = obj.get(_MARK)
        if kind is None:
            return obj
        value = obj.get("obj")
        if kind == "dt" and type(value) is str:
            if value == last_text[0]:
                return last_text[1]
            found = _hook_text(obj)
            last_text[:] = value, found
            return found
        return _hook(obj)

    return hook, hook_text


def _hook_text(obj: dict[str, Any]) -> Any:
    """:func:`_hook`, but a ``dt`` marker gives its text, to the second (``YYYY-mm-dd
    HH:MM:SS``, UTC): what a table shows, without a datetime made to be formatted back."""
    if obj.get(_MARK) == "dt":
        value = obj.get("obj")
        if type(value) is str and _DT_TEXT(value) is not None:
            try:
                _from_iso(value)  # the ranges are checked as they are for a datetime
            except ValueError as exc:
                raise BadRequestError(f"Bad JEncode 'dt' value {value!r}: {exc}") from exc
            return value[:19]
    return _hook(obj)


#: the encoder every call shares (``json.dumps`` with arguments builds a new one each time)
_ENCODER = json.JSONEncoder(default=_default, separators=(", ", ": "))


#: the placeholders of :class:`Records` texts in the encoder's output: random per process, so
#: no data can spell one
_TOKEN = f"__pilotwms_records_{secrets.token_hex(16)}_"
#: the Records texts of the encode() running in this thread
_pending = threading.local()


def encode(obj: Any) -> str:
    """Serialise ``obj`` to JEncode text. Raises ``TypeError`` for types the wire cannot carry."""
    try:
        text = _ENCODER.encode(obj)
    finally:
        texts = _pending.__dict__.pop("texts", None)
    if texts:
        for i in range(len(texts) - 1, -1, -1):  # the last first: it may hold earlier ones
            text = text.replace(f'"{_TOKEN}{i}"', texts[i], 1)
    return text


def _value_text(value: Any) -> str:
    """The JEncode text of one value, as it is written inside a list."""
    return _ENCODER.encode(value)


def _column_texts(values: Sequence[Any], marked: bool) -> Sequence[str]:
    """The texts of one column's values, with a C call per value (the formatting is done once
    per distinct value where equal values are sure to have equal texts); ``marked``: the
    values are datetime texts to wrap in ``dt`` markers (None stays null)."""
    kinds = set(map(type, values))
    if not marked and kinds == {int}:
        return list(map(int.__repr__, values))  # what the encoder writes for an int
    if not marked and kinds == {str}:
        return list(map(_quote, values))  # and for a str (ensure_ascii)
    if kinds <= {str, _NONE} or (not marked and kinds <= {int, _NONE}):
        # with None among them: equal values have equal texts, one text per distinct value
        distinct = set(values)
        distinct.discard(None)
        texts: dict[Any, str]
        if marked:
            texts = {v: _DT_OPEN + _quote(v) + "}" for v in distinct}
        else:
            texts = dict(zip(distinct, map(_quote if str in kinds else int.__repr__, distinct),
                             strict=True))
        texts[None] = "null"
        return list(map(texts.__getitem__, values))
    if marked:  # anything else, value by value (1 and 1.0 are equal keys, not equal texts)
        return [_value_text(None if v is None else {_MARK: "dt", "obj": v}) for v in values]
    return [_value_text(v) for v in values]


_DT_OPEN = '{"__dCls": "dt", "obj": '
_NONE = type(None)


class Records(Sequence[Any]):
    """A page of records (``rows``: tuples of values in ``names`` order, e.g. a DB cursor's),
    which :func:`encode` writes as the list of ``dict(zip(names, row))`` (or, ``as_lists``,
    of the rows as lists), the values at ``datetimes`` (UTC datetime texts as the database
    writes them, ``YYYY-mm-dd HH:MM:SS``, or None) as ``dt`` markers: the very bytes of
    encoding those records, without a dict per record (a page of 10,000: ~4x faster).

    As a sequence it gives those records (dicts or tuples, the datetimes as markers).

    >>> encode({"Records": Records(["JobID", "Time"], [(1, "2026-01-02 03:04:05")], [1])})
    '{"Records": [{"JobID": 1, "Time": {"__dCls": "dt", "obj": "2026-01-02 03:04:05"}}]}'
    >>> encode(Records(["JobID", "Status"], [(1, "Done"), (2, None)], as_lists=True))
    '[[1, "Done"], [2, null]]'
    >>> list(Records(["JobID"], [(7,)]))
    [{'JobID': 7}]
    """

    __slots__ = ("names", "rows", "datetimes", "as_lists", "_records")

    def __init__(self, names: Sequence[str], rows: Sequence[Sequence[Any]],
                 datetimes: Sequence[int] = (), *, as_lists: bool = False) -> None:
        self.names = list(names)
        self.rows = rows
        self.datetimes = list(datetimes)
        self.as_lists = as_lists
        self._records: list[Any] | None = None

    def records(self) -> list[Any]:
        """The records as plain data (what the encoder would be handed without this class)."""
        if self._records is None:
            rows = mark_datetimes(self.rows, self.datetimes)
            self._records = (rows if self.as_lists else
                             list(map(dict, map(zip, repeat(self.names), rows))))
        return self._records

    def json(self) -> str:
        """The JEncode text of :meth:`records`."""
        names, rows = self.names, self.rows
        if not rows:
            return "[]"
        simple = (all(type(n) is str for n in names)
                  and len(set(names)) == len(names))  # else dict() would merge the keys
        if not names or not (simple or self.as_lists):
            return _value_text(self.records())
        columns = list(zip(*rows, strict=True))
        if len(columns) != len(names):
            raise ValueError(f"rows of {len(columns)} values for {len(names)} names")
        if self.as_lists:
            opens = ["[", *repeat(", ", len(names) - 1)]
            close = "], "
        else:
            opens = ["{" + _quote(names[0]) + ": ", *(", " + _quote(n) + ": " for n in names[1:])]
            close = "}, "
        marked = set(self.datetimes)
        parts: list[Any] = []
        for i, (opening, values) in enumerate(zip(opens, columns, strict=True)):
            parts += [repeat(opening), _column_texts(values, i in marked)]
        parts.append(repeat(close))
        pieces = list(chain.from_iterable(zip(*parts, strict=False)))  # repeat()s are endless
        pieces[-1] = close[0]  # no separator after the last record
        return "[" + "".join(pieces) + "]"

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Any) -> Any:
        return self.records()[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.records())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Records):
            other = other.records()
        return self.records() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Records({self.records()!r})"


def datetime_marker(text: str) -> dict[str, str]:
    """A UTC datetime already in wire form (``text`` is ``YYYY-mm-dd HH:MM:SS``): encoded to
    the very bytes :func:`encode` writes for the datetime, with no per-value callback.

    >>> encode(datetime_marker("2026-01-02 03:04:05"))
    '{"__dCls": "dt", "obj": "2026-01-02 03:04:05"}'
    """
    return {_MARK: "dt", "obj": text}


def mark_datetimes(rows: Sequence[Sequence[Any]], positions: Sequence[int]
                   ) -> list[tuple[Any, ...]]:
    """``rows`` as tuples, the values at ``positions`` (UTC datetime texts
    ``YYYY-mm-dd HH:MM:SS``, as the database formats them, or None) turned into
    :func:`datetime_marker` s. Long lists of records encode fastest this way: the C encoder
    meets only its own types (the texts are not checked: give what the database wrote).

    >>> encode(mark_datetimes([(1, "2026-01-02 03:04:05"), (2, None)], [1]))
    '[[1, {"__dCls": "dt", "obj": "2026-01-02 03:04:05"}], [2, null]]'
    """
    if not rows:
        return []
    if not positions:
        return [tuple(row) for row in rows]
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
    for i in positions:  # one comprehension per column: no per-row Python frame
        columns[i] = [None if v is None else {_MARK: "dt", "obj": v} for v in columns[i]]
    return list(zip(*columns, strict=True))


def _int_error(value: int, bits: int) -> BadRequestError:
    text = str(value)
    shown = text if len(text) <= 40 else f"{text[:20]}...({len(text)} digits)"
    return BadRequestError(f"integer {shown} is out of the {bits}-bit range")


#: a JSON escape of a UTF-16 surrogate: only then can decoded text hold a lone one
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")


def _check_text(value: Any) -> None:
    """Refuse text holding a lone surrogate (``"\\ud800"``): it is not Unicode, and no
    database or file can store it."""
    stack = [value]
    while stack:
        obj = stack.pop()
        texts: list[Any] = []
        if isinstance(obj, dict):
            texts.extend(obj)
            children: Any = obj.values()
        else:
            children = obj
        for child in children:
            if isinstance(child, str):
                texts.append(child)
            elif isinstance(child, list | dict):
                stack.append(child)
        for text in texts:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequestError(f"text {text[:40]!r} holds a lone UTF-16 surrogate: not "
                                      f"Unicode") from None


def _parse_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise BadRequestError(f"number {text[:40]} is out of the floating point range")
    return value


def _refuse_constant(name: str) -> Any:
    raise BadRequestError(f"{name} is not a JSON value")


_INFINITIES = (float("inf"), float("-inf"))


def _float_error(value: float) -> BadRequestError:
    return BadRequestError(f"a number is out of the floating point range (beyond "
                           f"{'-' if value < 0 else ''}1.8e308)")


def _walks(limits: Limits) -> bool:
    """Whether :func:`decode` walks decoded containers (:func:`_check_shape`)."""
    return bool(limits.max_depth or limits.max_items or limits.int_bits)


def _check_shape(value: Any, limits: Limits) -> None:
    """Depth, item count and integer range of decoded data, in one walk without recursion
    (integers are checked here rather than by a ``parse_int`` hook: 2x cheaper), and, unless
    ``allow_non_finite``, numbers beyond the float range (which JSON parses as infinities;
    here rather than by a ``parse_float`` hook called for every number: ~1 us a float)."""
    max_depth = limits.max_depth
    bits = limits.int_bits
    finite = not limits.allow_non_finite
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if bits else (None, None)
    items = 0
    stack = [(value, 1)]
    while stack:
        obj, depth = stack.pop()
        if max_depth is not None and depth > max_depth:
            raise BadRequestError(f"data nested deeper than {max_depth} levels")
        children = obj.values() if isinstance(obj, dict) else obj
        items += len(children)
        for child in children:
            kind = type(child)
            if kind is int:
                if low is not None and not low <= child <= high:
                    raise _int_error(child, bits)  # type: ignore[arg-type]
            elif kind is list or kind is dict:
                stack.append((child, depth + 1))
            elif kind is float and finite and child in _INFINITIES:
                raise _float_error(child)
    if limits.max_items is not None and items > limits.max_items:
        raise BadRequestError(f"data holds {items} values, more than {limits.max_items}")


def decode(text: str | bytes, limits: Limits = REPLY_LIMITS, *,
           datetimes_as_text: bool = False) -> Any:
    """Parse JEncode text within ``limits``; bad JSON, bad markers and data beyond the limits
    raise :class:`~core.exceptions.BadRequestError`. With ``datetimes_as_text``, datetimes
    come as their UTC text to the second, ``YYYY-mm-dd HH:MM:SS`` (for display).

    >>> decode('[{"__dCls": "dt", "obj": "2026-01-02 03:04:05.123456"}]', datetimes_as_text=True)
    ['2026-01-02 03:04:05']
    """
    if limits.max_items is not None and len(text) > limits.max_items:
        # every value after the first of a container follows a comma: refuse before parsing
        # what would need gigabytes of objects (commas inside strings count too: such a
        # request is refused a little early, never one within the limit of values)
        commas = text.count(b",") if isinstance(text, bytes) else text.count(",")
        if commas > limits.max_items:
            raise BadRequestError(f"data holds more than {limits.max_items} values")
    kwargs: dict[str, Any] = {}
    if not limits.allow_non_finite:
        if not _walks(limits):  # else the walk refuses infinities
            kwargs["parse_float"] = _parse_float
        kwargs["parse_constant"] = _refuse_constant
    try:
        hook, hook_text = _cached_hooks()
        value = json.loads(text, object_hook=hook_text if datetimes_as_text else hook,
                           **kwargs)
    except json.JSONDecodeError as exc:
        raise BadRequestError(f"Cannot decode JSON: {exc}") from exc
    except RecursionError:
        raise BadRequestError(
            f"data nested deeper than {limits.max_depth or 'the decoder allows'} levels"
        ) from None
    except UnicodeDecodeError as exc:
        raise BadRequestError(f"Cannot decode JSON: not UTF-8 text: {exc}") from None
    except ValueError as exc:  # e.g. more integer digits than Python converts
        if limits.int_bits is not None and "integer string conversion" in str(exc):
            raise BadRequestError(f"an integer of thousands of digits is out of the "
                                  f"{limits.int_bits}-bit range") from None
        raise BadRequestError(f"Cannot decode JSON: {exc}") from None
    if not limits.allow_lone_surrogates:
        found = (_SURROGATE_ESCAPE_BYTES.search(text) if isinstance(text, bytes)
                 else _SURROGATE_ESCAPE.search(text))
        if found:
            _check_text([value])
    if isinstance(value, list | dict):
        if _walks(limits):
            _check_shape(value, limits)
    elif type(value) is float and not limits.allow_non_finite and value in _INFINITIES:
        raise _float_error(value)
    elif type(value) is int and limits.int_bits is not None \
            and value.bit_length() >= limits.int_bits and value != -(2 ** (limits.int_bits - 1)):
        raise _int_error(value, limits.int_bits)
    return value
