"""What ``dtrans`` and ``dprod`` share: reading YAML descriptions, tables in DIRAC's formats
(``-f pretty|csv|json``), key/value blocks, and a progress bar while waiting for a
transformation or production to finish.

Example::

    >>> print(key_values({"TransformationID": 3, "Status": "Active"}, "pretty"))
    TransformationID: 3
    Status: Active
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

import yaml

from core.exceptions import InvalidArgumentError
from wms.cli._common import FORMATS, format_table, value_text

__all__ = ["FORMATS", "format_table", "key_values", "read_yaml", "wait_percent"]


def read_yaml(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidArgumentError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgumentError(f"{path}: the description must be a mapping")
    return data


def key_values(values: Mapping[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps({k: _plain(v) for k, v in values.items()}, indent=2)
    if fmt == "csv":
        return "\n".join(f"{k},{_text(v)}," for k, v in values.items())
    if fmt != "pretty":
        raise InvalidArgumentError(f"Output format not supported: {fmt} not in "
                                   f"{', '.join(FORMATS)}")
    return "\n".join(f"{k}: {_text(v)}" for k, v in values.items())


def _plain(value: Any) -> Any:
    if isinstance(value, (dict, list, str, int, float, bool)) or value is None:
        return value
    return value_text(value)


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return value_text(value)


def wait_percent(get: Callable[[], float], *, timeout: float, label: str,
                 stream: TextIO | None = None, poll: float = 2.0) -> float:
    """Poll ``get()`` (a % done) until 100 or ``timeout`` s; a bar on a terminal."""
    stream = stream or sys.stderr
    deadline = time.monotonic() + timeout
    while True:
        percent = float(get())
        if stream.isatty():
            filled = int(30 * min(percent, 100) / 100)
            stream.write(f"\r{label} [{'#' * filled}{'.' * (30 - filled)}] {percent:5.1f}%")
            stream.flush()
        if percent >= 100 or time.monotonic() >= deadline:
            if stream.isatty():
                stream.write("\n")
            return percent
        time.sleep(poll)
