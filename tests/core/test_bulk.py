"""``core.bulk.insert_rows`` on both databases: values, constants through their column types,
big texts over several multi-row INSERTs, insert-ignore statements, str enums."""

from __future__ import annotations

import doctest
from collections.abc import Iterator
from datetime import datetime, timezone
from enum import StrEnum

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Engine

from core import bulk
from core.bulk import insert_rows
from core.db import UTCDateTime, make_engine

MD = sa.MetaData()
T = sa.Table(
    "bulk_t", MD,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(32), nullable=False),
    sa.Column("text", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"),
              nullable=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, server_default="New"),
)
@pytest.fixture
def db_url(db_url_all_drivers: str) -> str:
    """SQLite, and MariaDB with both drivers (pymysql, mysqlclient): driver-specific code."""
    return db_url_all_drivers


AT = datetime(2026, 12, 3, 16, 30, 1, tzinfo=timezone.utc)  # DATETIME: whole seconds on MariaDB


class Colour(StrEnum):
    RED = "Red"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    MD.create_all(eng)
    yield eng
    eng.dispose()


def test_doctest() -> None:
    assert doctest.testmod(bulk).failed == 0


def test_rows_constants_and_big_texts(engine: Engine) -> None:
    # 2,500 rows of 3 KB: three executemany calls, several multi-row INSERTs on MariaDB
    rows = [{"id": n, "name": Colour.RED if n % 2 else f"n{n}",
             "text": None if n % 7 == 0 else f"{n}:" + "x" * 3000} for n in range(2500)]
    with engine.begin() as conn:
        assert insert_rows(conn, T, rows, constants={"at": AT}) == 2500
    with engine.connect() as conn:
        got = {r.id: r for r in conn.execute(sa.select(T))}
    assert len(got) == 2500
    for row in rows:
        stored = got[row["id"]]
        assert (stored.name, stored.text, stored.at, stored.state) == (
            str(row["name"]), row["text"], AT, "New")
        assert type(stored.name) is str


def test_insert_ignore_statement_counts_new_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        insert_rows(conn, T, [{"id": 1, "name": "old"}], constants={"at": AT})
        stmt = sqlite.insert(T).on_conflict_do_nothing() if conn.dialect.name == "sqlite" \
            else mysql.insert(T).prefix_with("IGNORE")
        added = insert_rows(conn, T, [{"id": 1, "name": "new"}, {"id": 2, "name": "two"}],
                            constants={"at": AT}, statement=stmt)
    assert added == 1
    with engine.connect() as conn:
        assert dict(conn.execute(sa.select(T.c.id, T.c.name)).all()) == {1: "old", 2: "two"}


def test_nothing_to_insert_and_a_failing_row(engine: Engine) -> None:
    with engine.begin() as conn:
        assert insert_rows(conn, T, []) == 0
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        insert_rows(conn, T, [{"id": 5, "name": None}], constants={"at": AT})
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(T)).scalar_one() == 0


def test_constants_written_once_keep_quotes_and_percents(engine: Engine) -> None:
    # on MariaDB the constants become literals of the row template: quotes, backslashes and
    # '%' (the driver's format marker) in constants and in rows must come back unchanged, and
    # 3,000 rows of 3 KB go in a few multi-row INSERTs (< 1 MB each), not one per row
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    rows = [{"id": n, "name": f"%s%%'\\{n}", "text": f"{n}:" + "y" * 3000} for n in range(3000)]
    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        with engine.begin() as conn:
            written = insert_rows(conn, T, rows, constants={"at": AT, "state": "50% 'q' \\ (x)"})
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert written == 3000
    inserts = [s for s in statements if s.startswith("INSERT")]
    assert 3 <= len(inserts) <= 30
    if engine.dialect.name != "sqlite":  # the constants are written once, as literals
        assert sum(s.count("'2026-12-03 16:30:01'") for s in inserts) == 3000  # per row
    with engine.connect() as conn:
        got = {r.id: r for r in conn.execute(sa.select(T))}
    assert len(got) == 3000
    for row in rows:
        stored = got[row["id"]]
        assert (stored.name, stored.text, stored.at, stored.state) == (
            row["name"], row["text"], AT, "50% 'q' \\ (x)")
