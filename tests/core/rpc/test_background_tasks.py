"""Background tasks that keep failing: one traceback, then brief reminders, then a recovery
line (a database down for an hour used to print a traceback per service every 5 s)."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest

from core.rpc import server


def run_ticks(task: Any, times: int, monkeypatch: pytest.MonkeyPatch,
              reminder: float = 600.0) -> None:
    monkeypatch.setattr(server, "FAILURE_REMINDER", reminder)

    async def main() -> None:
        with ThreadPoolExecutor(1) as pool:
            tick = server._ticker(SimpleNamespace(executor=pool),  # type: ignore[arg-type]
                                  asyncio.get_running_loop(), task, "Test/Sweep")
            for _ in range(times):
                await tick()
    asyncio.run(main())


def records(caplog: pytest.LogCaptureFixture) -> list[tuple[str, bool]]:
    return [(r.getMessage(), r.exc_info is not None) for r in caplog.records
            if "Test/Sweep" in r.getMessage()]


def test_same_failure_logged_once_with_traceback_then_recovery(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = iter([RuntimeError("db down")] * 5 + [None, KeyError("x")])

    def task() -> None:
        error = next(outcomes)
        if error is not None:
            raise error
    caplog.set_level(logging.WARNING, logger=server.log.name)
    run_ticks(task, 7, monkeypatch)
    assert records(caplog) == [
        ("background task of Test/Sweep failed", True),  # 5 failures, one traceback
        ("background task of Test/Sweep works again after 5 failed runs", False),
        ("background task of Test/Sweep failed", True),  # a new failure: in full again
    ]


def test_a_changed_error_is_logged_in_full_and_reminders_are_one_line(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    errors = iter([OSError("a"), OSError("a"), OSError("b"), OSError("b")])

    def task() -> None:
        raise next(errors)
    caplog.set_level(logging.WARNING, logger=server.log.name)
    run_ticks(task, 4, monkeypatch, reminder=0.0)
    assert records(caplog) == [
        ("background task of Test/Sweep failed", True),
        ("background task of Test/Sweep still failing (2 times in a row): OSError: a", False),
        ("background task of Test/Sweep failed", True),
        ("background task of Test/Sweep still failing (4 times in a row): OSError: b", False),
    ]
