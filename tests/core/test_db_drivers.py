"""Both MariaDB drivers, pymysql and mysqlclient (``MySQLdb``), behave alike under pilotwms.

``make_engine`` gives both the same session (utf8mb4, READ COMMITTED, rowcounts of matched
rows, pre-ping, recycling, ``?failover=``); their errors are classified alike (a lost, killed,
closed or refused connection is "database unavailable", a duplicate key is not), and a
connection the server dropped is replaced without the caller seeing it. Real MariaDB (the
session's private server), no mocks.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.db import make_engine
from core.exceptions import DatabaseUnavailableError
from core.faults import is_disconnect, service_error
from tests.support.mariadb import free_port, fresh_database, with_driver

DRIVERS = ["pymysql", "mysqldb"]

md = sa.MetaData()
notes = sa.Table("notes", md, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("text", sa.String(64)))


@pytest.fixture(params=DRIVERS)
def maria_url(request: pytest.FixtureRequest, mariadb_admin_url: str) -> Iterator[str]:
    with fresh_database(mariadb_admin_url) as url:
        yield with_driver(url, request.param)


@pytest.fixture
def engine(maria_url: str) -> Iterator[Engine]:
    eng = make_engine(maria_url, pool_size=1, max_overflow=0)
    md.create_all(eng)
    yield eng
    eng.dispose()


def _kill(admin_url: str, connection_id: int) -> None:
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"KILL {int(connection_id)}"))
    admin.dispose()


def test_same_session_settings(engine: Engine, maria_url: str) -> None:
    assert engine.dialect.driver == sa.engine.make_url(maria_url).get_driver_name()
    assert engine.pool._pre_ping and engine.pool._recycle == 3600  # type: ignore[attr-defined]
    text = "ünïcödé 🚀 '%s' \\ %%"  # a 4-byte character needs utf8mb4 end to end
    with engine.begin() as conn:
        assert conn.get_isolation_level() == "READ COMMITTED"
        assert conn.execute(sa.text("SELECT @@character_set_client")).scalar() == "utf8mb4"
        raw = conn.connection.dbapi_connection
        assert raw is not None
        with raw.cursor() as cursor:  # a rewritten INSERT executemany: up to 1 MB a statement
            assert cursor.max_stmt_length == 1024000
        conn.execute(notes.insert(), [{"id": 1, "text": text}, {"id": 2, "text": "b"}])
        # CLIENT.FOUND_ROWS on both: an UPDATE counts the rows matched, changed or not
        same = conn.execute(sa.update(notes).where(notes.c.id == 2).values(text="b"))
        assert same.rowcount == 1
    with engine.connect() as conn:
        assert conn.execute(sa.select(notes.c.text).where(notes.c.id == 1)).scalar() == text


def test_same_errors_for_bad_statements(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(notes.insert().values(id=1, text="a"))
    with pytest.raises(sa.exc.IntegrityError) as dup, engine.begin() as conn:
        conn.execute(notes.insert().values(id=1, text="again"))
    assert dup.value.orig.args[0] == 1062  # type: ignore[union-attr]
    assert not is_disconnect(dup.value) and service_error(dup.value) is None
    with pytest.raises(sa.exc.ProgrammingError) as bad, engine.connect() as conn:
        conn.execute(sa.text("SELECT * FROM no_such_table"))
    assert bad.value.orig.args[0] == 1146  # type: ignore[union-attr]
    assert not is_disconnect(bad.value)


def test_killed_connection_fails_cleanly_then_is_replaced(engine: Engine,
                                                           mariadb_admin_url: str) -> None:
    with engine.begin() as conn:
        conn.execute(notes.insert().values(id=1, text="kept"))
    # a connection killed in the middle of a transaction: the statement fails as
    # "unavailable" (HTTP 503, the client may retry), nothing half-written
    with pytest.raises(sa.exc.OperationalError) as lost, engine.begin() as conn:
        conn.execute(notes.insert().values(id=2, text="lost"))
        _kill(mariadb_admin_url, conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar_one())
        conn.execute(sa.select(notes.c.id))
    assert is_disconnect(lost.value)
    assert isinstance(service_error(lost.value), DatabaseUnavailableError)
    # an idle pooled connection killed by the server: pre-ping replaces it unseen
    with engine.connect() as conn:
        first = conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar_one()
    _kill(mariadb_admin_url, first)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar_one() != first
        assert conn.execute(sa.select(notes.c.id, notes.c.text)).all() == [(1, "kept")]


def test_closed_and_refused_connections_are_unavailable(maria_url: str,
                                                        engine: Engine) -> None:
    with pytest.raises(sa.exc.DBAPIError) as closed, engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        raw.close()
        conn.execute(sa.select(notes.c.id))
    assert is_disconnect(closed.value)  # pymysql: InterfaceError(0); MySQLdb: 2006
    with engine.connect() as conn:  # the pool recovers
        assert conn.execute(sa.select(sa.func.count()).select_from(notes)).scalar() == 0

    nowhere = sa.engine.make_url(maria_url).set(port=free_port())
    dead = make_engine(nowhere.render_as_string(hide_password=False))
    with pytest.raises(sa.exc.OperationalError) as refused, dead.connect():
        pass
    assert refused.value.orig.args[0] in (2002, 2003)  # type: ignore[union-attr]
    assert isinstance(service_error(refused.value), DatabaseUnavailableError)
    dead.dispose()


def test_failover_host_with_either_driver(maria_url: str) -> None:
    url = sa.engine.make_url(maria_url)
    first = url.set(port=free_port()).update_query_dict(
        {"failover": f"127.0.0.1:{url.port}"})
    engine = make_engine(first.render_as_string(hide_password=False))
    with engine.connect() as conn:  # the first host refuses; the alternate serves
        assert conn.execute(sa.text("SELECT @@port")).scalar() == url.port
        assert conn.get_isolation_level() == "READ COMMITTED"
    engine.dispose()
