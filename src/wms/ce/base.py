"""The computing-element (CE) interface the site director uses to run pilots.

A CE is built from a name and its settings (the ``Resources/Sites/.../CEs/<name>`` mapping of the
configuration). It submits a pilot script ``count`` times and returns opaque references
(``slurm://host/12345``), then reports DIRAC pilot statuses for references, kills pilots and
returns their output. Unknown references (never seen, purged, or belonging to another CE) are
reported as ``Deleted``; ``Aborted`` is kept for pilots that were killed or refused.

Example::

    >>> from wms.ce.base import PilotStatus, ce_class
    >>> ce_class("Local").__name__, PilotStatus.DONE.is_final
    ('LocalComputingElement', True)
    >>> ce_class("Slurm").TYPE
    'Slurm'
"""

from __future__ import annotations

import importlib
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, ClassVar

from core.exceptions import ConfigError, PilotWMSError

__all__ = [
    "CEError",
    "ComputingElement",
    "PilotStatus",
    "Settings",
    "ce_class",
    "embed_env",
    "split_ref",
    "BatchRefs",
]


class CEError(PilotWMSError):
    """A CE command or request failed (submission refused, batch system unreachable...)."""

    strerror = "Computing element error"


class PilotStatus(StrEnum):
    """DIRAC's pilot statuses."""

    SUBMITTED = "Submitted"
    WAITING = "Waiting"
    RUNNING = "Running"
    DONE = "Done"
    FAILED = "Failed"
    ABORTED = "Aborted"
    DELETED = "Deleted"

    @property
    def is_final(self) -> bool:
        return self in (PilotStatus.DONE, PilotStatus.FAILED, PilotStatus.ABORTED,
                        PilotStatus.DELETED)


class Settings:
    """Typed, checked access to a CE's settings; errors name the CE and the key.

    Every key a CE reads must be declared in its ``KNOWN_KEYS``; anything else is refused, so a
    misspelt key is an error instead of a silently ignored default.
    """

    def __init__(self, ce_name: str, values: Mapping[str, Any], known: frozenset[str]) -> None:
        if not isinstance(values, Mapping):
            raise ConfigError(f"CE {ce_name}: settings must be a mapping")
        unknown = sorted(str(k) for k in values if k not in known)
        if unknown:
            raise ConfigError(f"CE {ce_name}: unknown setting(s) {', '.join(unknown)} "
                              f"(known: {', '.join(sorted(known))})")
        self.ce_name = ce_name
        self.values = dict(values)

    def _fail(self, key: str, why: str) -> ConfigError:
        return ConfigError(f"CE {self.ce_name}: setting {key} {why}")

    def get_str(self, key: str, default: str | None = None) -> str:
        value = self.values.get(key, default)
        if value is None:
            raise self._fail(key, "is required")
        if not isinstance(value, str) or not value:
            raise self._fail(key, f"must be a non-empty string, not {value!r}")
        return value

    def opt_str(self, key: str) -> str | None:
        return self.get_str(key) if self.values.get(key) is not None else None

    def get_int(self, key: str, default: int | None = None, *, minimum: int = 0) -> int:
        value = self.values.get(key, default)
        if value is None:
            raise self._fail(key, "is required")
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self._fail(key, f"must be an integer >= {minimum}, not {value!r}")
        return value

    def get_bool(self, key: str, default: bool) -> bool:
        value = self.values.get(key, default)
        if not isinstance(value, bool):
            raise self._fail(key, f"must be true or false, not {value!r}")
        return value

    def str_map(self, key: str) -> dict[str, str]:
        value = self.values.get(key) or {}
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise self._fail(key, "must be a mapping of strings")
        return dict(value)


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def shell_quote(value: str) -> str:
    """POSIX single-quoting (``shlex.quote`` semantics, always quoted)."""
    return "'" + value.replace("'", "'\"'\"'") + "'"


def embed_env(script: str, env: Mapping[str, str] | None) -> str:
    """The pilot script with ``export K='v'`` lines after its ``#!`` line (if any).

    Batch systems and remote shells all pass environment differently (``--export`` splits on
    commas, ssh drops most variables); putting it in the script works everywhere.

    >>> print(embed_env("#!/bin/sh\\necho $A\\n", {"A": "x y"}), end="")
    #!/bin/sh
    export A='x y'
    echo $A
    """
    if not env:
        return script
    lines = []
    for key, value in env.items():
        if not _ENV_NAME.match(key):
            raise ValueError(f"invalid environment variable name {key!r}")
        lines.append(f"export {key}={shell_quote(value)}\n")
    if script.startswith("#!"):
        first, _, rest = script.partition("\n")
        return first + "\n" + "".join(lines) + rest
    return "#!/bin/sh\n" + "".join(lines) + script


def split_ref(ref: str, scheme: str, host: str) -> str | None:
    """The job part of ``<scheme>://<host>/<job>``, or None when ``ref`` is not of that CE."""
    prefix = f"{scheme}://{host}/"
    if not ref.startswith(prefix):
        return None
    job = ref[len(prefix):]
    return job if job and "/" not in job else None


