"""Tests of the job state machine against DIRAC's own ``JobsStateMachine`` (the installed
DIRAC client is the oracle) and a literal copy of its table, plus pilotwms's Standby."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from pathlib import Path

import pytest

from core.exceptions import InvalidTransitionError
from wms.logic.states import (
    ACTIVE,
    DIRAC_STATUSES,
    FINAL,
    JOB_STATUSES,
    REALLY_FINAL,
    TRANSITIONS,
    JobStatus,
    MinorStatus,
    allowed,
    check_transition,
    is_final,
)

# DIRAC's JobsStateMachine (DIRACCommon/WorkloadManagementSystem/Client/JobStatus.py of DIRAC
# 9.1.22), written out again; test_table_is_the_installed_dirac_s checks it against the code.
DIRAC_TABLE: dict[str, set[str]] = {
    "Submitting": {"Received", "Checking", "Deleted", "Killed"},
    "Received": {"Scouting", "Checking", "Staging", "Waiting", "Failed", "Deleted", "Killed"},
    "Checking": {"Scouting", "Staging", "Waiting", "Rescheduled", "Failed", "Deleted", "Killed"},
    "Scouting": {"Checking", "Failed", "Stalled", "Killed"},
    "Staging": {"Checking", "Waiting", "Failed", "Killed"},
    "Waiting": {"Matched", "Rescheduled", "Deleted", "Killed"},
    "Matched": {"Running", "Failed", "Rescheduled", "Killed"},
    "Rescheduled": {"Waiting", "Received", "Deleted", "Failed", "Killed"},
    "Running": {"Stalled", "Done", "Failed", "Rescheduled", "Completing", "Killed", "Received"},
    "Stalled": {"Running", "Failed", "Killed"},
    "Completing": {"Done", "Failed", "Completed", "Stalled", "Killed"},
    "Completed": {"Done", "Failed"},
    "Done": {"Deleted"},
    "Failed": {"Rescheduled", "Deleted"},
    "Killed": {"Deleted"},
    "Deleted": set(),
}
#: pilotwms's own status: jobs subscribed to an event (docs/events.md)
OUR_TABLE = {**DIRAC_TABLE, "Standby": {"Received", "Killed", "Deleted"}}

ALL = list(OUR_TABLE)
REPO = Path(__file__).resolve().parents[3]


def _dirac_python() -> str:
    venv = os.environ.get("PILOTWMS_DIRAC_VENV", str(REPO / ".cache" / "dirac-venv"))
    python = os.environ.get("PILOTWMS_DIRAC_CLIENT_PYTHON", f"{venv}/bin/python")
    if not Path(python).exists():
        proc = subprocess.run(["bash", str(REPO / "scripts/install-dirac-client.sh")],
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        python = proc.stdout.strip().splitlines()[-1]
    return python


_DUMP = """
import json
from DIRACCommon.WorkloadManagementSystem.Client import JobStatus as J
m = J.JobsStateMachine(None)
print(json.dumps({"states": J.JOB_STATES, "final": J.JOB_FINAL_STATES,
                  "table": {k: sorted(v.stateMap) for k, v in m.states.items()}}))
