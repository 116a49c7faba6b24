"""Statuses of transformations, of their files and of their tasks, with DIRAC's names.

Transformations move along :data:`TRANSITIONS`; anything else is refused with an error naming
both states. Files follow DIRAC's TransformationClient rules: ``Processed`` stays unless
forced, ``MaxReset`` is not made ``Unused`` again unless forced (``dtrans reset-files``).

Example::

    >>> check_transition("New", "Active")
    >>> check_transition("Cleaned", "Active")
    Traceback (most recent call last):
    ...
    core.exceptions.InvalidTransitionError: transformation status cannot go from Cleaned to Active
"""

from __future__ import annotations

from core.exceptions import InvalidTransitionError

# -- transformations ----------------------------------------------------------------------------
NEW, ACTIVE, STOPPED, FLUSH = "New", "Active", "Stopped", "Flush"
COMPLETING, COMPLETED = "Completing", "Completed"
VALIDATING_INPUT, VALIDATING_OUTPUT = "ValidatingInput", "ValidatingOutput"
ARCHIVED, CLEANING, CLEANED = "Archived", "Cleaning", "Cleaned"
TRANSFORMATION_CLEANED = "TransformationCleaned"

TRANSFORMATION_STATUSES = (NEW, ACTIVE, STOPPED, FLUSH, COMPLETING, COMPLETED,
                           VALIDATING_INPUT, VALIDATING_OUTPUT, ARCHIVED, CLEANING, CLEANED,
                           TRANSFORMATION_CLEANED)

TRANSITIONS: dict[str, frozenset[str]] = {
    NEW: frozenset({ACTIVE, STOPPED, VALIDATING_INPUT, CLEANING}),
    VALIDATING_INPUT: frozenset({ACTIVE, STOPPED, CLEANING}),
    ACTIVE: frozenset({STOPPED, FLUSH, COMPLETING, VALIDATING_OUTPUT, COMPLETED, CLEANING}),
    FLUSH: frozenset({ACTIVE, STOPPED, COMPLETING, CLEANING}),
    STOPPED: frozenset({ACTIVE, FLUSH, COMPLETING, COMPLETED, CLEANING}),
    COMPLETING: frozenset({COMPLETED, VALIDATING_OUTPUT, ACTIVE, STOPPED, CLEANING}),
    VALIDATING_OUTPUT: frozenset({COMPLETED, ACTIVE, STOPPED, CLEANING}),
    COMPLETED: frozenset({ARCHIVED, ACTIVE, CLEANING}),
    ARCHIVED: frozenset({CLEANING}),
    CLEANING: frozenset({CLEANED, TRANSFORMATION_CLEANED}),
    CLEANED: frozenset(),
    TRANSFORMATION_CLEANED: frozenset(),
}

#: statuses in which the agents make tasks of new files
PROCESSING = frozenset({ACTIVE, FLUSH, COMPLETING})
#: statuses in which input files are still attached (events, reconciliation)
ATTACHING = frozenset({NEW, ACTIVE, FLUSH, STOPPED, COMPLETING, VALIDATING_INPUT})
#: statuses in which tasks are submitted and followed
SUBMITTING = frozenset({ACTIVE, FLUSH, COMPLETING, STOPPED, VALIDATING_OUTPUT})


def check_transition(current: str, new: str) -> None:
    """Refuse an illegal change (same status: allowed, nothing happens)."""
    if new not in TRANSITIONS:
        raise InvalidTransitionError(
            f"unknown transformation status {new!r} (one of {', '.join(TRANSFORMATION_STATUSES)})")
    if new != current and new not in TRANSITIONS.get(current, frozenset()):
        raise InvalidTransitionError(
            f"transformation status cannot go from {current} to {new}")


# -- files --------------------------------------------------------------------------------------
UNUSED, ASSIGNED, PROCESSED, PROBLEMATIC = "Unused", "Assigned", "Processed", "Problematic"
MAX_RESET, REMOVED, NOT_PROCESSED = "MaxReset", "Removed", "NotProcessed"
FILE_STATUSES = (UNUSED, ASSIGNED, PROCESSED, PROBLEMATIC, MAX_RESET, REMOVED, NOT_PROCESSED)


def file_transition(current: str, new: str, *, force: bool = False) -> str:
    """The status a file really takes when ``new`` is asked (DIRAC's client state machine):
    Processed stays Processed and MaxReset does not become Unused unless ``force``.

    >>> file_transition("Processed", "Unused"), file_transition("MaxReset", "Unused", force=True)
    ('Processed', 'Unused')
    """
    if new not in FILE_STATUSES:
        raise ValueError(f"unknown file status {new!r} (one of {', '.join(FILE_STATUSES)})")
    if force:
        return new
    if current == PROCESSED:
        return PROCESSED
    if current == MAX_RESET and new == UNUSED:
        return MAX_RESET
    return new


# -- tasks --------------------------------------------------------------------------------------
CREATED, RESERVED, SUBMITTED = "Created", "Reserved", "Submitted"
TASK_DONE, TASK_FAILED = "Done", "Failed"
#: external statuses that end a task well / badly (jobs and requests alike)
SUCCESS = frozenset({"Done"})
FAILURE = frozenset({"Failed", "Killed", "Deleted", "Canceled", "Lost"})
TASK_FINAL = SUCCESS | FAILURE
TASK_STATUSES = (CREATED, RESERVED, SUBMITTED, "Received", "Checking", "Waiting", "Matched",
                 "Running", "Rescheduled", "Stalled", "Completing", "Completed", "Assigned",
                 TASK_DONE, TASK_FAILED, "Killed", "Deleted", "Canceled", "Lost")
