"""DIRAC's job statuses, minor statuses and status transition table, plus ``Standby``.

The table is DIRAC's ``JobsStateMachine`` (``WorkloadManagementSystem/Client/JobStatus.py``)
for DIRAC's 16 statuses, checked pair by pair against the installed DIRAC client by
tests/interop/test_dirac_oracle.py. pilotwms adds one, ``Standby``: a job subscribed to an
event waits there, never matched, until the event is notified (docs/events.md). Nothing moves
*to* Standby (jobs are born in it); it leaves to ``Received`` (released), ``Killed`` or
``Deleted``. DIRAC's clients show the name as is; see docs/events.md for how they treat it.
Setting the status a job already has is always allowed (DIRAC's state machine accepts it): it is
how the minor or application status changes alone, e.g. Running -> Running with a new minor
status. Deleted is the only status with no way out: the one deliberate difference from DIRAC,
listed with its reason in :data:`DIRAC_DIFFERENCES`.

>>> from wms.logic.states import JobStatus, MinorStatus, allowed, check_transition
>>> allowed(JobStatus.WAITING, JobStatus.MATCHED), allowed("Done", "Running")
(True, False)
>>> check_transition("Done", "Running")
Traceback (most recent call last):
...
core.exceptions.InvalidTransitionError: Job status change Done -> Running not allowed
>>> MinorStatus.JOB_ACCEPTED
'Job accepted'
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import Final

from core.exceptions import InvalidTransitionError

__all__ = [
    "ACTIVE",
    "DIRAC_STATUSES",
    "FINAL",
    "JOB_STATUSES",
    "DIRAC_DIFFERENCES",
    "REALLY_FINAL",
    "TRANSITIONS",
    "JobStatus",
    "MinorStatus",
    "allowed",
    "check_transition",
    "is_final",
]


class JobStatus(StrEnum):
    """DIRAC's 16 job statuses, spelled as DIRAC spells them (they go over the wire as text),
    then pilotwms's ``Standby`` (jobs waiting for an event)."""

    SUBMITTING = "Submitting"
    RECEIVED = "Received"
    CHECKING = "Checking"
    SCOUTING = "Scouting"
    STAGING = "Staging"
    WAITING = "Waiting"
    MATCHED = "Matched"
    RESCHEDULED = "Rescheduled"
    RUNNING = "Running"
    STALLED = "Stalled"
    COMPLETING = "Completing"
    DONE = "Done"
    COMPLETED = "Completed"
    FAILED = "Failed"
    DELETED = "Deleted"
    KILLED = "Killed"
    STANDBY = "Standby"


S = JobStatus

#: DIRAC's own statuses (``JOB_STATES``), in its order.
DIRAC_STATUSES: Final[tuple[JobStatus, ...]] = tuple(s for s in JobStatus if s != "Standby")

#: Every status, in DIRAC's order, then Standby.
JOB_STATUSES: Final[tuple[JobStatus, ...]] = tuple(JobStatus)

#: The payload's work is over (DIRAC's ``JOB_FINAL_STATES``).
FINAL: Final[frozenset[JobStatus]] = frozenset({S.DONE, S.COMPLETED, S.FAILED, S.KILLED})

#: The job object will not change any more (DIRAC's ``JOB_REALLY_FINAL_STATES``).
REALLY_FINAL: Final[frozenset[JobStatus]] = frozenset({S.DELETED})

#: Neither final nor really final: the job may still run or be run.
ACTIVE: Final[frozenset[JobStatus]] = frozenset(JobStatus) - FINAL - REALLY_FINAL

#: Allowed changes: status -> the statuses it may change to (besides itself).
TRANSITIONS: Final = MappingProxyType(
    {
        S.SUBMITTING: frozenset({S.RECEIVED, S.CHECKING, S.DELETED, S.KILLED}),
        S.RECEIVED: frozenset(
            {S.SCOUTING, S.CHECKING, S.STAGING, S.WAITING, S.FAILED, S.DELETED, S.KILLED}
        ),
        S.CHECKING: frozenset(
            {S.SCOUTING, S.STAGING, S.WAITING, S.RESCHEDULED, S.FAILED, S.DELETED, S.KILLED}
        ),
        S.SCOUTING: frozenset({S.CHECKING, S.FAILED, S.STALLED, S.KILLED}),
        S.STAGING: frozenset({S.CHECKING, S.WAITING, S.FAILED, S.KILLED}),
        S.WAITING: frozenset({S.MATCHED, S.RESCHEDULED, S.DELETED, S.KILLED}),
        S.MATCHED: frozenset({S.RUNNING, S.FAILED, S.RESCHEDULED, S.KILLED}),
        S.RESCHEDULED: frozenset({S.WAITING, S.RECEIVED, S.DELETED, S.FAILED, S.KILLED}),
        S.RUNNING: frozenset(
            {S.STALLED, S.DONE, S.FAILED, S.RESCHEDULED, S.COMPLETING, S.KILLED, S.RECEIVED}
        ),
        S.STALLED: frozenset({S.RUNNING, S.FAILED, S.KILLED}),
        S.COMPLETING: frozenset({S.DONE, S.FAILED, S.COMPLETED, S.STALLED, S.KILLED}),
        S.COMPLETED: frozenset({S.DONE, S.FAILED}),
        S.DONE: frozenset({S.DELETED}),
        S.FAILED: frozenset({S.RESCHEDULED, S.DELETED}),
        S.KILLED: frozenset({S.DELETED}),
        S.DELETED: frozenset(),
        # pilotwms: a job subscribed to an event (released, or the chain ended)
        S.STANDBY: frozenset({S.RECEIVED, S.KILLED, S.DELETED}),
    }
)


