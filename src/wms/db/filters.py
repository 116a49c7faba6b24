"""Job filters and visibility scopes, as SQL conditions on ``jobs`` or on the job counters.

Filters are ``(attribute, operator, value)`` triples with DIRAC attribute names and operators
``eq``, ``neq``, ``in``, ``not in``, ``like``, ``gt``, ``lt``, ``ge``, ``le``. A :class:`Scope`
says whose jobs a caller may see (an owner, a group, or a list of job IDs for a job token).
Both become conditions on whichever table carries the columns (``columns`` maps attribute
names to that table's columns).

Example::

    >>> str(condition([("Status", "eq", "Done")]))
    'jobs.status = :status_1'
    >>> Scope(owner="al").job_ids is None
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from core.exceptions import InvalidArgumentError
from wms.db.tables import JOB_ATTRIBUTES, jobs

OPERATORS = ("eq", "neq", "in", "not in", "like", "gt", "lt", "ge", "le")
Filter = tuple[str, str, Any]
Columns = Mapping[str, sa.ColumnElement[Any]]


def column(name: str, columns: Columns | None = None) -> sa.ColumnElement[Any]:
    """The column of attribute ``name`` (in ``columns``, by default the ``jobs`` table)."""
    try:
        return (JOB_ATTRIBUTES if columns is None else columns)[name]
    except KeyError:
        raise InvalidArgumentError(
            f"unknown job attribute {name!r}; known: {', '.join(sorted(JOB_ATTRIBUTES))}"
        ) from None


def condition(filters: Iterable[Filter], columns: Columns | None = None
              ) -> sa.ColumnElement[bool]:
    """All ``filters`` as one condition (``true`` when there are none)."""
    clauses: list[sa.ColumnElement[bool]] = []
    for name, op, value in filters:
        col = column(name, columns)
        if op == "eq":
            clauses.append(col == value)
        elif op == "neq":
            clauses.append(col != value)
        elif op in ("in", "not in"):
            values = list(value) if isinstance(value, list | tuple | set) else [value]
            clauses.append(col.in_(values) if op == "in" else col.not_in(values))
        elif op == "like":
            clauses.append(col.like(str(value)))
        elif op == "gt":
            clauses.append(col > value)
        elif op == "lt":
            clauses.append(col < value)
        elif op == "ge":
            clauses.append(col >= value)
        elif op == "le":
            clauses.append(col <= value)
        else:
            raise InvalidArgumentError(f"unknown operator {op!r}; use one of {OPERATORS}")
    return sa.and_(sa.true(), *clauses)


@dataclass(frozen=True)
class Scope:
    """The jobs a caller may see: of ``owner``, or of ``group`` too (either may be None, not
    both), or only ``job_ids``."""

    owner: str | None = None
    group: str | None = None
    job_ids: tuple[int, ...] | None = None

    def condition(self, columns: Columns | None = None) -> sa.ColumnElement[bool]:
        if self.job_ids is not None:
            return jobs.c.job_id.in_(list(self.job_ids))
        clauses = []
        if self.owner is not None:
            clauses.append(column("Owner", columns) == self.owner)
        if self.group is not None:
            clauses.append(column("OwnerGroup", columns) == self.group)
        return sa.or_(*clauses)
