"""Helpers every command shares: error reporting and exit codes as COMDIRAC does them.

A :class:`~core.exceptions.PilotWMSError` is printed as ``ERROR: <message>`` on stderr with exit
status 2; Ctrl-C exits 130; anything else is a bug and shows its traceback.

Example::

    >>> def main(argv): raise InvalidArgumentError("bad")
    >>> run(main, [])  # prints "ERROR: bad" to stderr
    2
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from core.exceptions import InvalidArgumentError, PilotWMSError  # noqa: F401 - doctest uses it
from core.rpc.jencode import encode

EXIT_OK = 0
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def run(main: Callable[[Sequence[str]], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a command's ``main(argv)``, mapping errors to messages and exit codes."""
    try:
        code = main(list(sys.argv[1:] if argv is None else argv))
    except PilotWMSError as exc:
        print(f"ERROR: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("Interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if code is None else code


def print_json(value: Any) -> None:
    """Pretty JSON of a wire value (datetimes as DIRAC encodes them)."""
    print(json.dumps(json.loads(encode(value)), indent=2, sort_keys=True))
