"""Bulk INSERTs straight to the driver's ``executemany``, for paths that write thousands of
rows at a time (job submission, transformation files and tasks).

SQLAlchemy processes the parameters of every row of an ``executemany`` (type processors,
parameter dictionaries, tens of microseconds a row): in a bulk submission that costs more
than the database's own work. :func:`insert_rows` compiles the SQLAlchemy statement once for
the connection's dialect, converts the values common to every row (``constants``:
timestamps...) once through their columns' types, and hands the rows to the driver: one
``executemany`` per 1,000 rows, which pymysql and mysqlclient (``MySQLdb``) send as multi-row
INSERTs (MariaDB) and sqlite3 runs in process.

On MariaDB (either driver), from :data:`LITERAL_ROWS` rows on, the statement is written out
here rather than by the driver's executemany: the constants are escaped once and written into
the row template as literals, a column of plain integers is formatted with ``%d`` (digits:
nothing to escape), every other column is escaped once per distinct value (strings all
together: see :func:`_escaped_strings`), and the rows are joined into multi-row INSERTs of at most
:data:`MAX_STATEMENT` bytes, one round trip each. pymysql's own rewrite escaped every value
of every row in Python (9.5 us per ``ts_files`` row of 8 values; the 1.5 million integers of
500,000 ``ts_task_files`` rows took 7.5 s of client time). Both drivers' cursors have the
``mogrify`` this needs (mysqlclient since 2.2).

Rows are mappings, or sequences of values in the order of ``columns=`` (tuples: no
dictionary per row).

Caveat: the rows' own values go to the driver as they are, so they must be plain ``int``,
``str`` (a ``StrEnum`` member is a ``str``), ``float`` or None, for columns whose type needs no
conversion (strings, integers, texts); give datetimes and other typed values as
``constants``. Python-side column defaults are not applied (server defaults are).

Example::

    >>> import sqlalchemy as sa
    >>> from datetime import datetime, timezone
    >>> from core.db import UTCDateTime, make_engine
    >>> md = sa.MetaData()
    >>> t = sa.Table("t", md, sa.Column("id", sa.Integer, primary_key=True),
    ...              sa.Column("name", sa.String(10)), sa.Column("at", UTCDateTime))
    >>> engine = make_engine("sqlite://"); md.create_all(engine)
    >>> at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> with engine.begin() as conn:
    ...     insert_rows(conn, t, [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    ...                 constants={"at": at})
    ...     conn.execute(sa.select(t.c.name, t.c.at).order_by(t.c.id)).all()[-1]
    2
    ('b', datetime.datetime(2026, 1, 1, 0, 0, tzinfo=datetime.timezone.utc))
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = ["CHUNK", "insert_rows"]

#: rows per ``executemany`` (keeps MariaDB's multi-row INSERTs under max_allowed_packet)
CHUNK = 1000
#: from this many rows on, MariaDB's drivers get the constants as literals (the statement is
#: then compiled for each call, ~0.5 ms: worth it only when the rows save more escaping)
LITERAL_ROWS = 100
#: the drivers whose cursors escape like MariaDB's client library (``mogrify``)
LITERAL_DRIVERS = frozenset({"pymysql", "mysqldb"})
#: bytes per written-out multi-row INSERT: pymysql's own ``max_stmt_length`` (mysqlclient's
#: is 64 KB, 16 round trips where one does), far below MariaDB's max_allowed_packet (16 MB)
MAX_STATEMENT = 1024000


def insert_rows(conn: Connection, table: sa.Table, rows: Sequence[Any], *,
                constants: Mapping[str, Any] | None = None, statement: Any = None,
                chunk: int = CHUNK, columns: Sequence[str] | None = None) -> int:
    """Insert ``rows`` (all with the same keys) plus ``constants`` into ``table``; returns
    the driver's count of inserted rows.

    ``statement``: the INSERT to run instead of ``table.insert()`` (e.g. an insert-ignore
    variant for the dialect); its values come from the rows as for a plain INSERT.
    ``columns``: the rows are sequences of values in this column order (tuples: fewer objects
    than a dictionary per row) instead of mappings.
    """
    if not rows:
        return 0
    dialect = conn.dialect
    fixed: dict[str, Any] = {}
    for key, value in (constants or {}).items():
        processor = table.c[key].type.dialect_impl(dialect).bind_processor(dialect)
        fixed[key] = processor(value) if processor is not None else value
    names = list(columns) if columns is not None else list(rows[0])
    keys = (*names, *fixed)
    if len(rows) >= LITERAL_ROWS and dialect.driver in LITERAL_DRIVERS:
        stmt = statement if statement is not None else table.insert()
        written = _literal_rows(conn, stmt, rows, names, columns is not None, fixed, chunk)
        if written is not None:
            return written
    if statement is None:  # compiled once per engine, table and keys: single jobs are hot too
        compiled = _compiled_insert(dialect, table, keys)
    else:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    if columns is not None:  # sequences: by position, or as mappings for pyformat
        if not compiled.positional:
            rows = [dict(zip(names, row, strict=True)) for row in rows]
        else:
            places = list(compiled.positiontup or ())
            tail = tuple(fixed[n] for n in places[len(names):] if n in fixed)
            if places[:len(names)] == names and len(places) == len(names) + len(tail):
                shaped: Any = [(*row, *tail) for row in rows] if tail else rows
            else:
                at = {n: i for i, n in enumerate(names)}
                shaped = [tuple(row[at[n]] if n in at else fixed[n] for n in places)
                          for row in rows]
            return _executemany(conn, compiled.string, shaped, chunk)
    positions = compiled.positiontup if compiled.positional else None
    if positions is not None:
        if fixed:
            params: Any = [tuple(row[n] if n in row else fixed[n] for n in positions)
                           for row in rows]
        else:
            params = [tuple(row[n] for n in positions) for row in rows]
    else:
        params = [{**row, **fixed} for row in rows] if fixed else rows
    return _executemany(conn, compiled.string, params, chunk)


def _executemany(conn: Connection, sql: str, params: Sequence[Any], chunk: int) -> int:
    total = 0
    for start in range(0, len(params), chunk):
        total += conn.exec_driver_sql(sql, list(params[start:start + chunk])).rowcount or 0
    return total


#: a ``%`` of a compiled template: a doubled one, a named or a positional parameter
_MARK = re.compile(r"%%|%\((\w+)\)s|%s")
#: the types written with ``%d`` (exactly as the drivers escape them: digits, True as 1)
_INT_TYPES = frozenset({int, bool})


def _literal_rows(conn: Connection, stmt: Any, rows: Sequence[Any], names: list[str],
                  as_sequences: bool, fixed: Mapping[str, Any], chunk: int) -> int | None:
    """Multi-row INSERTs written out here, with the constants written once as literals; None
    when the statement's shape is not a plain ``INSERT ... VALUES (...)`` or a value cannot
    be written (the caller then uses the driver's executemany).

    The values are converted column by column: a column of plain integers is formatted with
    ``%d`` (no escaping needed: digits only), any other column is escaped as the driver
    escapes it (``mogrify``), each distinct value once (a column of strings all together,
    :func:`_escaped_strings`). The row texts are then made by one ``%`` per row, in C."""
    if getattr(stmt, "_post_values_clause", None) is not None:
        return None  # e.g. ON DUPLICATE KEY UPDATE after the values
    raw = conn.connection.dbapi_connection
    assert raw is not None  # noqa: S101 - an open connection
    mogrify = raw.cursor().mogrify  # the text the driver would send for (template, values)
    # the constants as the driver escapes them (literal_column keeps a '%' doubled for the
    # format paramstyle, which the row formatting undoes)
    values: dict[str, Any] = {k: sa.literal_column(str(mogrify("%s", (v,))))
                              for k, v in fixed.items()}
    compiled = stmt.values(values).compile(dialect=conn.dialect, column_keys=names)
    head, sep, template = compiled.string.partition(" VALUES ")
    if not sep or not template.startswith("(") or not template.endswith(")"):
        return None
    positional = iter(compiled.positiontup or []) if compiled.positional else None
    order: list[str] = []

    def mark(match: re.Match[str]) -> str:
        if match.group(0) == "%%":
            return "%%"
        name = match.group(1) if positional is None else next(positional, None)
        if name is None:
            raise LookupError(match.group(0))
        order.append(name)
        return "\0"  # the column's format, filled in below

    try:
        shape = _MARK.sub(mark, template)
    except LookupError:
        return None
    if sorted(order) != sorted(names):
        return None
    position = {n: i for i, n in enumerate(names)}
    by_column: list[Sequence[Any]]
    if as_sequences:
        try:
            by_column = list(zip(*rows, strict=True))
        except ValueError:  # rows of different lengths
            return None
        if len(by_column) != len(names):
            return None
    else:
        by_column = [[row[n] for row in rows] for n in names]
    formats: list[str] = []
    args: list[Any] = []
    for name in order:
        column = by_column[position[name]]
        written = _column(column, mogrify)
        if written is None:
            formats.append("%d")
            args.append(column)
        else:
            formats.append("%s")
            args.append(written)
    parts = shape.split("\0")
    fmt = parts[0] + "".join(f + p for f, p in zip(formats, parts[1:], strict=True))
    texts = list(map(fmt.__mod__, zip(*args, strict=True)))
    return _send_all(conn, head, texts, chunk)


def _column(column: Sequence[Any], mogrify: Any) -> list[str] | None:
    """The literals of one column's values; None for a column of plain integers (written
    with ``%d``)."""
    types = set(map(type, column))
    if types <= _INT_TYPES:
        return None
    numeric = [t for t in types if not issubclass(t, str) and t is not type(None)]
    if len(numeric) > 1:  # 1 == 1.0 == True: the literals are made value by value
        return [str(mogrify("%s", (v,))) for v in column]
    try:
        distinct = list(set(column))
    except TypeError:  # an unhashable value
        return [str(mogrify("%s", (v,))) for v in column]
    texts = _escaped_strings(distinct, mogrify) if types == {str} else None
    if texts is None:
        texts = [str(mogrify("%s", (v,))) for v in distinct]
    literal = dict(zip(distinct, texts, strict=True))
    return list(map(literal.__getitem__, column))


#: joins the strings escaped together: a control character that neither driver escapes and
#: that no multi-byte character of MariaDB's charsets contains
_JOIN = "\x01"


#: what both drivers escape in a string, and how (MariaDB's client library, pymysql's
#: ``escape_string``): the backslash first, so that the others' backslashes stay single
_BACKSLASHED = (("\\", "\\\\"), ("\0", "\\0"), ("\n", "\\n"), ("\r", "\\r"),
                ("\x1a", "\\Z"), ('"', '\\"'), ("'", "\\'"))
#: every character of :data:`_BACKSLASHED`, plain and non-ASCII ones: when the driver
#: escapes this as :func:`_backslashed` does, it escapes any string so
_PROBE = "a\\b\0c\nd\re\x1af\"g'h%i\u00e9\U0001f600\x01"


def _backslashed(text: str) -> str:
    """``text`` escaped as MariaDB's client escapes a string (without the quotes): a few
    C-level ``replace`` passes, not pymysql's ``translate`` with a per-character table
    (0.8 s for the 10 MB of JDL texts of 10,000 jobs)."""
    for plain, escaped in _BACKSLASHED:
        if plain in text:
            text = text.replace(plain, escaped)
    return text


def _escaped_strings(values: list[str], mogrify: Any) -> list[str] | None:
    """The driver's literals of ``values`` (plain strs) from one ``mogrify`` of their join:
    the escaping is character by character, so the literal of the joined text is the
    joined escaped texts (one C-level pass instead of a call per value: 130,000 calls for
    a batch of 10,000 jobs). None when a value holds the separator or the literal is not
    one quoted text."""
    joined = _JOIN.join(values)
    if joined.count(_JOIN) != len(values) - 1:
        return None
    if str(mogrify("%s", (_PROBE,))) == f"'{_backslashed(_PROBE)}'":
        inner = _backslashed(joined)  # the driver's escaping, seen on every character it maps
    else:  # e.g. NO_BACKSLASH_ESCAPES: the driver's own escaping of the whole text
        text = str(mogrify("%s", (joined,)))
        if len(text) < 2 or text[0] != "'" or text[-1] != "'":
            return None
        inner = text[1:-1]
    parts = inner.split(_JOIN)
    if len(parts) != len(values):  # pragma: no cover - the escaping added a separator?
        return None
    return [f"'{part}'" for part in parts]


def _send_all(conn: Connection, head: str, texts: list[str], chunk: int) -> int:
    """``texts`` in multi-row INSERTs of at most ``chunk`` rows and :data:`MAX_STATEMENT`
    bytes."""
    total = 0
    for start in range(0, len(texts), chunk):
        part = texts[start:start + chunk]
        if len(head) + sum(map(len, part)) + len(part) + 8 <= MAX_STATEMENT:
            total += _send(conn, head, part)
            continue
        rows: list[str] = []
        size = len(head)
        for text in part:
            if rows and size + len(text) + 8 > MAX_STATEMENT:
                total += _send(conn, head, rows)
                rows, size = [], len(head)
            rows.append(text)
            size += len(text) + 1
        total += _send(conn, head, rows)
    return total


def _send(conn: Connection, head: str, rows: list[str]) -> int:
    """One multi-row INSERT, already written out: ``no_parameters`` makes SQLAlchemy call
    ``cursor.execute(sql)`` without parameters, so the driver does not %-format it again."""
    result = conn.exec_driver_sql(f"{head} VALUES {','.join(rows)}",
                                  execution_options={"no_parameters": True})
    return int(result.rowcount or 0)


@functools.lru_cache(maxsize=512)
def _compiled_insert(dialect: sa.engine.Dialect, table: sa.Table, keys: tuple[str, ...]) -> Any:
    """``table.insert()`` compiled for ``dialect`` (an engine's own: its server version may
    change the SQL) and these column keys; compiling costs ~0.5 ms, more than a row's insert."""
    return table.insert().compile(dialect=dialect, column_keys=list(keys))
