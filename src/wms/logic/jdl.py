"""JDL (ClassAd-like job description) value model, parser and DIRAC-style writer.

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
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import TypeAlias, overload

from core.exceptions import InvalidJDLError

__all__ = [
    "JDL",
    "Expr",
    "JDLValue",
    "format_jdl",
    "format_value",
    "parse_jdl",
]

JDLValue: TypeAlias = "str | int | float | bool | list[JDLValue] | JDL"


class Expr(str):
    """A bare ClassAd expression or word, written back verbatim (unquoted).

    It compares equal to the plain ``str`` with the same text. An ``Expr`` that would not read
    back as itself when written bare (``Expr("5")``, ``Expr("a; b")``) is written quoted and so
    reads back as a plain ``str`` with the same text.

    >>> Expr("other.Site == \\"X\\"") == 'other.Site == "X"'
    True
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Expr({str.__repr__(self)})"


_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_WS = re.compile(r"\s*(?:(?:#[^\n]*|//[^\n]*|/\*.*?\*/)\s*)*", re.S).match
_NAME = _NAME_RE.match
_STRING = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"', re.S).match
_STR = r'"([^"\\]*(?:\\.[^"\\]*)*)"'
_STR_NOGROUP = r'"[^"\\]*(?:\\.[^"\\]*)*"'
# One call reads blanks and comments, ``Name =``, then a quoted string, a simple word or a list
# of quoted strings (groups 3, 4, 5 or 6 for an empty list), and a ';' (group 7) when there.
# Group 2 marks where the value starts, for the general path when no simple value matched.
_ATTR = re.compile(
    r"\s*(?:(?:\#[^\n]*|//[^\n]*)\s*)*"
    r"([A-Za-z_][A-Za-z0-9_.]*)\s*=(?!=)\s*()"
    r"(?:" + _STR
    + r"|([\w.:/%+@$~-]+)(?=[ \t]*(?:[;\]]|\Z))"
    + r"|\{\s*((?:" + _STR_NOGROUP + r"\s*,\s*)*" + _STR_NOGROUP + r")\s*,?\s*\}"
    + r"|(\{\s*\})"
    + r")?[ \t]*(;)?"
).match
_LIST_ITEMS = re.compile(_STR).findall
_UNESCAPE = re.compile(r'\\(["\\])').sub
_ESCAPE = re.compile(r'\\(?=["\\]|\Z)|"').sub
# A simple bare word (number, bool, site name, path, %s placeholder) then blanks.
_SIMPLE = re.compile(r"([\w.:/%+@$~-]+)[ \t]*").match
_INT = re.compile(r"[+-]?(?:0|[1-9][0-9]*)").fullmatch
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(?=[eE]))(?:[eE][+-]?[0-9]+)?").fullmatch
# After a newline ends a bare expression: an attribute name and '=', a closer or the end.
_NEXT_ATTR = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*[ \t]*=(?!=)").match
_BARE_CHUNK = re.compile(r"[^;\[\]{}()\",\n#/]+").match
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?").fullmatch
_OPERATOR_CHARS = "&|+-*/<>=!?:."
_DIGITS = re.compile(r"[+-]?[0-9]+").fullmatch
_CLOSER = {"(": ")", "[": "]", "{": "}"}


