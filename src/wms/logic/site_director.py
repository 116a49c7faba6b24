"""What the site director decides and writes: how many pilots a queue gets, and the script
that starts one.

Pilots per queue and cycle, DIRAC's rule::

    slots     = min(MaxTotalPilots - active pilots, MaxWaitingPilots - waiting pilots)
    to_submit = min(MaxPilotsToSubmit, slots, waiting jobs the queue can run - waiting pilots)

The pilot script is plain ``sh``: it unpacks the pilot zipapp, a bearer token (mode 600) and
the CA certificates it carries, runs the pilot with the queue's description, and removes its
directory at the end. Everything the pilot needs travels inside the script, so it works on any
worker node that can reach the server (SSH hosts, batch nodes) with only ``python3``.

Example::

    >>> from core.config.schema import QueueConfig
    >>> pilots_to_submit(QueueConfig(MaxWaitingPilots=5), waiting_jobs=8, waiting_pilots=2,
    ...                  active_pilots=2)
    3
"""

from __future__ import annotations

import base64
import io
import shlex
import tarfile
from pathlib import Path
from typing import Any

from core.config.schema import Config, QueueConfig
from core.exceptions import ConfigError
from wms.logic import capacity


def pilot_identity(config: Config) -> tuple[str, str, str]:
    """(user, group, VO) that pilot tokens are issued for: ``Operations.Pilot.User`` and its
    ``Group`` (default: the user's first GenericPilot group)."""
    conf = config.operations.pilot
    if config.registry.users.get(conf.user) is None:
        raise ConfigError(f"Operations.Pilot.User: no user {conf.user!r} in the registry")
    group = conf.group or next(
        (g for g, gc in config.registry.groups.items()
         if conf.user in gc.users and "GenericPilot" in gc.properties), None)
    if group is None:
        raise ConfigError("Operations.Pilot.Group: no GenericPilot group for the pilots")
    return conf.user, group, config.registry.groups[group].vo


def pilots_to_submit(queue: QueueConfig, *, waiting_jobs: int, waiting_pilots: int,
                     active_pilots: int) -> int:
    slots = min(queue.max_total_pilots - active_pilots,
                queue.max_waiting_pilots - waiting_pilots)
    return max(0, min(queue.max_pilots_to_submit, slots, waiting_jobs - waiting_pilots))


def queue_resource(site: str, ce: str, queue_name: str, queue: QueueConfig) -> dict[str, Any]:
    """The resource description a pilot of this queue would send (to count its jobs); its
    CPUTime is bounded by the wall time too, as a pilot's offer is; GPUs and whole nodes as
    declared (:func:`wms.logic.capacity.queue_resource`)."""
    return capacity.queue_resource(capacity.QueueCapacity(site, ce, queue_name, "", False,
                                                          queue))


def ca_bundle(ca_dir: Path) -> bytes:
    """The CA directory as a .tar.gz (hash links kept as links)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(str(ca_dir), arcname="certificates")
    return buffer.getvalue()


def _unpack(tag: str, data: bytes, then: str) -> str:
    """``base64 -d`` of ``data`` from a here-document, its output going to ``then`` (e.g.
    ``> file`` or ``| tar -xzf -``; the here-document belongs to ``base64``)."""
    text = base64.encodebytes(data).decode("ascii")
    return f"base64 -d <<'{tag}' {then}\n{text}{tag}\n"


def pilot_script(*, zipapp: bytes, token: str, cas: bytes, args: list[str],
                 python: str = "python3") -> str:
    """The ``sh`` script that starts one pilot; ``args`` are the pilot's options."""
    options = " ".join(shlex.quote(a) for a in args)
    return (
        "#!/bin/sh\n"
        "# pilotwms pilot: unpack, run, clean up\n"
        'd=$(mktemp -d "${TMPDIR:-/tmp}/pilotwms.XXXXXX") || exit 1\n'
        'cd "$d" || exit 1\n'
        "umask 077\n"
        + _unpack("PILOTWMS_PYZ", zipapp, "> pilot.pyz")
        + _unpack("PILOTWMS_TOKEN", token.encode(), "> token")
        + _unpack("PILOTWMS_CA", cas, "| tar -xzf -")
        + f'{shlex.quote(python)} pilot.pyz --token-file "$d/token" --ca-dir "$d/certificates"'
        f' --workdir "$d/work" {options}\n'
        "code=$?\n"
        'cd / && rm -rf "$d"\n'
        "exit $code\n"
    )
