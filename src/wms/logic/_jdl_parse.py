"""The JDL parser behind :func:`wms.logic.jdl.parse_jdl` (private: use that one).

Two readers give the same result wherever both read a text:

* a fast path for the common case (no comment, no backslash): C-level string methods split the
  text into tokens and a small walk builds the values; it gives up on anything else;
* a general recursive-descent parser over regular expressions that reads everything else
  (comments, escapes, bare ClassAd expressions) and reports errors as ``line L, column C``.

Records are built by the caller's ``make(values, names)``, both dicts keyed by lower-case name,
so this module does not depend on :class:`wms.logic.jdl.JDL`.

>>> parse('A = 1; b = { "x", y }', lambda values, names: (values, names))
({'a': 1, 'b': ['x', Expr('y')]}, {'a': 'A', 'b': 'b'})
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

from core.exceptions import InvalidJDLError

if TYPE_CHECKING:
    from wms.logic.jdl import JDL, JDLValue

__all__ = ["Expr", "MakeRecord", "parse", "parse_fast", "parse_general", "read_value"]

MakeRecord: TypeAlias = "Callable[[dict[str, JDLValue], dict[str, str]], JDL]"


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
_NAME = _NAME_RE.match
_NAME_FULL = _NAME_RE.fullmatch
# Blanks and comments: ``#`` and ``//`` to the end of the line, ``/* ... */``.
_BLANK = r"\s*(?:(?:#[^\n]*|//[^\n]*|/\*(?:[^*]|\*(?!/))*\*/)\s*)*"
_WS = re.compile(_BLANK).match
# A simple bare word: number, bool, site name, path, ``%s``; it never starts a comment.
_WORD = r"(?!//)[\w.:/%+@$~-]+"
_WORD_FULL = re.compile(_WORD).fullmatch
_STRING = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"', re.S).match
_UNESCAPE = re.compile(r'\\(["\\])').sub
_INT = re.compile(r"[+-]?(?:0|[1-9][0-9]*)").fullmatch
_FLOAT = re.compile(
    r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(?=[eE]))(?:[eE][+-]?[0-9]+)?"
).fullmatch
# Inside a bare expression: text up to a quote, a bracket, a separator or a comment start.
_BARE_CHUNK = re.compile(r"[^;\[\]{}()\",\n#/]+").match
# A line starting with ``Name =`` after a newline ends a bare expression.
_NEXT_ATTR = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*[ \t]*=(?!=)").match
_OPERATOR_CHARS = "&|+-*/<>=!?:."
_CLOSER = {"(": ")", "[": "]", "{": "}"}


def _skip(text: str, pos: int) -> int:
    """The position after the blanks and comments at ``pos``."""
    match = _WS(text, pos)
    return match.end() if match else pos


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
    """The value of a bare word: int, float, bool, or the word itself as an :class:`Expr`.

    Numbers with leading zeros (``00042``, a JobGroup), of 400 characters or more, or out of
    the float range stay words.
    """
    first = word[0]
    if (first.isdigit() or first in "+-.") and len(word) < 400:
        if _INT(word):
            return int(word)
        if _FLOAT(word):
            number = float(word)
            if math.isfinite(number):
                return number
        return Expr(word)
    low = word.lower()
    if low == "true":
        return True
    if low == "false":
        return False
    return Expr(word)


class _Parser:
    """A recursive-descent parser over regex tokens; one instance per text."""

    __slots__ = ("text", "end", "make")

    def __init__(self, text: str, make: MakeRecord) -> None:
        self.text = text
        self.end = len(text)
        self.make = make

    def fail(self, pos: int, message: str, *, found: bool = True) -> InvalidJDLError:
        return _error(self.text, pos, message, found=found)

    def document(self) -> JDL:
        text = self.text
        pos = _skip(text, 0)
        if pos < self.end and text[pos] == "[":
            jdl, pos = self.record(pos + 1, "]")
            pos = _skip(text, pos)
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
        while True:
            pos = _skip(text, pos)
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
            match = _NAME(text, pos)
            if match is None:
                raise self.fail(pos, "expected an attribute name")
            name = match.group()
            key = name.lower()
            if key in values:
                raise self.fail(pos, f"duplicate attribute '{name}'", found=False)
            pos = _skip(text, match.end())
            if not text.startswith("=", pos) or text.startswith("==", pos):
                raise self.fail(pos, f"expected '=' after attribute name '{name}'")
            values[key], pos = self.value(_skip(text, pos + 1), name, False)
            names[key] = name
            pos = self.after_value(pos, name, closer)
        return self.make(values, names), pos

    def after_value(self, pos: int, name: str, closer: str) -> int:
        """Skip the ``;`` after a value; the closer or the end of the text may stand instead."""
        text = self.text
        pos = _skip(text, pos)
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
        return self.bare(pos, name, in_list)

    def list_value(self, pos: int, name: str) -> tuple[list[JDLValue], int]:
        text = self.text
        items: list[JDLValue] = []
        pos = _skip(text, pos)
        if text.startswith("}", pos):
            return items, pos + 1
        while True:
            item, pos = self.value(pos, name, True)
            items.append(item)
            pos = _skip(text, pos)
            if text.startswith(",", pos):
                pos = _skip(text, pos + 1)
                if text.startswith("}", pos):
                    return items, pos + 1
            elif text.startswith("}", pos):
                return items, pos + 1
            else:
                raise self.fail(
                    pos, f"expected ',' or '}}' in the list value of attribute '{name}'"
                )

    def line_ends(self, pos: int, parts: list[str]) -> bool:
        """Whether a newline at ``pos`` ends a bare expression.

        The expression goes on to the next line only when this line ends with an operator or
        the next one starts with one (``a &&`` / ``&& b``), and the next line does not start
        a new attribute (``Name =``).
        """
        text = self.text
        pos = _skip(text, pos)
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
                        raise self.fail(
                            pos, f"unbalanced '{char}' in the value of attribute '{name}'"
                        )
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


# -- fast path --------------------------------------------------------------------------------
#
# Most JDLs (all those pilotwms writes) have no comment and no backslash. For them C-level string
# methods do the scanning: split on '"' (the odd parts are the strings), join the code parts with
# a NUL marker, pad the punctuation with blanks (str.replace: much faster than str.translate
# or a regex here) and split on blanks. The piece walk accepts only
# what the general parser reads the same way and gives up (returns None) on anything else,
# errors included, so that the general parser reads it and reports the line and column.


class _GiveUpError(Exception):
    """The fast path met something it leaves to the general parser."""


_MARK = "\0"  # stands for the next quoted string in the piece list
_PADDED_MARK = f" {_MARK} "
_name_keys: dict[str, str] = {}
_word_values: dict[str, JDLValue] = {}


def _fast_key(name: str) -> str:
    key = _name_keys.get(name)
    if key is None:
        if _NAME_FULL(name) is None:
            raise _GiveUpError
        key = name.lower()
        if len(name) < 64:
            if len(_name_keys) > 10000:
                _name_keys.clear()
            _name_keys[name] = key
    return key


def _fast_word(word: str) -> JDLValue:
    value = _word_values.get(word)
    if value is None:
        if _WORD_FULL(word) is None:
            raise _GiveUpError
        value = _classify(word)
        if len(word) < 64:
            if len(_word_values) > 10000:
                _word_values.clear()
            _word_values[word] = value
    return value


def _fast_list(
    tokens: list[str], i: int, take: Callable[[], str], make: MakeRecord
) -> tuple[list[JDLValue], int]:
    items: list[JDLValue] = []
    if tokens[i] == "}":
        return items, i + 1
    append = items.append
    while True:
        piece = tokens[i]
        if piece == _MARK:
            append(take())
        elif piece == "{":
            sub, i = _fast_list(tokens, i + 1, take, make)
            append(sub)
            i -= 1
        elif piece == "[":
            record, i = _fast_record(tokens, i + 1, take, "]", make)
            append(record)
            i -= 1
        else:
            append(_word_values.get(piece) or _fast_word(piece))
        piece = tokens[i + 1]
        i += 2
        if piece == ",":
            if tokens[i] == "}":
                return items, i + 1
        elif piece == "}":
            return items, i
        else:
            raise _GiveUpError


def _fast_record(
    tokens: list[str], i: int, take: Callable[[], str], closer: str, make: MakeRecord
) -> tuple[JDL, int]:
    values: dict[str, JDLValue] = {}
    names: dict[str, str] = {}
    count = len(tokens)
    get_key = _name_keys.get
    value: JDLValue
    while i < count:
        name = tokens[i]
        if name == ";":
            i += 1
            continue
        if name == closer:
            return make(values, names), i + 1
        key = get_key(name) or _fast_key(name)
        if key in values or tokens[i + 1] != "=":
            raise _GiveUpError
        piece = tokens[i + 2]
        i += 3
        if piece == _MARK:
            value = take()
        elif piece == "{":
            value, i = _fast_list(tokens, i, take, make)
        elif piece == "[":
            value, i = _fast_record(tokens, i, take, "]", make)
        else:
            value = _word_values.get(piece) or _fast_word(piece)
        values[key] = value
        names[key] = name
        if i < count:
            piece = tokens[i]
            if piece == ";":
                i += 1
            elif piece != closer:
                raise _GiveUpError
    if closer:
        raise _GiveUpError
    return make(values, names), i


def parse_fast(text: str, make: MakeRecord) -> JDL | None:
    """The JDL, or None when the general parser must read ``text``."""
    if "\\" in text or _MARK in text:
        return None
    parts = text.split('"')
    if not len(parts) & 1:
        return None
    code = _PADDED_MARK.join(parts[0::2])
    if "#" in code or "//" in code or "/*" in code:
        return None
    tokens = (
        code.replace(";", " ; ")
        .replace("=", " = ")
        .replace(",", " , ")
        .replace("{", " { ")
        .replace("}", " } ")
        .replace("[", " [ ")
        .replace("]", " ] ")
        .split()
    )
    take = iter(parts[1::2]).__next__
    try:
        if tokens and tokens[0] == "[":
            jdl, i = _fast_record(tokens, 1, take, "]", make)
            return jdl if i == len(tokens) else None
        return _fast_record(tokens, 0, take, "", make)[0]
    except (_GiveUpError, IndexError):
        return None


def parse_general(text: str, make: MakeRecord) -> JDL:
    """The general parser alone (the fast path's reference in the tests)."""
    return _Parser(text, make).document()


def parse(text: str, make: MakeRecord) -> JDL:
    """The record in ``text``, built with ``make(values, names)`` (dicts keyed by lower name)."""
    try:
        record = parse_fast(text, make)
        return record if record is not None else _Parser(text, make).document()
    except RecursionError:
        raise InvalidJDLError("the JDL nests lists and records too deeply") from None


def read_value(text: str, in_list: bool, make: MakeRecord) -> tuple[JDLValue, int]:
    """The value at the start of ``text`` and where it ends (for the writer's checks)."""
    return _Parser(text, make).value(0, "probe", in_list)