_DELETED_IS_FINAL = (
    "pilotwms: Deleted is final. DIRAC 9.1.22 gives Deleted no transitions and no default "
    "state, so its state machine lets a Deleted job take any status; a deleted job's "
    "sandboxes and parameters are gone, and reviving it would show a job without its data")

#: Where pilotwms's table differs from DIRAC's ``JobsStateMachine`` on purpose:
#: (current, new) -> why. Every other pair of the 16 x 16 is the same as DIRAC's.
DIRAC_DIFFERENCES: Final = MappingProxyType(
    {(S.DELETED.value, target.value): _DELETED_IS_FINAL
     for target in JobStatus if target is not S.DELETED}
)


def parse_status(value: str) -> JobStatus:
    """The :class:`JobStatus` spelled ``value``; unknown names raise InvalidTransitionError."""
    return _status(value)


def _status(value: str) -> JobStatus:
    try:
        return JobStatus(value)
    except ValueError:
        raise InvalidTransitionError(f"Unknown job status {value!r}") from None


def allowed(current: str, new: str) -> bool:
    """Whether a job in ``current`` may be set to ``new`` (the same status is always allowed).

    Unknown status names give False.
    """
    try:
        old, target = JobStatus(current), JobStatus(new)
    except ValueError:
        return False
    return old is target or target in TRANSITIONS[old]


def check_transition(current: str, new: str) -> None:
    """Raise :class:`~core.exceptions.InvalidTransitionError` unless ``current -> new`` is allowed.

    The message is ``"Job status change <current> -> <new> not allowed"``; an unknown status
    gives ``"Unknown job status '<name>'"``.
    """
    old, target = _status(current), _status(new)
    if old is not target and target not in TRANSITIONS[old]:
        raise InvalidTransitionError(f"Job status change {old} -> {target} not allowed")


def is_final(status: str) -> bool:
    """Whether ``status`` is final or really final (Done, Completed, Failed, Killed, Deleted)."""
    return status in FINAL or status in REALLY_FINAL


class MinorStatus:
    """DIRAC's minor status texts, word for word (users see them and tools match on them).

    Names follow DIRAC's ``JobMinorStatus`` module where it has one.
    """

    # Submission, checking, scheduling
    BULK_TRANSACTION_CONFIRMATION: Final[str] = "Bulk transaction confirmation"
    JOB_ACCEPTED: Final[str] = "Job accepted"
    ILLEGAL_JOB_JDL: Final[str] = "Illegal Job JDL"
    INPUT_NOT_AVAILABLE: Final[str] = "Input Data Not Available"
    NO_CANDIDATE_SITE_FOUND: Final[str] = "No candidate sites available"
    PILOT_AGENT_SUBMISSION: Final[str] = "Pilot Agent Submission"
    # Matching, rescheduling, killing, deleting
    ASSIGNED: Final[str] = "Assigned"
    GOING_RESCHEDULE: Final[str] = "Going to reschedule job"
    RESCHEDULED: Final[str] = "Job Rescheduled"
    MAX_RESCHEDULING: Final[str] = "Maximum of reschedulings reached"
    MARKED_FOR_TERMINATION: Final[str] = "Marked for termination"
    CHECKING_ACCOUNTING: Final[str] = "Checking accounting"
    # Running (job wrapper)
    JOB_WRAPPER_INITIALIZATION: Final[str] = "Job Wrapper Initialization"
    JOB_INITIALIZATION: Final[str] = "Job Initialization"
    INPUT_DATA_RESOLUTION: Final[str] = "Input Data Resolution"
    DOWNLOADING_INPUT_SANDBOX: Final[str] = "Downloading InputSandbox"
    FAILED_DOWNLOADING_INPUT_SANDBOX: Final[str] = "Failed Downloading InputSandbox"
    APPLICATION: Final[str] = "Application"
    APP_NOT_FOUND: Final[str] = "Application not found"
    APP_SUCCESS: Final[str] = "Application Finished Successfully"
    APP_ERRORS: Final[str] = "Application Finished With Errors"
    EXEC_COMPLETE: Final[str] = "Execution Complete"
    EXCEPTION_DURING_EXEC: Final[str] = "Exception During Execution"
    UPLOADING_OUTPUT_SANDBOX: Final[str] = "Uploading Output Sandbox"
    OUTPUT_SANDBOX_UPLOADED: Final[str] = "Output Sandbox Uploaded"
    UPLOADING_OUTPUT_DATA: Final[str] = "Uploading Output Data"
    OUTPUT_DATA_UPLOADED: Final[str] = "Output Data Uploaded"
    PENDING_REQUESTS: Final[str] = "Pending Requests"
    REQUESTS_DONE: Final[str] = "Requests done"
    # Stalled, limits and kill
    WATCHDOG_STALLED: Final[str] = "Watchdog identified this job as stalled"
    STALLED_PILOT_NOT_RUNNING: Final[str] = "Job stalled: pilot not running"
    JOB_EXCEEDED_CPU: Final[str] = "Job has reached the CPU limit of the queue"
    JOB_EXCEEDED_WALL_CLOCK: Final[str] = "Job has exceeded maximum wall clock time"
    JOB_INSUFFICIENT_DISK: Final[str] = "Job has insufficient disk space to continue"
    RECEIVED_KILL_SIGNAL: Final[str] = "Received Kill signal"

    #: The ApplicationStatus a job gets when it is matched.
    APPLICATION_STATUS_UNKNOWN: Final[str] = "Unknown"
