"""JDL (ClassAd-like job description) value model, parsing and DIRAC-style writing.

A JDL is a record of ``Name = value;`` attributes. Values are modelled as:

* ``str``: a quoted string (``"..."``, with ``\\"`` and ``\\\\`` escapes);
* :class:`Expr`: a bare (unquoted) expression kept verbatim, e.g. ``other.Site == "X"`` or the
  bare words DIRAC's Job API writes (``Site = LCG.CERN.cern;``); a ``str`` subclass;
* ``int``, ``float``, ``bool`` (``true``/``false``, any case);
* ``list`` of values (``{ "a", "b" }``) and nested records (:class:`JDL`, ``[ ... ]``).

Attribute lookup is case-insensitive (users write ``executable``) and the first spelling seen
is kept: assigning ``jdl["EXECUTABLE"]`` later changes the value, not the name. Equality
compares spellings and values, not the order.

>>> from wms.logic.jdl import parse_jdl
>>> jdl = parse_jdl('''[
...     Executable = "echo";   # comments are dropped
...     arguments = "hello; world";
...     InputSandbox = { "a.sh", "b.txt", };
... ]''')
>>> jdl.get_str("executable"), jdl.get_str("Arguments"), jdl.get_list("InputSandbox")
('echo', 'hello; world', ['a.sh', 'b.txt'])
>>> print(jdl.to_text())
[
    Executable = "echo";
    InputSandbox =
        {
            "a.sh",
            "b.txt"
        };
    arguments = "hello; world";
]
>>> parse_jdl(jdl.to_text()) == jdl
True
"""

from __future__ import annotations

import math
import re
from collections.abc import Container, Iterable, Iterator, Mapping, MutableMapping
from typing import TypeAlias, overload

from core.exceptions import InvalidJDLError
from wms.logic._jdl_parse import Expr, parse, read_value

__all__ = [
    "JDL",
    "Expr",
    "JDLValue",
    "format_jdl",
    "format_top_attribute",
    "TextTemplate",
    "format_value",
    "parse_jdl",
]

JDLValue: TypeAlias = "str | int | float | bool | list[JDLValue] | JDL"


def parse_jdl(text: str) -> JDL:
    """Parse a JDL text; the outer ``[ ]`` are optional.

    Raises :class:`~core.exceptions.InvalidJDLError` whose message starts with ``line L, column C:``
    and says what was expected.

    >>> parse_jdl("Priority = 3; Tags = {}").get_int("priority")
    3
    >>> try:
    ...     parse_jdl('[ Arguments = "a" "b" ]')
    ... except InvalidJDLError as error:
    ...     print(error)
    line 1, column 19: expected ';' or ']' after value of attribute 'Arguments', found '"b"'
    """
    if not isinstance(text, str):
        raise InvalidJDLError(f"a JDL must be text, not {type(text).__name__}")
    return parse(text, JDL._trusted)


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*").fullmatch
_DIGITS = re.compile(r"[+-]?[0-9]+").fullmatch
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?").fullmatch
_ESCAPE = re.compile(r'\\(?=["\\]|\Z)|"').sub


#: attribute names already checked (names repeat: the same few dozen in every job)
_good_names: set[str] = set()


def _check_name(name: object) -> str:
    if type(name) is str and name in _good_names:
        return name
    if not isinstance(name, str) or _NAME(name) is None:
        raise InvalidJDLError(f"invalid JDL attribute name {name!r}")
    if type(name) is str:  # not a subclass, whose hash or equality may differ
        if len(_good_names) > 4096:
            _good_names.clear()
        _good_names.add(name)
    return name


