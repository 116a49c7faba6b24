"""``column IN (values)`` for any number of client-supplied values, on both backends.

SQLite refuses a statement with more than 32,766 bound parameters (``core.db`` sets that limit
on every connection, whatever the build allows), so ``column.in_(values)`` with a longer list
fails. :func:`in_values` keeps the plain ``IN (?, ?, ...)`` up to :data:`PLAIN_MAX` values;
beyond, SQLite gets the whole list as ONE JSON text parameter read by ``json_each``
(``column IN (SELECT value FROM json_each(?))``), which its planner runs like the literal list.
MariaDB's drivers (pymysql, mysqlclient) interpolate parameters on the client: it keeps the
plain list (the statement must fit the server's ``max_allowed_packet``, 16 MB by default).

A list longer than :data:`MAX_VALUES`, or whose values make more than :data:`MAX_TEXT` of
text (so that the statement fits MariaDB's default 16 MB ``max_allowed_packet``), is refused
on both backends with an :class:`~core.exceptions.InvalidArgumentError` naming the limit.

Statements built once and executed with new values (expanding ``bindparam`` s) use
:func:`in_param`: the caller says at build time whether the list it will bind is long
(:func:`is_long`), so each variant is its own cached statement.

Example::

    >>> import sqlalchemy as sa
    >>> from core.db import make_engine
    >>> engine = make_engine("sqlite://")
    >>> t = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
    >>> t.create(engine)
    >>> with engine.begin() as conn:
    ...     _ = conn.execute(t.insert(), [{"id": i} for i in range(1, 50_001)])
    ...     conn.execute(sa.select(sa.func.count()).where(
    ...         in_values(t.c.id, range(2, 100_000, 2)))).scalar_one()
    25000
    >>> print(in_values(t.c.id, [1, 2]))
    t.id IN (__[POSTCOMPILE_id_1])
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement

from core.exceptions import InvalidArgumentError

__all__ = ["MAX_TEXT", "MAX_VALUES", "PLAIN_MAX", "check_size", "in_param", "in_values",
           "is_long"]

#: lists up to this many values stay a plain ``IN (?, ?, ...)`` on every backend
PLAIN_MAX = 1000
#: the most values one IN list may hold (the RPC decoder allows 2,000,000 values per request)
MAX_VALUES = 1_000_000
#: the most text (characters of the values, written out) one IN list may carry
MAX_TEXT = 12 * 1024 * 1024


def check_size(values: Sequence[Any]) -> None:
    """Refuse more than :data:`MAX_VALUES` values, or :data:`MAX_TEXT` of text, in one list."""
    if len(values) > MAX_VALUES:
        raise InvalidArgumentError(
            f"too many values in one selection: {len(values):,} (at most {MAX_VALUES:,})")
    if len(values) > PLAIN_MAX:
        # as the SQL text carries them: quoted and separated ('a', 'b') or bare numbers
        text = sum(len(v) + 4 if isinstance(v, str) else len(str(v)) + 2 for v in values)
        if text > MAX_TEXT:
            raise InvalidArgumentError(
                f"the values of one selection make {text:,} characters "
                f"(at most {MAX_TEXT:,}): select in several calls")


def is_long(values: Sequence[Any]) -> bool:
    """True when ``values`` needs the long form of :func:`in_param` (checks the limits)."""
    check_size(values)
    return len(values) > PLAIN_MAX


def in_values(column: ColumnElement[Any], values: Iterable[Any], *, negate: bool = False
              ) -> ColumnElement[bool]:
    """``column [NOT] IN (values)`` with the values bound, any number of them."""
    listed = list(values)
    if not is_long(listed):
        return column.not_in(listed) if negate else column.in_(listed)
    return _LongIn(column, None, listed, negate)


def in_param(column: ColumnElement[Any], name: str, long: bool, *, negate: bool = False
             ) -> ColumnElement[bool]:
    """``column [NOT] IN`` the list bound at execution as parameter ``name``: a plain
    expanding parameter, or (``long``) the form that takes any number of values."""
    if not long:
        bind: sa.BindParameter[Any] = sa.bindparam(name, expanding=True)
        return column.not_in(bind) if negate else column.in_(bind)
    return _LongIn(column, name, None, negate)


class _JSONList(sa.types.TypeDecorator[list[Any]]):
    """A list bound as one JSON array text, each item first processed as ``item_type``
    binds it (a datetime becomes SQLite's text form)."""

    impl = sa.Text
    cache_ok = True

    def __init__(self, item_type: sa.types.TypeEngine[Any]) -> None:
        super().__init__()
        self.item_type = item_type

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str:
        process = self.item_type._cached_bind_processor(dialect)  # noqa: SLF001
        items = list(value) if process is None else [process(v) for v in value]
        return json.dumps(items, default=str)


class _LongIn(ColumnElement[bool]):
    """``column [NOT] IN`` a long list (bound now as ``values``, or later by ``name``)."""

    type = sa.Boolean()
    inherit_cache = False  # compiled at each execution: the rare long lists only
    _is_implicitly_boolean = True  # a condition: no "= 1" where booleans are integers

    def __init__(self, column: ColumnElement[Any], name: str | None,
                 values: list[Any] | None, negate: bool) -> None:
        self.column = column
        self.name = name
        self.values = values
        self.negate = negate

    @property
    def _from_objects(self) -> list[Any]:
        return self.column._from_objects  # noqa: SLF001 - the column's table is our FROM

    def bind(self, **options: Any) -> sa.BindParameter[Any]:
        if self.name is None:
            return sa.bindparam(None, self.values, unique=True, **options)
        return sa.bindparam(self.name, **options)


@compiles(_LongIn)
def _long_in_default(element: _LongIn, compiler: Any, **kw: Any) -> str:
    bind = element.bind(expanding=True, type_=element.column.type)
    clause = element.column.not_in(bind) if element.negate else element.column.in_(bind)
    return str(compiler.process(clause, **kw))


@compiles(_LongIn, "sqlite")
def _long_in_sqlite(element: _LongIn, compiler: Any, **kw: Any) -> str:
    bind = element.bind(type_=_JSONList(element.column.type))
    column, placeholder = compiler.process(element.column, **kw), compiler.process(bind, **kw)
    # SQLite would walk an index over every combination of two long lists on its columns
    # (40,000 x 40,000 probes: minutes); only the statement's first long list may use an
    # index, the others are tests on the rows found (unary + hides a column from the planner)
    seen = getattr(compiler, "_pilotwms_long_lists", 0)
    compiler._pilotwms_long_lists = seen + 1  # noqa: SLF001 - our own mark, per statement
    if seen:
        column = f"+{column}"
    # compiled SQL fragments only: the values travel in the one bound parameter
    return (f"{column} {'NOT IN' if element.negate else 'IN'}"  # noqa: S608
            f" (SELECT value FROM json_each({placeholder}))")