def _position(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"line {line}, column {column}"


def _found(text: str, pos: int) -> str:
    if pos >= len(text):
        return "the end of the text"
    word = re.match(r'"[^"\n]{0,20}"?|[^\s]{1,20}', text[pos:])
    return repr(word.group(0)) if word else repr(text[pos])


def _error(text: str, pos: int, message: str, *, found: bool = True) -> InvalidJDLError:
    tail = f", found {_found(text, pos)}" if found else ""
    return InvalidJDLError(f"{_position(text, pos)}: {message}{tail}")


def _classify(word: str) -> JDLValue:
    """The value of a bare word: int, float, bool, or the word itself as an :class:`Expr`."""
    first = word[0]
    if first.isdigit() or first in "+-.":
        if _INT(word):
            return int(word)
        if _FLOAT(word):
            return float(word)
        return Expr(word)
    low = word.lower()
    if low == "true":
        return True
    if low == "false":
        return False
    return Expr(word)


class _Parser:
    """A recursive-descent parser over regex tokens; one instance per text."""

    __slots__ = ("text", "end")

    def __init__(self, text: str) -> None:
        self.text = text
        self.end = len(text)

    def fail(self, pos: int, message: str, *, found: bool = True) -> InvalidJDLError:
        return _error(self.text, pos, message, found=found)

    def document(self) -> JDL:
        text = self.text
        pos = _WS(text, 0).end()
        if pos < self.end and text[pos] == "[":
            jdl, pos = self.record(pos + 1, "]")
            pos = _WS(text, pos).end()
            if pos < self.end:
                raise self.fail(pos, "unexpected text after the closing ']'")
            return jdl
        jdl, _ = self.record(pos, "")
        return jdl

    def record(self, pos: int, closer: str) -> tuple[JDL, int]:
        """Attributes up to ``closer`` (``"]"``, or ``""`` for the end of the text)."""
        text = self.text
        end = self.end
        values: dict[str, JDLValue] = {}
        names: dict[str, str] = {}
        start = pos
        value: JDLValue
        attr = _ATTR
        classify = _classify
        while True:
            # Fast path: one regex call reads blanks, ``Name =`` and a simple value.
            match = attr(text, pos)
            if match is None:
                pos = _WS(text, pos).end()
                if pos >= end:
                    if closer:
                        raise self.fail(start - 1, "missing ']' to close this '['", found=False)
                    break
                char = text[pos]
                if char == closer:
                    pos += 1
                    break
                if char == ";":
                    pos += 1
                    continue
                raise self.fail(pos, self.name_error(pos))
            name, _, string, word, items, empty, semicolon = match.groups()
            key = name.lower()
            if key in values:
                raise self.fail(match.start(1), f"duplicate attribute '{name}'", found=False)
            names[key] = name
            if string is not None:
                values[key] = _UNESCAPE(r"\1", string) if "\\" in string else string
            elif word is not None:
                values[key] = classify(word)
            elif items is not None:
                values[key] = [
                    _UNESCAPE(r"\1", item) if "\\" in item else item
                    for item in _LIST_ITEMS(items)
                ]
            elif empty is not None:
                values[key] = []
            else:
                values[key], pos = self.value(match.end(2), name, False)
                pos = self.after_value(pos, name, closer)
                continue
            pos = match.end()
            if semicolon is None:
                pos = self.after_value(pos, name, closer)
        return JDL._trusted(values, names), pos

    def name_error(self, pos: int) -> str:
        match = _NAME(self.text, pos)
        if match is None:
            return "expected an attribute name"
        name = match.group()
        return f"expected '=' after attribute name '{name}'"

    def after_value(self, pos: int, name: str, closer: str) -> int:
        """Skip the ``;`` after a value; the closer or the end of the text may stand instead."""
        text = self.text
        pos = _WS(text, pos).end()
        if pos < self.end:
            char = text[pos]
            if char == ";":
                return pos + 1
            if char != closer:
                expect = "';' or ']'" if closer else "';' or the end of the text"
                raise self.fail(pos, f"expected {expect} after value of attribute '{name}'")
        return pos

    def value(self, pos: int, name: str, in_list: bool) -> tuple[JDLValue, int]:
        text = self.text
        if pos >= self.end:
            raise self.fail(pos, f"expected a value for attribute '{name}'")
        char = text[pos]
        if char == '"':
            match = _STRING(text, pos)
            if match is None:
                raise self.fail(
                    pos, f"unterminated string in the value of attribute '{name}'", found=False
                )
            body = match.group(1)
            if "\\" in body:
                body = _UNESCAPE(r"\1", body)
            return body, match.end()
        if char == "{":
            return self.list_value(pos + 1, name)
        if char == "[":
            return self.record(pos + 1, "]")
        match = _SIMPLE(text, pos)
        if match is not None:
            after = match.end()
            if after >= self.end or text[after] in (";]}," if in_list else ";]}"):
                return _classify(match.group(1)), after
        return self.bare(pos, name, in_list)

    def list_value(self, pos: int, name: str) -> tuple[list[JDLValue], int]:
        text = self.text
        items: list[JDLValue] = []
        pos = _WS(text, pos).end()
        if text.startswith("}", pos):
            return items, pos + 1
        while True:
            item, pos = self.value(pos, name, True)
            items.append(item)
            pos = _WS(text, pos).end()
            if text.startswith(",", pos):
                pos = _WS(text, pos + 1).end()
                if text.startswith("}", pos):
                    return items, pos + 1
            elif text.startswith("}", pos):
                return items, pos + 1
            else:
                raise self.fail(pos, f"expected ',' or '}}' in the list value of attribute '{name}'")

    def line_ends(self, pos: int, parts: list[str]) -> bool:
        """Whether a newline at ``pos`` ends a bare expression.

        The expression goes on to the next line only when this line ends with an operator or
        the next one starts with one (``a &&`` / ``&& b``), and the next line does not start
        a new attribute (``Name =``).
        """
        text = self.text
        pos = _WS(text, pos).end()
        if pos >= self.end or text[pos] in "]};" or _NEXT_ATTR(text, pos) is not None:
            return True
        if text[pos] in _OPERATOR_CHARS:
            return False
        before = "".join(parts).rstrip()
        return not before or before[-1] not in _OPERATOR_CHARS + "(,"

    def bare(self, pos: int, name: str, in_list: bool) -> tuple[JDLValue, int]:
        """A bare expression: up to ``;``/``]`` (or ``,``/``}`` in a list) outside brackets."""
        text = self.text
        end = self.end
        start = pos
        parts: list[str] = []
        stack: list[str] = []
        while pos < end:
            match = _BARE_CHUNK(text, pos)
            if match is not None:
                parts.append(match.group())
                pos = match.end()
                if pos >= end:
                    break
            char = text[pos]
            if char == '"':
                string = _STRING(text, pos)
                if string is None:
                    raise self.fail(
                        pos, f"unterminated string in the value of attribute '{name}'", found=False
                    )
                parts.append(string.group())
                pos = string.end()
            elif char in "([{":
                stack.append(_CLOSER[char])
                parts.append(char)
                pos += 1
            elif char in ")]}":
                if stack:
                    if stack.pop() != char:
                        raise self.fail(pos, f"unbalanced '{char}' in the value of attribute '{name}'")
                    parts.append(char)
                    pos += 1
                elif char == ")":
                    raise self.fail(pos, f"unbalanced ')' in the value of attribute '{name}'")
                else:
                    break
            elif char == ";" or (char == "," and in_list):
                if not stack:
                    break
                parts.append(char)
                pos += 1
            elif char == ",":
                parts.append(char)
                pos += 1
            elif char in "#/" and (
                (char == "#" or text.startswith("//", pos))
                and (pos == start or text[pos - 1] in " \t\r\n")
            ):
                newline = text.find("\n", pos)
                pos = end if newline < 0 else newline
            elif char in "#/":
                parts.append(char)
                pos += 1
            else:  # a newline
                if not stack and self.line_ends(pos, parts):
                    break
                parts.append(char)
                pos += 1
        word = "".join(parts).strip()
        if not word:
            raise self.fail(start, f"expected a value for attribute '{name}'")
        if stack:
            raise self.fail(pos, f"missing '{stack[-1]}' in the value of attribute '{name}'")
        return _classify(word), pos


def parse_jdl(text: str) -> JDL:
    """Parse a JDL text; the outer ``[ ]`` are optional.

    Raises :class:`~core.exceptions.InvalidJDLError` whose message starts with ``line L, column C:``
    and says what was expected.

    >>> parse_jdl("Priority = 3; Tags = {}").get_int("priority")
    3
    >>> parse_jdl('[ Arguments = "a" "b" ]')
    Traceback (most recent call last):
    ...
    core.exceptions.InvalidJDLError: line 1, column 19: expected ';' or ']' after value of attribute \
'Arguments', found '"b"'
    """
    if not isinstance(text, str):
        raise InvalidJDLError(f"a JDL must be text, not {type(text).__name__}")
    return _Parser(text).document()


def _check_name(name: object) -> str:
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise InvalidJDLError(f"invalid JDL attribute name {name!r}")
    return name


def _check_value(value: object, name: str) -> JDLValue:
    """Validate (and normalise tuples to lists in) a value set from Python code."""
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
        """Change the stored spelling of an existing attribute (same name, other case)."""
        key = name.lower()
        if key not in self._values or _check_name(spelling).lower() != key:
            raise KeyError(name)
        self._names[key] = spelling

    def copy(self) -> JDL:
        """A deep copy (lists and nested records are copied too)."""
        return JDL._trusted(
            {k: _copy_value(v) for k, v in self._values.items()}, dict(self._names)
        )

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
        if isinstance(value, bool):
            raise self._bad(name, "a number", value)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            text = value.strip()
            if _NUMBER(text):
                return float(text)
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
            value, pos = _Parser(probe).value(0, "probe", in_list)
        except InvalidJDLError:
            value, pos = None, -1
        ok = pos == len(expr) and isinstance(value, Expr) and value == expr
    if len(_bare_cache) > 4096:
        _bare_cache.clear()
    _bare_cache[key] = ok
    return ok


def _quote(text: str) -> str:
    return '"' + _ESCAPE(lambda m: "\\" + m.group(), text) + '"'


def format_value(value: JDLValue, *, in_list: bool = False) -> str:
    """The JDL text of a scalar or a one-line list (records and long lists: see :func:`format_jdl`).

    >>> format_value('say "hi"'), format_value(1.0), format_value(True), format_value(["a", 2])
    ('"say \\\\"hi\\\\""', '1.0', 'true', '{ "a", 2 }')
    """
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


def _format_record(jdl: JDL, pad: str, sorted_: bool) -> str:
    """A record whose ``[`` is at ``pad``; attributes one indent deeper."""
    if not jdl:
        return pad + "[]"
    inner = pad + _INDENT
    deeper = inner + _INDENT
    names = sorted(jdl) if sorted_ else list(jdl)
    lines = [pad + "["]
    for name in names:
        value = jdl[name]
        if isinstance(value, list) and (
            len(value) > 1 or (value and isinstance(value[0], (list, JDL)))
        ):
            lines.append(f"{inner}{name} =")
            lines.append(_format_list(value, deeper, sorted_) + ";")
        elif isinstance(value, JDL) and value:
            lines.append(f"{inner}{name} =")
            lines.append(_format_record(value, deeper, sorted_) + ";")
        elif isinstance(value, list):
            lines.append(f"{inner}{name} = {_format_list(value, deeper, sorted_)};")
        else:
            lines.append(f"{inner}{name} = {format_value(value)};")
    lines.append(pad + "]")
    return "\n".join(lines)


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
