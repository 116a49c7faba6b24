"""A small reader of DIRAC's ClassAd JDL (what the matcher hands to pilots).

Values: quoted strings (backslash escapes), bare words and numbers, lists ``{ ... }`` and nested
ads ``[ ... ]``; ``#`` and ``//`` comment lines are dropped.

Example::

    >>> parse_jdl('[ Executable = "/bin/echo"; Arguments = "hi"; CPUTime = 600;'
    ...           ' OutputSandbox = {"std.out", "std.err"}; ]')["OutputSandbox"]
    ['std.out', 'std.err']
"""

from __future__ import annotations

from typing import Any


class JdlError(ValueError):
    """The text is not a JDL."""


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = "\n".join(line for line in text.splitlines()
                              if not line.lstrip().startswith(("#", "//")))
        self.pos = 0

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise JdlError(f"expected {char!r} at {self.pos}")
        self.pos += 1

    def string(self) -> str:
        self.expect('"')
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\" and self.pos < len(self.text):
                out.append(self.text[self.pos])
                self.pos += 1
            elif char == '"':
                return "".join(out)
            else:
                out.append(char)
        raise JdlError("unterminated string")

    def bare(self) -> Any:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ';,}]\n':
            self.pos += 1
        word = self.text[start:self.pos].strip()
        for kind in (int, float):
            try:
                return kind(word)
            except ValueError:
                pass
        return word

    def value(self) -> Any:
        char = self.peek()
        if char == '"':
            return self.string()
        if char == "{":
            self.pos += 1
            items: list[Any] = []
            while self.peek() != "}":
                if not self.peek():
                    raise JdlError("unterminated list")
                start = self.pos
                items.append(self.value())
                if self.peek() == ",":
                    self.pos += 1
                elif self.pos == start:  # nothing read: a character no value starts with
                    raise JdlError(f"unexpected {self.peek()!r} in a list at {self.pos}")
            self.pos += 1
            return items
        if char == "[":
            self.pos += 1
            return self.ad("]")
        return self.bare()

    def ad(self, end: str) -> dict[str, Any]:
        result: dict[str, Any] = {}
        while True:
            char = self.peek()
            if char == end:
                self.pos += 1
                return result
            if char == ";":
                self.pos += 1
                continue
            start = self.pos
            while self.pos < len(self.text) and self.text[self.pos] not in "=;" + end:
                self.pos += 1
            name = self.text[start:self.pos].strip()
            if not name or self.peek() != "=":
                raise JdlError(f"expected 'name = value' at {start}")
            self.pos += 1
            result[name] = self.value()


def parse_jdl(text: str) -> dict[str, Any]:
    """The attributes of a JDL as a dict (outer brackets optional)."""
    reader = _Reader(text)
    try:
        if reader.peek() == "[":
            reader.pos += 1
            return reader.ad("]")
        reader.text += "\n]"
        return reader.ad("]")
    except RecursionError:
        raise JdlError("the JDL nests lists and records too deeply") from None


def as_list(value: Any) -> list[str]:
    """A JDL value as a list of strings (a single string becomes a one-item list)."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]
