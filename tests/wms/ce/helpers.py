"""Bounded polling for CE tests."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from wms.ce.base import ComputingElement, PilotStatus


def wait_final(ce: ComputingElement, refs: Sequence[str],
               limit: float = 30.0) -> dict[str, PilotStatus]:
    """Poll until every pilot is in a final status (or ``limit`` seconds passed)."""
    deadline = time.monotonic() + limit
    while True:
        states = ce.status(refs)
        if all(s.is_final for s in states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(0.2)


def wait_status(ce: ComputingElement, ref: str, wanted: PilotStatus,
                limit: float = 30.0) -> PilotStatus:
    deadline = time.monotonic() + limit
    while True:
        state = ce.status([ref])[ref]
        if state == wanted or state.is_final or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def wait_file(path: Path, limit: float = 30.0) -> bool:
    deadline = time.monotonic() + limit
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def live_processes_with(marker: str) -> list[int]:
    """Non-zombie processes whose command line contains ``marker``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(proc.name))
    return found
