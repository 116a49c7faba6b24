"""Job filters and visibility scopes, as SQL conditions on ``jobs`` or on the job counters.

Filters are ``(attribute, operator, value)`` triples with DIRAC attribute names and operators
``eq``, ``neq``, ``in``, ``not in``, ``like``, ``gt``, ``lt``, ``ge``, ``le``. A :class:`Scope`
says whose jobs a caller may see (an owner, a group, or a list of job IDs for a job token).
Both become conditions on whichever table carries the columns (``columns`` maps attribute
names to that table's columns).

Example::

    >>> shape_of([("Status", "in", ("Done", "Failed")), ("Site", "eq", "LCG.CERN.cern")])
    ((('Status', 'in'), ('Site', 'eq')), {'f0': ['Done', 'Failed'], 'f1': 'LCG.CERN.cern'})
    >>> str(shaped_condition((('Site', 'eq'),)))
    'jobs.site = :f0'
    >>> Scope(owner="al").job_ids is None
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from core.exceptions import InvalidArgumentError
from core.in_values import in_param, in_values, is_long
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


#: a condition's shape: the (attribute, operator) pairs, values left out (an ``in``/``not in``
#: whose list is long, :func:`core.in_values.is_long`, has the operator + :data:`LONG`)
Shape = tuple[tuple[str, str], ...]
LONG = " (long)"


def shape_of(filters: Iterable[Filter], prefix: str = "f") -> tuple[Shape, dict[str, Any]]:
    """Split ``filters`` into their shape and the values of its bound parameters
    (``<prefix><i>``), checking attribute names and operators."""
    shape, params = [], {}
    for i, (name, op, value) in enumerate(filters):
        column(name)
        if op not in OPERATORS:
            raise InvalidArgumentError(f"unknown operator {op!r}; use one of {OPERATORS}")
        shaped = op
        if op in ("in", "not in"):
            value = list(value) if isinstance(value, list | tuple | set) else [value]
            shaped = op + LONG if is_long(value) else op
        elif op == "like":
            value = str(value)
        shape.append((name, shaped))
        params[f"{prefix}{i}"] = value
    return tuple(shape), params


def _clause(col: sa.ColumnElement[Any], op: str, value: Any) -> sa.ColumnElement[bool]:
    if op == "eq":
        return col == value
    if op == "neq":
        return col != value
    if op in ("in", "not in"):
        return in_values(col, value, negate=op == "not in")
    if op == "like":  # a pattern is text whatever the column (JobID like '12%')
        text = col if isinstance(col.type, sa.String) else sa.cast(col, sa.String)
        return text.like(value)
    return {"gt": col.__gt__, "lt": col.__lt__, "ge": col.__ge__, "le": col.__le__}[op](value)


def shaped_condition(shape: Shape, columns: Columns | None = None, prefix: str = "f",
                     skip: int | None = None) -> sa.ColumnElement[bool]:
    """The condition of ``shape`` with bound parameters named as :func:`shape_of` names them:
    built once per shape by callers that cache statements (the filter at position ``skip``
    left out)."""
    return sa.and_(sa.true(), *[_shaped_clause(column(name, columns), op, f"{prefix}{i}")
                                for i, (name, op) in enumerate(shape) if i != skip])


def _shaped_clause(col: sa.ColumnElement[Any], op: str, name: str) -> sa.ColumnElement[bool]:
    listed = op.removesuffix(LONG)
    if listed in ("in", "not in"):
        return in_param(col, name, op.endswith(LONG), negate=listed == "not in")
    return _clause(col, op, sa.bindparam(name))


def condition(filters: Iterable[Filter], columns: Columns | None = None
              ) -> sa.ColumnElement[bool]:
    """All ``filters`` as one condition with their values (``true`` when there are none)."""
    shape, params = shape_of(filters)
    return sa.and_(sa.true(), *[_clause(column(name, columns), op.removesuffix(LONG),
                                        params[f"f{i}"])
                                for i, (name, op) in enumerate(shape)])


@dataclass(frozen=True)
class Scope:
    """The jobs a caller may see: of ``owner``, or of ``group`` too (either may be None, not
    both), or only ``job_ids``."""

    owner: str | None = None
    group: str | None = None
    job_ids: tuple[int, ...] | None = None

    @property
    def shape(self) -> tuple[bool, bool, bool]:
        return self.owner is not None, self.group is not None, self.job_ids is not None

    @property
    def params(self) -> dict[str, Any]:
        return {"s_owner": self.owner, "s_group": self.group,
                "s_ids": list(self.job_ids or ())}

    def condition(self, columns: Columns | None = None) -> sa.ColumnElement[bool]:
        if self.job_ids is not None:
            return jobs.c.job_id.in_(list(self.job_ids))
        clauses = []
        if self.owner is not None:
            clauses.append(column("Owner", columns) == self.owner)
        if self.group is not None:
            clauses.append(column("OwnerGroup", columns) == self.group)
        return sa.or_(*clauses)


def scope_condition(shape: tuple[bool, bool, bool], columns: Columns | None = None
                    ) -> sa.ColumnElement[bool]:
    """A :class:`Scope`'s condition by its shape, with bound parameters ``s_owner``,
    ``s_group`` and ``s_ids``."""
    by_owner, by_group, by_ids = shape
    if by_ids:
        return jobs.c.job_id.in_(sa.bindparam("s_ids", expanding=True))
    clauses = []
    if by_owner:
        clauses.append(column("Owner", columns) == sa.bindparam("s_owner"))
    if by_group:
        clauses.append(column("OwnerGroup", columns) == sa.bindparam("s_group"))
    return sa.or_(*clauses)