"""


@pytest.mark.dirac
def test_table_is_the_installed_dirac_s() -> None:
    """DIRAC's 16 statuses and their transitions are exactly what its code says."""
    proc = subprocess.run([_dirac_python(), "-c", _DUMP], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dirac = json.loads(proc.stdout)
    assert [str(s) for s in DIRAC_STATUSES] == dirac["states"]
    assert FINAL == set(dirac["final"])
    ours = {str(k): {str(v) for v in vs} for k, vs in TRANSITIONS.items() if k != "Standby"}
    assert ours == {k: set(v) for k, v in dirac["table"].items()}
    assert "Standby" not in dirac["states"]  # ours alone: see docs/events.md


def test_the_statuses() -> None:
    assert [status.value for status in JOB_STATUSES] == [
        "Submitting", "Received", "Checking", "Scouting", "Staging", "Waiting", "Matched",
        "Rescheduled", "Running", "Stalled", "Completing", "Done", "Completed", "Failed",
        "Deleted", "Killed", "Standby",
    ]  # fmt: skip
    assert DIRAC_STATUSES == JOB_STATUSES[:16]
    assert set(JOB_STATUSES) == set(ALL)
    assert JobStatus.RUNNING == "Running"
    assert f"{JobStatus.MATCHED}" == "Matched"


def test_final_sets() -> None:
    assert FINAL == {"Done", "Completed", "Failed", "Killed"}
    assert REALLY_FINAL == {"Deleted"}
    assert ACTIVE == set(ALL) - {"Done", "Completed", "Failed", "Killed", "Deleted"}
    assert all(is_final(s) for s in ("Done", "Completed", "Failed", "Killed", "Deleted"))
    assert not any(is_final(s) for s in ACTIVE)


def test_table_is_exactly_dirac_s_plus_standby() -> None:
    assert {str(k): {str(v) for v in vs} for k, vs in TRANSITIONS.items()} == OUR_TABLE
    # nothing enters Standby: a job is born in it
    assert not any("Standby" in targets for targets in OUR_TABLE.values())


@pytest.mark.parametrize(("current", "new"), list(itertools.product(ALL, ALL)))
def test_every_pair(current: str, new: str) -> None:
    expected = current == new or new in OUR_TABLE[current]
    assert allowed(current, new) is expected
    assert allowed(JobStatus(current), JobStatus(new)) is expected
    if expected:
        check_transition(current, new)
    else:
        with pytest.raises(InvalidTransitionError) as info:
            check_transition(current, new)
        assert str(info.value) == f"Job status change {current} -> {new} not allowed"
        assert info.value.errno == 1507


def test_the_same_status_is_always_allowed() -> None:
    for status in ALL:
        assert allowed(status, status)
        check_transition(status, status)


def test_unknown_statuses() -> None:
    assert not allowed("Running", "Sleeping")
    assert not allowed("running", "Done")
    with pytest.raises(InvalidTransitionError, match="^Unknown job status 'Sleeping'$"):
        check_transition("Running", "Sleeping")
    with pytest.raises(InvalidTransitionError, match="^Unknown job status 'Nope'$"):
        check_transition("Nope", "Running")


def test_minor_statuses_are_dirac_s_words() -> None:
    expected = {
        "JOB_ACCEPTED": "Job accepted",
        "BULK_TRANSACTION_CONFIRMATION": "Bulk transaction confirmation",
        "ASSIGNED": "Assigned",
        "MARKED_FOR_TERMINATION": "Marked for termination",
        "CHECKING_ACCOUNTING": "Checking accounting",
        "MAX_RESCHEDULING": "Maximum of reschedulings reached",
        "PILOT_AGENT_SUBMISSION": "Pilot Agent Submission",
        "RESCHEDULED": "Job Rescheduled",
        "INPUT_DATA_RESOLUTION": "Input Data Resolution",
        "DOWNLOADING_INPUT_SANDBOX": "Downloading InputSandbox",
        "JOB_INITIALIZATION": "Job Initialization",
        "APPLICATION": "Application",
        "APP_SUCCESS": "Application Finished Successfully",
        "APP_ERRORS": "Application Finished With Errors",
        "EXEC_COMPLETE": "Execution Complete",
        "UPLOADING_OUTPUT_SANDBOX": "Uploading Output Sandbox",
        "OUTPUT_SANDBOX_UPLOADED": "Output Sandbox Uploaded",
        "UPLOADING_OUTPUT_DATA": "Uploading Output Data",
        "OUTPUT_DATA_UPLOADED": "Output Data Uploaded",
        "WATCHDOG_STALLED": "Watchdog identified this job as stalled",
        "STALLED_PILOT_NOT_RUNNING": "Job stalled: pilot not running",
        "JOB_EXCEEDED_CPU": "Job has reached the CPU limit of the queue",
        "JOB_EXCEEDED_WALL_CLOCK": "Job has exceeded maximum wall clock time",
        "RECEIVED_KILL_SIGNAL": "Received Kill signal",
        "ILLEGAL_JOB_JDL": "Illegal Job JDL",
        "INPUT_NOT_AVAILABLE": "Input Data Not Available",
        "NO_CANDIDATE_SITE_FOUND": "No candidate sites available",
        "EXCEPTION_DURING_EXEC": "Exception During Execution",
        "APPLICATION_STATUS_UNKNOWN": "Unknown",
    }
    for name, text in expected.items():
        assert getattr(MinorStatus, name) == text, name