class BatchRefs:
    """Pilot references ``<REF_SCHEME>://<host>/<job id>`` of a CE whose jobs carry an ID of
    the form ``REF_ID`` (Slurm, HTCondor, ARC): a mixin giving the reference parsing.

    >>> class Demo(BatchRefs):
    ...     REF_SCHEME, REF_ID, name, host = "slurm", re.compile(r"^\\d+$"), "ce", "h"
    >>> Demo()._ids(["slurm://h/12", "slurm://other/12", "slurm://h/x"])
    {'slurm://h/12': '12', 'slurm://other/12': None, 'slurm://h/x': None}
    """

    REF_SCHEME: ClassVar[str]
    REF_ID: ClassVar[re.Pattern[str]]
    name: str
    host: str

    def _ids(self, refs: Sequence[str]) -> dict[str, str | None]:
        """Each reference's job ID, None for references not of this CE."""
        out: dict[str, str | None] = {}
        for ref in refs:
            job = split_ref(ref, self.REF_SCHEME, self.host)
            out[ref] = job if job is not None and self.REF_ID.match(job) else None
        return out

    def _own_id(self, ref: str) -> str:
        job = self._ids([ref])[ref]
        if job is None:
            raise ValueError(f"{ref!r} is not a pilot reference of CE {self.name}")
        return job


def minutes(seconds: int) -> int:
    return max(1, math.ceil(seconds / 60))


class ComputingElement(ABC):
    """One CE: submit pilots, follow them, kill them, fetch their output."""

    #: the type name used in the configuration (``CEType``)
    TYPE: ClassVar[str] = ""
    #: setting keys this CE accepts
    KNOWN_KEYS: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        if not name:
            raise ValueError("a CE needs a name")
        self.name = name
        self.settings = Settings(name, settings, self.KNOWN_KEYS)

    @staticmethod
    def check_submit(script: str, count: int, queue: str, processors: int,
                     wall_seconds: int | None, memory_mb: int | None) -> None:
        if not script:
            raise ValueError("empty pilot script")
        if count < 1:
            raise ValueError(f"count must be >= 1, not {count}")
        if not queue:
            raise ValueError("queue must be given")
        if processors < 1:
            raise ValueError(f"processors must be >= 1, not {processors}")
        if wall_seconds is not None and wall_seconds < 1:
            raise ValueError(f"wall_seconds must be >= 1, not {wall_seconds}")
        if memory_mb is not None and memory_mb < 1:
            raise ValueError(f"memory_mb must be >= 1, not {memory_mb}")

    @staticmethod
    def check_gpus(gpus: int) -> None:
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
            raise ValueError(f"gpus must be an integer >= 0, not {gpus!r}")

    @abstractmethod
    def submit(self, script: str, count: int = 1, *, queue: str, processors: int = 1,
               wall_seconds: int | None = None, memory_mb: int | None = None,
               env: Mapping[str, str] | None = None, gpus: int = 0,
               gpu_model: str | None = None) -> list[str]:
        """Submit ``count`` pilots running ``script``; their references, in order.

        ``gpus`` (and ``gpu_model``) ask the batch system for GPUs where it can be asked
        (Slurm ``--gres``, HTCondor ``request_GPUs``); other CEs give what their slots have."""

    @abstractmethod
    def status(self, refs: Sequence[str]) -> dict[str, PilotStatus]:
        """The pilot status of every reference (unknown ones: ``Deleted``)."""

    @abstractmethod
    def kill(self, refs: Sequence[str]) -> None:
        """Kill the pilots (already finished or unknown ones are ignored)."""

    @abstractmethod
    def output(self, ref: str) -> tuple[str, str]:
        """The pilot's (stdout, stderr) so far."""

    def cleanup(self, refs: Sequence[str]) -> None:  # noqa: B027 - optional hook
        """Forget finished pilots (remove files); default: nothing to do."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (SSH masters...); the CE may not be used afterwards."""

    def __enter__(self) -> ComputingElement:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_TYPES = {
    "ARC": "wms.ce.arc:ARCComputingElement",
    "Cloud": "wms.ce.cloud:CloudComputingElement",
    "HTCondor": "wms.ce.htcondor:HTCondorComputingElement",
    "Local": "wms.ce.local:LocalComputingElement",
    "SSH": "wms.ce.ssh:SSHComputingElement",
    "Slurm": "wms.ce.slurm:SlurmComputingElement",
}


def ce_class(type_name: str) -> type[ComputingElement]:
    """The CE class for a configured ``CEType``."""
    try:
        target = _TYPES[type_name]
    except KeyError:
        raise ConfigError(
            f"unknown CE type {type_name!r} (known: {', '.join(sorted(_TYPES))})"
        ) from None
    module, _, attr = target.partition(":")
    cls: type[ComputingElement] = getattr(importlib.import_module(module), attr)
    return cls
