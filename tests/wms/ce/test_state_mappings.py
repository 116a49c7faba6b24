"""Every state an A-REX or a Nova server can report, and the pilot status it becomes (the
tables of docs/computing-elements.md). The real A-REX tests (test_arex.py) check the states a
real A-REX shows on the way; these cover the ones it shows seldom or never on demand."""

from __future__ import annotations

import pytest

from wms.ce.arc import rest_status
from wms.ce.base import PilotStatus
from wms.ce.cloud import EXIT_MARK, nova_status

W, R, D, F, A, X = (PilotStatus.WAITING, PilotStatus.RUNNING, PilotStatus.DONE,
                    PilotStatus.FAILED, PilotStatus.ABORTED, PilotStatus.DELETED)


@pytest.mark.parametrize(("state", "expected"), [
    # REST states of A-REX 6/7
    ("ACCEPTING", W), ("ACCEPTED", W), ("PREPARING", W), ("PREPARED", W), ("SUBMITTING", W),
    ("QUEUING", W),
    ("RUNNING", R), ("HELD", R), ("EXITINGLRMS", R), ("OTHER", R), ("EXECUTED", R),
    ("FINISHING", R),
    ("FAILED", F), ("KILLING", A), ("KILLED", A), ("WIPED", X),
    # A-REX's internal (grid-manager) names, accepted too
    ("SUBMIT", W), ("INLRMS", R), ("DELETED", X),
    # case does not matter; anything else (404's "None") is gone
    ("running", R), ("Queuing", W), ("None", X), ("", X), ("SOMETHING-NEW", X),
])
def test_arc_rest_states(state: str, expected: PilotStatus) -> None:
    assert rest_status(state) == expected


@pytest.mark.parametrize(("code", "expected"), [(0, D), (None, D), (1, F), (3, F), (-9, F)])
def test_arc_finished_depends_on_the_exit_code(code: int | None, expected: PilotStatus) -> None:
    assert rest_status("FINISHED", code) == expected
    # the exit code matters for FINISHED only
    assert rest_status("FAILED", 0) == F and rest_status("RUNNING", 3) == R


@pytest.mark.parametrize(("status", "expected"), [
    ("BUILD", W),
    ("ACTIVE", R), ("REBOOT", R), ("HARD_REBOOT", R), ("PAUSED", R), ("SUSPENDED", R),
    ("RESIZE", R), ("VERIFY_RESIZE", R), ("MIGRATING", R), ("RESCUE", R), ("SHELVED", R),
    ("PASSWORD", R), ("REBUILD", R),
    ("ERROR", F),
    ("DELETED", X), ("SOFT_DELETED", X),
    ("active", R), ("build", W),
])
def test_nova_statuses(status: str, expected: PilotStatus) -> None:
    assert nova_status(status) == expected


@pytest.mark.parametrize(("console", "expected"), [
    (f"booting\n{EXIT_MARK} 0\nPowering off\n", D),
    (f"{EXIT_MARK} 2\n", F),
    (f"{EXIT_MARK} 1\nretry\n{EXIT_MARK} 0\n", D),  # the last mark counts
    (f"{EXIT_MARK} 0\n{EXIT_MARK} 1\n", F),
    ("pilotwms: VM lifetime of 60 s reached\n", F),  # the watchdog powered it off
    (f"text {EXIT_MARK} 0\n", F),  # a mark must start its line
    ("", F), (None, F),
])
def test_nova_shutoff_depends_on_the_console(console: str | None, expected: PilotStatus) -> None:
    assert nova_status("SHUTOFF", console) == expected
