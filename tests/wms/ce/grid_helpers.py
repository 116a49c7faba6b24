"""Polling helpers of the ARC and Cloud CE tests."""

from __future__ import annotations

import time

from tests.wms.ce.helpers import live_processes_with


def wait_live(marker: str, limit: float = 10.0) -> list[int]:
    """The live processes with ``marker`` once there are some (empty after ``limit`` s)."""
    deadline = time.monotonic() + limit
    while True:
        found = live_processes_with(marker)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)
