"""``core.in_values``: IN lists of any length on SQLite (capped at 32,766 bound parameters by
``core.db``) and MariaDB, with the values' types kept (integers, text, UTC datetimes)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.db import SQLITE_MAX_VARIABLES, UTCDateTime, make_engine
from core.exceptions import InvalidArgumentError
from core.in_values import MAX_TEXT, MAX_VALUES, PLAIN_MAX, in_param, in_values, is_long

LONG = 40_000
md = sa.MetaData()
items = sa.Table("iv_items", md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("name", sa.String(64), nullable=False),
                 sa.Column("group_id", sa.Integer, nullable=False),
                 sa.Column("seen", UTCDateTime, nullable=False),
                 sa.Index("ix_iv_group_id", "group_id", "id"))
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    md.create_all(eng)
    with eng.begin() as conn:
        conn.execute(items.insert(), [{"id": i, "name": f"n{i}", "group_id": i % 7,
                                       "seen": T0 + timedelta(seconds=i)}
                                      for i in range(1, 2001)])
    yield eng
    eng.dispose()


def test_sqlite_connections_have_the_stock_parameter_limit(tmp_path: object) -> None:
    engine = make_engine("sqlite://")
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        assert raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) == SQLITE_MAX_VARIABLES
        with pytest.raises(sa.exc.OperationalError, match="too many SQL variables"):
            conn.execute(sa.select(sa.literal(1)).where(
                sa.literal(0).in_(list(range(LONG))))).all()


def _ids(engine: Engine, where: sa.ColumnElement[bool], params: dict | None = None
         ) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(items.c.id).where(where).order_by(items.c.id),
                                 params or {}).scalars())


def test_long_lists_of_every_type_select(engine: Engine) -> None:
    ids = list(range(-LONG, 0)) + [5, 7, 1999]
    assert _ids(engine, in_values(items.c.id, ids)) == [5, 7, 1999]
    assert _ids(engine, in_values(items.c.id, [str(i) for i in ids])) == [5, 7, 1999]
    names = [f"x{i}" for i in range(LONG)] + ["n3", "n4"]
    assert _ids(engine, in_values(items.c.name, names)) == [3, 4]
    assert len(_ids(engine, in_values(items.c.name, names, negate=True))) == 1998
    seen = [T0 + timedelta(days=1, seconds=i) for i in range(LONG)] + [
        T0 + timedelta(seconds=10)]
    assert _ids(engine, in_values(items.c.seen, seen)) == [10]
    # bound at execution by name, as the statements built once per shape are
    statement = in_param(items.c.group_id, "g", True)
    assert len(_ids(engine, statement, {"g": [3] + list(range(100, 100 + LONG))})) == 286
    assert _ids(engine, sa.and_(in_param(items.c.id, "a", True), in_param(
        items.c.group_id, "b", True, negate=True)),
        {"a": ids, "b": list(range(1, LONG))}) == [7]


def test_two_long_lists_on_one_index_stay_fast(engine: Engine) -> None:
    """Without care SQLite probes (group_id, id) for every pair of the two lists (40,000 x
    40,000: minutes): only the first long list may use an index, the second is a test."""
    where = sa.and_(in_values(items.c.group_id, list(range(LONG))),
                    in_values(items.c.id, list(range(1, LONG))))
    assert _ids(engine, where) == list(range(1, 2001))
    if engine.dialect.name == "sqlite":
        sql = str(sa.select(items.c.id).where(where).compile(engine))
        assert "iv_items.group_id IN (SELECT value FROM json_each(?))" in sql
        assert "+iv_items.id IN (SELECT value FROM json_each(?))" in sql
        with engine.connect() as conn:
            plan = " ".join(str(r) for r in conn.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {sql}", ("[1]", "[1]")))
        assert "ix_iv_group_id (group_id=?)" in plan and "id=?" not in plan.replace(
            "group_id=?", "")


def test_short_lists_stay_plain_and_the_limit_is_named() -> None:
    assert "POSTCOMPILE" in str(in_values(items.c.id, list(range(PLAIN_MAX))))
    assert not is_long(list(range(PLAIN_MAX))) and is_long(list(range(PLAIN_MAX + 1)))
    with pytest.raises(InvalidArgumentError, match=f"at most {MAX_VALUES:,}"):
        in_values(items.c.id, range(MAX_VALUES + 1))
    with pytest.raises(InvalidArgumentError, match=f"at most {MAX_TEXT:,}"):
        in_values(items.c.name, ["x" * 1000] * (MAX_TEXT // 1000))
    assert is_long(["x" * 100] * 40_000)  # 4 MB: fits
    assert is_long(list(range(1, MAX_VALUES + 1)))  # a million job IDs: 9 MB of text


def test_the_longest_text_allowed_selects(engine: Engine) -> None:
    """A list just under the text limit goes through (on MariaDB: within the packet)."""
    names = [f"{i:0>200}" for i in range(MAX_TEXT // 210)] + ["n9"]
    assert _ids(engine, in_values(items.c.name, names)) == [9]
