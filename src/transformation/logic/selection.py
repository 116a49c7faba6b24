"""What the transformation system's listings are asked for, checked: DIRAC's ``condDict``
selections, the ``older``/``newer`` time window, pages and the web table's sort order.

Every bad value raises :class:`~core.exceptions.InvalidArgumentError` naming the argument, so
that a caller gets a clear error, never a database error.

Example::

    >>> from transformation.db.tables import tasks
    >>> columns = {"TaskID": tasks.c.task_id, "CreationTime": tasks.c.created}
    >>> [str(c) for c in conditions({"TaskID": [1, 2]}, columns)]
    ['ts_tasks.task_id IN (__[POSTCOMPILE_task_id_1])']
    >>> [str(c) for c in time_window(columns, "CreationTime", None, "2026-01-02")]
    ['ts_tasks.created > :created_1']
    >>> time_window(columns, "TaskID", "2026-01-02", None)
    Traceback (most recent call last):
    ...
    core.exceptions.InvalidArgumentError: bad timeStamp 'TaskID' (one of CreationTime)
    >>> sort_order([["Status", "DESC"]])
    ('Status', True)
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timezone
from typing import Any

import sqlalchemy as sa

from core.db import UTCDateTime
from core.exceptions import InvalidArgumentError
from core.ids import as_id
from core.in_values import in_values


def _is_date(column: Any) -> bool:
    return isinstance(column.type, UTCDateTime)


def conditions(cond: Mapping[str, Any], columns: Mapping[str, Any]) -> list[Any]:
    """DIRAC condDict -> SQL conditions (value or list of values), unknown keys refused;
    the values of date columns are dates (see :func:`as_moment`)."""
    out = []
    for key, value in (cond or {}).items():
        if key not in columns:
            raise InvalidArgumentError(f"unknown selection key {key!r} "
                                       f"(one of {', '.join(sorted(columns))})")
        column = columns[key]
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if _is_date(column):
            values = [None if v is None else as_moment(f"selection {key!r}", v)
                      for v in values]
        for item in values:
            if item is not None and (not isinstance(item, (str, int, float))
                                     or isinstance(item, bool)) and not _is_date(column):
                raise InvalidArgumentError(
                    f"selection {key!r}: a value or a list of values (str or number) is "
                    f"expected, not {type(item).__name__}")
        if isinstance(column.type, sa.String):  # one type in an IN list, as DIRAC's SQL text
            values = [v if v is None or isinstance(v, str) else str(v) for v in values]
        elif isinstance(column.type, sa.Integer):
            values = [_whole(key, v) for v in values]
        if isinstance(value, (list, tuple)):
            out.append(in_values(column, values))
        else:
            out.append(column == values[0])
    return out


def _whole(key: str, value: Any) -> int | None:
    """A value for an integer column: a whole number, or its decimal text."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    number = as_id(value.strip()) if isinstance(value, str) else None
    if number is None:
        raise InvalidArgumentError(f"selection {key!r}: {value!r:.40} is not a whole number")
    return number


def as_moment(name: str, value: Any) -> datetime:
    """A wire date (``datetime``, ``date``, or ISO text such as ``"2026-01-02 03:04:05"``)
    as an aware UTC datetime; naive values are UTC. Anything else is refused.

    >>> as_moment("older", "2026-01-02 03:04:05+01:00").isoformat()
    '2026-01-02T02:04:05+00:00'
    >>> as_moment("older", [])
    Traceback (most recent call last):
    ...
    core.exceptions.InvalidArgumentError: older must be a date (datetime or ISO text), not list
    """
    moment: Any = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
        except ValueError:
            raise InvalidArgumentError(f"{name}: bad date {value[:60]!r}") from None
    elif isinstance(value, date) and not isinstance(value, datetime):
        moment = datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if not isinstance(moment, datetime):
        raise InvalidArgumentError(f"{name} must be a date (datetime or ISO text), "
                                   f"not {type(value).__name__}")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:
        raise InvalidArgumentError(f"{name}: date {value!s:.60} is out of range") from None


def time_window(columns: Mapping[str, Any], time_stamp: str, older: Any, newer: Any
                ) -> list[Any]:
    """``columns[time_stamp] < older`` and ``> newer``; a missing bound (None, "" or blanks)
    is no bound. ``time_stamp`` must name a date column."""
    dates = sorted(k for k, c in columns.items() if _is_date(c))
    if time_stamp not in dates:
        raise InvalidArgumentError(f"bad timeStamp {time_stamp!r:.60} "
                                   f"(one of {', '.join(dates)})")
    column = columns[time_stamp]
    out = []
    for name, value in (("older", older), ("newer", newer)):
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        moment = as_moment(name, value)
        out.append(column < moment if name == "older" else column > moment)
    return out


def check_page(limit: Any, offset: Any, names: tuple[str, str] = ("limit", "offset")
               ) -> None:
    """``limit`` and ``offset`` of a listing: None or whole numbers >= 0 (0: no limit)."""
    for name, value in zip(names, (limit, offset), strict=True):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 0):
            raise InvalidArgumentError(f"{name} must be a whole number >= 0, not {value!r:.40}")


def sort_order(sort: Any) -> tuple[str, bool] | None:
    """DIRAC's web ``sortList`` (``[[key, "ASC"|"DESC"]]``, or ``[key]``): (key, descending),
    or None when empty. Only the first entry counts."""
    if not sort:
        return None
    if not isinstance(sort, (list, tuple)):
        raise InvalidArgumentError(f"sort must be a list, not {type(sort).__name__}")
    first = sort[0] if isinstance(sort[0], (list, tuple)) else [sort[0]]
    if not 1 <= len(first) <= 2 or not isinstance(first[0], str):
        raise InvalidArgumentError("sort must be [[key, 'ASC' or 'DESC']]")
    direction = first[1] if len(first) == 2 else "ASC"
    if not isinstance(direction, str) or direction.upper() not in ("ASC", "DESC"):
        raise InvalidArgumentError(f"sort direction must be ASC or DESC, not {direction!r:.40}")
    return first[0], direction.upper() == "DESC"


def order_by(order: Any, columns: Mapping[str, Any], tiebreak: Any = ()) -> list[Any] | None:
    """DIRAC's ``orderAttribute``: a column name, ``"Name:ASC"``/``"Name:DESC"``, or a list
    of them, as ORDER BY terms over ``columns`` followed by ``tiebreak`` (a stable order
    for paging); None when no order is asked. Unknown names and directions are refused.

    >>> from transformation.db.tables import tasks
    >>> columns = {"TaskID": tasks.c.task_id, "CreationTime": tasks.c.created}
    >>> [str(t) for t in order_by(["CreationTime:DESC", "TaskID"], columns)]
    ['ts_tasks.created DESC', 'ts_tasks.task_id']
    >>> order_by("Nope", columns)
    Traceback (most recent call last):
    ...
    core.exceptions.InvalidArgumentError: bad orderAttribute 'Nope' (one of CreationTime, TaskID)
    """
    if order is None or order == [] or order == "":
        return None
    terms = []
    for item in order if isinstance(order, list | tuple) else [order]:
        name, _, direction = item.partition(":") if isinstance(item, str) else ("", "", "")
        column = columns.get(name)
        if column is None or direction.upper() not in ("", "ASC", "DESC"):
            raise InvalidArgumentError(f"bad orderAttribute {item!r} "
                                       f"(one of {', '.join(sorted(columns))})")
        terms.append(column.desc() if direction.upper() == "DESC" else column)
    return terms + list(tiebreak)
