"""``core.bulk.insert_rows`` with rows given as tuples (``columns=``) and the written-out path
on MariaDB: integer columns formatted without the driver's per-value escaping, other columns
escaped by the driver once per distinct value, the same rows stored on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Engine

from core import bulk
from core.bulk import insert_rows
from core.db import UTCDateTime, make_engine

MD = sa.MetaData()
T = sa.Table(
    "bulk_rows", MD,
    sa.Column("a", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("b", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(64), nullable=True),
    sa.Column("num", sa.Float, nullable=True),
    sa.Column("flag", sa.Integer, nullable=True),
    sa.Column("at", UTCDateTime, nullable=True),
)
AT = datetime(2026, 12, 5, 0, 1, 2, tzinfo=timezone.utc)
BIG = 2 ** 62 + 7


class Colour(StrEnum):
    RED = "Red"


@pytest.fixture
def db_url(db_url_all_drivers: str) -> str:
    """SQLite, and MariaDB with both drivers (pymysql, mysqlclient)."""
    return db_url_all_drivers


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    MD.create_all(eng)
    yield eng
    eng.dispose()


def _stored(engine: Engine) -> dict[tuple[int, int], Any]:
    with engine.connect() as conn:
        return {(r.a, r.b): r for r in conn.execute(sa.select(T))}


def _capture(engine: Engine) -> tuple[list[tuple[str, Any]], Any]:
    seen: list[tuple[str, Any]] = []

    def before(conn: object, cursor: object, statement: str, parameters: Any,
               context: object, executemany: bool) -> None:
        if statement.startswith("INSERT"):
            seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", before)
    return seen, before


@pytest.mark.parametrize("order", [("a", "b", "name", "num", "flag"),
                                   ("name", "flag", "b", "num", "a")])
def test_tuple_rows_any_column_order(engine: Engine, order: tuple[str, ...]) -> None:
    names = [Colour.RED, "it's 50% \\ %s %(x)s", None, "", "n"]
    nums = [1.5, None, 2.0, 3, -0.25]  # a float column given ints and floats
    source = [{"a": n % 7, "b": BIG - n, "name": names[n % 5], "num": nums[n % 5],
               "flag": [True, False, None, 7, -3][n % 5]} for n in range(1500)]
    rows = [tuple(r[k] for k in order) for r in source]
    with engine.begin() as conn:
        assert insert_rows(conn, T, rows, columns=order, constants={"at": AT}) == 1500
    got = _stored(engine)
    assert len(got) == 1500
    for r in source:
        stored = got[(r["a"], r["b"])]
        flag = r["flag"] if r["flag"] is None else int(r["flag"])
        name = None if r["name"] is None else str(r["name"])
        assert (stored.name, stored.num, stored.flag, stored.at) == (name, r["num"], flag, AT)


def test_few_tuple_rows_and_mapping_rows_agree(engine: Engine) -> None:
    # under LITERAL_ROWS the rows go to the driver's executemany, as tuples or as mappings
    with engine.begin() as conn:
        assert insert_rows(conn, T, [(1, 2, "x"), (1, 3, None)], columns=("a", "b", "name"),
                           constants={"at": AT, "flag": 5}) == 2
        assert insert_rows(conn, T, [{"a": 2, "b": 2, "name": "y"}],
                           constants={"at": AT, "flag": 5}) == 1
    got = _stored(engine)
    assert [(k, got[k].name, got[k].flag) for k in sorted(got)] == [
        ((1, 2), "x", 5), ((1, 3), None, 5), ((2, 2), "y", 5)]


def test_insert_ignore_with_tuples(engine: Engine) -> None:
    rows = [(1, n) for n in range(300)]
    with engine.begin() as conn:
        stmt = sqlite.insert(T).on_conflict_do_nothing() if conn.dialect.name == "sqlite" \
            else mysql.insert(T).prefix_with("IGNORE")
        assert insert_rows(conn, T, rows[:100], columns=("a", "b"), statement=stmt,
                           constants={"at": AT, "name": "old"}) == 100
        assert insert_rows(conn, T, rows, columns=("a", "b"), statement=stmt,
                           constants={"at": AT, "name": "new"}) == 200
    got = _stored(engine)
    assert sum(r.name == "old" for r in got.values()) == 100
    assert sum(r.name == "new" for r in got.values()) == 200


def test_integer_rows_are_written_out_without_escaping(engine: Engine,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # 3,000 rows of integers and no constant: on MariaDB the statement is written out here
    # (no parameters for the driver), each integer formatted once, never passed through the
    # driver's escaping; the few string values are escaped once each
    escaped: list[Any] = []
    if engine.dialect.driver == "pymysql":
        import pymysql.connections

        real = pymysql.connections.Connection.escape

        def counting(self: Any, obj: Any, mapping: Any = None) -> Any:
            escaped.append(obj)
            return real(self, obj, mapping)

        monkeypatch.setattr(pymysql.connections.Connection, "escape", counting)
    seen, listener = _capture(engine)
    rows = [(n // 1000, n, ("p", "q")[n % 2]) for n in range(3000)]
    try:
        with engine.begin() as conn:
            written = insert_rows(conn, T, rows, columns=("a", "b", "name"))
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)
    assert written == 3000
    got = _stored(engine)
    assert len(got) == 3000 and got[(2, 2999)].name == "q" and got[(0, 0)].name == "p"
    if engine.dialect.name == "sqlite":
        return
    assert 3 <= len(seen) <= 6
    for statement, parameters in seen:
        assert not parameters  # written out: the driver formats nothing
        assert "%s" not in statement
    assert "(1,1000,'p')" in "".join(s for s, _p in seen).replace(" ", "")
    if engine.dialect.driver == "pymysql":  # the driver escapes only the probe
        assert escaped == [bulk._PROBE]


AWKWARD = ["plain", "it's", 'say "hi"', "back\\slash\\", "new\nline\r", "nul\0byte",
           "ctrl-z\x1a", "100%", "%s %(x)s", "caf\u00e9 \u4e2d\u6587 \U0001f600", "", " ",
           "\\'", "'"]


@pytest.mark.parametrize("separator_inside", [False, True])
@pytest.mark.parametrize("no_backslash", [False, True])
def test_strings_escaped_together_are_stored_exactly(engine: Engine, separator_inside: bool,
                                                     no_backslash: bool) -> None:
    # the distinct strings of a column are escaped together (joined, split again
    # afterwards): as the driver escapes its probe, or by the driver itself (quotes doubled
    # under NO_BACKSLASH_ESCAPES); a value holding the join character is escaped on its own
    names = [AWKWARD[n % len(AWKWARD)] + ("\x01" if separator_inside and n == 7 else "")
             for n in range(300)]
    rows = [(1, n, name) for n, name in enumerate(names)]
    with engine.begin() as conn:
        if no_backslash and engine.dialect.name != "sqlite":  # SQLite: no such mode
            conn.exec_driver_sql("SET SESSION sql_mode = CONCAT(@@sql_mode, "
                                 "',NO_BACKSLASH_ESCAPES')")
        assert insert_rows(conn, T, rows, columns=("a", "b", "name")) == 300
        if engine.dialect.name != "sqlite":
            raw = conn.connection.dbapi_connection
            assert raw is not None
            mogrify = raw.cursor().mogrify
            one_by_one = [str(mogrify("%s", (v,))) for v in AWKWARD]
            assert bulk._escaped_strings(list(AWKWARD), mogrify) == one_by_one
            assert bulk._escaped_strings(["a\x01b", "c"], mogrify) is None
    got = _stored(engine)
    assert [got[(1, n)].name for n in range(300)] == names


def test_written_out_statements_stay_under_the_limit(engine: Engine,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk, "MAX_STATEMENT", 20_000)
    seen, listener = _capture(engine)
    rows = [(1, n, "z" * 50) for n in range(1000)]
    try:
        with engine.begin() as conn:
            assert insert_rows(conn, T, rows, columns=("a", "b", "name"),
                               constants={"at": AT}) == 1000
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)
    assert len(_stored(engine)) == 1000
    if engine.dialect.name != "sqlite":
        assert len(seen) > 3
        assert all(len(s) <= 20_000 for s, _p in seen)