def _check_value(value: object, name: str) -> JDLValue:
    """Validate (and normalise tuples to lists in) a value set from Python code."""
    kind = type(value)
    if kind is str or kind is int:  # the common cases first
        return value  # type: ignore[return-value]
    if isinstance(value, (str, bool, int, JDL)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidJDLError(f"attribute '{name}': {value} cannot be written in a JDL")
        return value
    if isinstance(value, (list, tuple)):
        return [_check_value(item, name) for item in value]
    raise InvalidJDLError(f"attribute '{name}': a JDL cannot hold a {type(value).__name__}")


def _copy_value(value: JDLValue) -> JDLValue:
    if isinstance(value, list):
        return [_copy_value(item) for item in value]
    if isinstance(value, JDL):
        return value.copy()
    return value


class JDL(MutableMapping[str, JDLValue]):
    """An ordered record of JDL attributes, looked up case-insensitively.

    >>> jdl = JDL({"Executable": "echo"})
    >>> jdl["executable"] = "ls"
    >>> list(jdl.items()), "EXECUTABLE" in jdl
    ([('Executable', 'ls')], True)
    """

    __slots__ = ("_values", "_names")
    __hash__ = None  # type: ignore[assignment]

    def __init__(
        self, items: Mapping[str, JDLValue] | Iterable[tuple[str, JDLValue]] | None = None
    ) -> None:
        self._values: dict[str, JDLValue] = {}
        self._names: dict[str, str] = {}
        if items is not None:
            pairs = items.items() if isinstance(items, Mapping) else items
            for name, value in pairs:
                self[name] = value

    @classmethod
    def _trusted(cls, values: dict[str, JDLValue], names: dict[str, str]) -> JDL:
        """Build from already validated dicts keyed by lower-case name (no copy)."""
        jdl = cls.__new__(cls)
        jdl._values = values
        jdl._names = names
        return jdl

    @classmethod
    def _from_checked(cls, pairs: Iterable[tuple[str, JDLValue]]) -> JDL:
        """As assigning ``pairs`` in order, without checking them: for callers whose names
        are constants or come from a JDL and whose values are typed (no copy made)."""
        values: dict[str, JDLValue] = {}
        names: dict[str, str] = {}
        for name, value in pairs:
            key = name.lower()
            values[key] = value
            names.setdefault(key, name)
        return cls._trusted(values, names)

    # -- mapping protocol ------------------------------------------------------------------

    def __getitem__(self, name: str) -> JDLValue:
        try:
            return self._values[name.lower()]
        except (KeyError, AttributeError):
            raise KeyError(name) from None

    def __setitem__(self, name: str, value: JDLValue) -> None:
        key = _check_name(name).lower()
        self._values[key] = _check_value(value, name)
        self._names.setdefault(key, name)

    def __delitem__(self, name: str) -> None:
        key = name.lower()
        del self._values[key]
        del self._names[key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._names.values())

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JDL):
            return NotImplemented
        return self._values == other._values and self._names == other._names

    def __repr__(self) -> str:
        inner = ", ".join(f"{self._names[k]!r}: {v!r}" for k, v in self._values.items())
        return f"JDL({{{inner}}})"

    def name_of(self, name: str) -> str | None:
        """The stored spelling of ``name``, or None when absent."""
        return self._names.get(name.lower())

    def rename(self, name: str, spelling: str) -> None:
        """Change the stored spelling of an attribute (``spelling`` is ``name`` in another case)."""
        key = name.lower()
        if key not in self._values or _check_name(spelling).lower() != key:
            raise KeyError(name)
        self._names[key] = spelling

    def copy(self, *, without: Container[str] = ()) -> JDL:
        """A deep copy (lists and nested records are copied too), without the attributes
        whose lower-case names are in ``without``.

        >>> JDL({"Executable": "ls", "Site": ["A"]}).copy(without={"site"})
        JDL({'Executable': 'ls'})
        """
        if not without:
            return JDL._trusted({k: _copy_value(v) for k, v in self._values.items()},
                                dict(self._names))
        return JDL._trusted(
            {k: _copy_value(v) for k, v in self._values.items() if k not in without},
            {k: n for k, n in self._names.items() if k not in without})

    def to_text(self, sorted_: bool = True) -> str:
        """The JDL text, DIRAC style; attributes sorted by name as DIRAC's ``asJDL`` does."""
        return _format_record(self, "", sorted_)

    # -- typed getters -----------------------------------------------------------------------

    def _bad(self, name: str, expected: str, value: JDLValue) -> InvalidJDLError:
        spelled = self.name_of(name) or name
        shown = format_value(value) if not isinstance(value, JDL) else "[ ... ]"
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return InvalidJDLError(f"attribute '{spelled}' must be {expected}, got {shown}")

    @overload
    def get_str(self, name: str) -> str | None: ...
    @overload
    def get_str(self, name: str, default: str) -> str: ...

    def get_str(self, name: str, default: str | None = None) -> str | None:
        """A string; a bare word or a number gives its text (DIRAC reads them so).

        >>> parse_jdl("JobGroup = 00042; N = 7").get_str("jobgroup"), JDL().get_str("X", "d")
        ('00042', 'd')
        """
        value = self._values.get(name.lower())
        if value is None:
            return default
        if isinstance(value, str):
            return str(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return format_value(value)
        raise self._bad(name, "a string", value)

    @overload
    def get_int(self, name: str) -> int | None: ...
    @overload
    def get_int(self, name: str, default: int) -> int: ...

    def get_int(self, name: str, default: int | None = None) -> int | None:
        """An integer; a quoted integer (``"86400"``) and an integral float are accepted.

        >>> parse_jdl('CPUTime = "86400"').get_int("CPUTime")
        86400
        """
        value = self._values.get(name.lower())
        if value is None:
            return default
        if isinstance(value, bool):
            raise self._bad(name, "an integer", value)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            text = value.strip()
            if _DIGITS(text):
                return int(text)
        raise self._bad(name, "an integer", value)

    @overload
    def get_float(self, name: str) -> float | None: ...
    @overload
    def get_float(self, name: str, default: float) -> float: ...

    def get_float(self, name: str, default: float | None = None) -> float | None:
        """A number as a float; quoted numbers are accepted."""
        value = self._values.get(name.lower())
        if value is None:
            return default
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _NUMBER(value.strip()):
            return float(value)
        raise self._bad(name, "a number", value)

    @overload
    def get_bool(self, name: str) -> bool | None: ...
    @overload
    def get_bool(self, name: str, default: bool) -> bool: ...

    def get_bool(self, name: str, default: bool | None = None) -> bool | None:
        """A boolean; also ``"true"``/``"yes"``/``"y"``/``"1"`` and their negations, 0 and 1.

        >>> parse_jdl('WholeNode = "yes"').get_bool("WholeNode")
        True
        """
        value = self._values.get(name.lower())
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            text = value.strip().lower()
            if text in ("true", "yes", "y", "1"):
                return True
            if text in ("false", "no", "n", "0"):
                return False
        raise self._bad(name, "true or false", value)

    def get_list(self, name: str, default: list[JDLValue] | None = None) -> list[JDLValue]:
        """A list (a copy); a scalar gives a one-element list; ``"a, b"`` is NOT split.

        >>> parse_jdl('Site = "A, B"').get_list("Site"), JDL().get_list("Site")
        (['A, B'], [])
        """
        value = self._values.get(name.lower())
        if value is None:
            return list(default) if default is not None else []
        if isinstance(value, list):
            return list(value)
        if isinstance(value, JDL):
            raise self._bad(name, "a list", value)
        return [value]

    def get_str_list(self, name: str, default: list[str] | None = None) -> list[str]:
        """Like :meth:`get_list`, every element a string (numbers give their text)."""
        if name.lower() not in self._values:
            return list(default) if default is not None else []
        result: list[str] = []
        for item in self.get_list(name):
            if isinstance(item, str):
                result.append(str(item))
            elif isinstance(item, (int, float)) and not isinstance(item, bool):
                result.append(format_value(item))
            else:
                raise self._bad(name, "a list of strings", self._values[name.lower()])
        return result

    def get_record(self, name: str) -> JDL | None:
        """A nested record, or None when absent."""
        value = self._values.get(name.lower())
        if value is None or isinstance(value, JDL):
            return value
        raise self._bad(name, "a record [ ... ]", value)


# -- writing ------------------------------------------------------------------------------------

_INDENT = "    "
_bare_cache: dict[tuple[str, bool], bool] = {}


def _bare_ok(expr: str, in_list: bool) -> bool:
    """Whether ``expr`` written bare reads back as the same :class:`Expr`."""
    key = (expr, in_list)
    cached = _bare_cache.get(key)
    if cached is not None:
        return cached
    ok = False
    if expr and expr == expr.strip():
        probe = expr + ("}" if in_list else ";")
        try:
            value, pos = read_value(probe, in_list, JDL._trusted)
        except InvalidJDLError:
            value, pos = None, -1
        ok = pos == len(expr) and isinstance(value, Expr) and value == expr
    if len(_bare_cache) > 4096:
        _bare_cache.clear()
    _bare_cache[key] = ok
    return ok


def _quote(text: str) -> str:
    if '"' in text or "\\" in text:
        text = _ESCAPE(lambda m: "\\" + m.group(), text)
    return '"' + text + '"'


def format_value(value: JDLValue, *, in_list: bool = False) -> str:
    """The JDL text of a scalar or a one-line list (records and long lists: see :func:`format_jdl`).

    >>> format_value('say "hi"'), format_value(1.0), format_value(True), format_value(["a", 2])
    ('"say \\\\"hi\\\\""', '1.0', 'true', '{ "a", 2 }')
    """
    kind = type(value)
    if kind is str:  # the common cases first
        return _quote(value)  # type: ignore[arg-type]
    if kind is int:
        return str(value)
    if isinstance(value, Expr):
        return str(value) if _bare_ok(value, in_list) else _quote(value)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidJDLError(f"{value} cannot be written in a JDL")
        return repr(value)
    if isinstance(value, list):
        if not value:
            return "{}"
        return "{ " + ", ".join(format_value(item, in_list=True) for item in value) + " }"
    if isinstance(value, JDL):
        return _format_record(value, "", True)
    raise InvalidJDLError(f"a JDL cannot hold a {type(value).__name__}")


def _format_list(items: list[JDLValue], pad: str, sorted_: bool) -> str:
    """A list opening at ``pad`` (the brace's own indentation); no trailing newline."""
    if not items:
        return "{}"
    if len(items) == 1 and not isinstance(items[0], (list, JDL)):
        return "{ " + format_value(items[0], in_list=True) + " }"
    inner = pad + _INDENT
    if all(type(item) is str for item in items):  # the common case: plain strings (LFNs)
        quoted = [inner + _quote(item) for item in items]  # type: ignore[arg-type]
        return f"{pad}{{\n" + ",\n".join(quoted) + f"\n{pad}}}"
    lines = [pad + "{"]
    for index, item in enumerate(items):
        comma = "," if index < len(items) - 1 else ""
        if isinstance(item, list):
            lines.append(inner + _format_list(item, inner, sorted_).lstrip() + comma)
        elif isinstance(item, JDL):
            lines.append(inner + _format_record(item, inner, sorted_).lstrip() + comma)
        else:
            lines.append(inner + format_value(item, in_list=True) + comma)
    lines.append(pad + "}")
    return "\n".join(lines)


def _spelling(pair: tuple[str, str]) -> str:
    return pair[1]


def _format_record(jdl: JDL, pad: str, sorted_: bool) -> str:
    """A record whose ``[`` is at ``pad``; attributes one indent deeper."""
    if not jdl:
        return pad + "[]"
    inner = pad + _INDENT
    deeper = inner + _INDENT
    values = jdl._values
    pairs = sorted(jdl._names.items(), key=_spelling) if sorted_ else jdl._names.items()
    lines = [pad + "["]
    for key, name in pairs:
        lines.append(_format_attribute(name, values[key], inner, deeper, sorted_))
    lines.append(pad + "]")
    return "\n".join(lines)


def _format_attribute(name: str, value: JDLValue, inner: str, deeper: str, sorted_: bool) -> str:
    """One attribute of a record, at ``inner`` (its value's own lines at ``deeper``)."""
    kind = type(value)
    if kind is str:  # the common cases first
        return f"{inner}{name} = {_quote(value)};"  # type: ignore[arg-type]
    if kind is int:
        return f"{inner}{name} = {value};"
    if isinstance(value, list) and (
        len(value) > 1 or (value and isinstance(value[0], (list, JDL)))
    ):
        return f"{inner}{name} =\n" + _format_list(value, deeper, sorted_) + ";"
    if isinstance(value, JDL) and value:
        return f"{inner}{name} =\n" + _format_record(value, deeper, sorted_) + ";"
    if isinstance(value, list):
        return f"{inner}{name} = {_format_list(value, deeper, sorted_)};"
    return f"{inner}{name} = {format_value(value)};"


def format_top_attribute(name: str, value: JDLValue) -> str:
    """The text of one attribute of a top-level record, as :meth:`JDL.to_text` writes it
    (its lines in the record's text are these, the record's being sorted by name).

    >>> print(format_top_attribute("Site", ["A", "B"]))
        Site =
            {
                "A",
                "B"
            };
    """
    return _format_attribute(name, value, _INDENT, _INDENT + _INDENT, True)


def format_jdl(jdl: JDL, *, sorted_: bool = True) -> str:
    """The JDL text of ``jdl`` (same as :meth:`JDL.to_text`).

    >>> print(format_jdl(JDL({"Site": ["A", "B"], "Req": JDL({"CPUTime": 100})})))
    [
        Req =
            [
                CPUTime = 100;
            ];
        Site =
            {
                "A",
                "B"
            };
    ]
    """
    return jdl.to_text(sorted_)


class TextTemplate:
    """``jdl.to_text()`` for JDLs holding the attributes of ``reference``, spelt the same, with
    the same values except the lower-case ``varying`` ones (a bulk's children): the other
    attributes are written once. A JDL with other attribute names is written in full.

    >>> jdl = JDL({"Executable": "x", "Arguments": "1"})
    >>> other = jdl.copy(); other["Arguments"] = "2"
    >>> TextTemplate(jdl, {"arguments"}).text(other) == other.to_text()
    True
    """

    __slots__ = ("_names", "_parts")

    def __init__(self, reference: JDL, varying: Container[str]) -> None:
        self._names = dict(reference._names)
        values = reference._values
        self._parts: list[tuple[str, str, str | None]] = [
            (key, name, None if key in varying else format_top_attribute(name, values[key]))
            for key, name in sorted(reference._names.items(), key=_spelling)]

    def text(self, jdl: JDL) -> str:
        if not self._parts or jdl._names != self._names:
            return jdl.to_text()
        values = jdl._values
        return "[\n" + "\n".join([
            made if made is not None else format_top_attribute(name, values[key])
            for key, name, made in self._parts]) + "\n]"
