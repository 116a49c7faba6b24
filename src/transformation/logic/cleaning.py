"""Cleaning a transformation: its jobs killed and deleted, its requests cancelled, its
outputs removed when asked (additional parameter ``RemoveOutputs``: a ``RemoveFile``
request removes the files under the output directory, replicas included), its files and
tasks forgotten, then ``Cleaned``.

Example::

    >>> sorted(CLEANABLE)
    ['Cleaning', 'TransformationCleaned']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.db import utcnow, write_transaction
from transformation.db import queries as db
from transformation.db.tables import files as files_t
from transformation.db.tables import task_files
from transformation.db.tables import tasks as tasks_t
from transformation.logic import states

#: DIRAC's client sets TransformationCleaned itself right after cleanTransformation
CLEANABLE = frozenset({states.CLEANING, states.TRANSFORMATION_CLEANED})


def external_ids(engine: Engine, tid: int) -> list[str]:
    with engine.connect() as conn:
        return [x for x in conn.execute(sa.select(tasks_t.c.external_id).where(
            tasks_t.c.transformation_id == tid, tasks_t.c.external_id != "")).scalars()]


def clean(engine: Engine, tid: int, *, stop: Callable[[Sequence[str]], None],
          remove_outputs: Callable[[], int] | None = None) -> dict[str, Any]:
    """Stop the tasks' jobs/requests (``stop(external IDs)``), remove outputs when given,
    forget files and tasks, set Cleaned (from Cleaning). Safe to run again after a crash."""
    ids = external_ids(engine, tid)
    if ids:
        stop(ids)
    removed = remove_outputs() if remove_outputs is not None else 0
    now = utcnow()
    with write_transaction(engine) as conn:
        row = db.get_transformation(conn, tid, lock=True)
        if row is None or row.status not in CLEANABLE:
            return {}
        for table in (task_files, tasks_t, files_t):
            conn.execute(table.delete().where(table.c.transformation_id == tid))
        messages = [f"Cleaned: {len(ids)} jobs/requests stopped"]
        if removed:
            messages.append(f"Removal of {removed} output files requested")
        if row.status == states.CLEANING:
            db.update_transformation(conn, tid, {"status": states.CLEANED}, now)
            messages.append("Status changed from Cleaning to Cleaned")
        db.add_log(conn, tid, messages, "TransformationCleaning", now)
    return {"stopped": len(ids), "outputs": removed}
