"""The result of a bulk catalog call: what succeeded (per item) and why the rest failed.

On the wire it is DIRAC's ``{"Successful": {lfn: value}, "Failed": {lfn: "reason"}}``.

Example::

    >>> result = BulkResult({"/demo/f1": True}, {"/demo/f2": "No such file or directory"})
    >>> result.to_wire()["Failed"]
    {'/demo/f2': 'No such file or directory'}
    >>> BulkResult.from_wire(result.to_wire()) == result
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

NO_SUCH = "No such file or directory"
DENIED = "Permission denied"
EXISTS = "File exists"
NOT_EMPTY = "Directory not empty"
IS_DIR = "Is a directory"
NOT_DIR = "Not a directory"


@dataclass
class BulkResult:
    successful: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def ok(self, key: str, value: Any = True) -> None:
        self.successful[key] = value

    def fail(self, key: str, reason: str) -> None:
        self.failed[key] = reason

    def to_wire(self) -> dict[str, Any]:
        return {"Successful": self.successful, "Failed": self.failed}

    @classmethod
    def from_wire(cls, value: Mapping[str, Any]) -> BulkResult:
        if not isinstance(value, Mapping) or "Successful" not in value:
            raise TypeError(f"not a bulk result: {value!r}")
        return cls(dict(value.get("Successful") or {}),
                   {str(k): str(v) for k, v in (value.get("Failed") or {}).items()})
