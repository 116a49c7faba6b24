"""Engines, UTC columns and schema init/upgrade on both backends (SQLite and MariaDB)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.db import (
    Schema,
    UTCDateTime,
    init_schema,
    make_engine,
    schema_version,
    upgrade_schema,
    write_transaction,
)
from core.exceptions import ConfigError, DatabaseError
from core.tables import FRAMEWORK_SCHEMA, component_heartbeats


@pytest.fixture
def db_url(db_url_all_drivers: str) -> str:
    """SQLite, and MariaDB with both drivers (pymysql, mysqlclient): driver-specific code."""
    return db_url_all_drivers


def _schema(extra_column: bool = False, migrations: int = 0) -> tuple[Schema, sa.Table]:
    md = sa.MetaData()
    cols = [sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("when", UTCDateTime, nullable=True)]
    if extra_column:
        cols.append(sa.Column("note", sa.String(64), nullable=True))
    table = sa.Table("things", md, *cols)

    def add_note(conn: sa.Connection) -> None:
        # migrations use SQLAlchemy constructs; ALTER is rendered per dialect
        col = sa.Column("note", sa.String(64), nullable=True)
        conn.execute(sa.schema.DDL(
            f"ALTER TABLE things ADD COLUMN {col.compile(dialect=conn.dialect)} "
            f"{col.type.compile(dialect=conn.dialect)}"))

    return Schema("Demo", md, migrations=[add_note][:migrations]), table


def test_init_then_upgrade(db_url: str) -> None:
    engine = make_engine(db_url)
    v0, _ = _schema()
    assert schema_version(engine, "Demo") is None
    assert init_schema(engine, v0) == 0
    assert schema_version(engine, "Demo") == 0
    assert init_schema(engine, v0) == 0  # idempotent
    v1, table = _schema(extra_column=True, migrations=1)
    assert upgrade_schema(engine, v1) == 1
    assert schema_version(engine, "Demo") == 1
    when = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    with engine.begin() as conn:
        conn.execute(sa.insert(table).values(id=1, when=when, note="upgraded"))
    with engine.connect() as conn:
        row = conn.execute(sa.select(table)).one()
    assert row.note == "upgraded"
    assert row.when == datetime(2026, 11, 22, 10, 0, 0, tzinfo=timezone.utc)
    assert row.when.tzinfo is timezone.utc
    engine.dispose()


def test_newer_schema_than_code_is_refused(db_url: str) -> None:
    engine = make_engine(db_url)
    v1, _ = _schema(extra_column=True, migrations=1)
    init_schema(engine, v1)
    v0, _ = _schema()
    with pytest.raises(DatabaseError, match="newer than this pilotwms"):
        upgrade_schema(engine, v0)
    engine.dispose()


def test_naive_datetimes_are_refused(db_url: str) -> None:
    engine = make_engine(db_url)
    schema, table = _schema()
    init_schema(engine, schema)
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), engine.begin() as conn:
        conn.execute(sa.insert(table).values(id=1, when=datetime(2026, 1, 1)))  # noqa: DTZ001
    engine.dispose()


def test_framework_schema_and_concurrent_writers(db_url: str) -> None:
    """Eight threads read-modify-write one counter in write transactions: no update is lost."""
    engine = make_engine(db_url)
    init_schema(engine, FRAMEWORK_SCHEMA)
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        conn.execute(sa.insert(component_heartbeats).values(
            component="c", instance="i", hostname="h", pid=0, started=now, last_beat=now))
    hb = component_heartbeats

    def bump() -> None:
        for _ in range(20):
            with write_transaction(engine) as conn:
                query = sa.select(hb.c.pid).where(hb.c.component == "c")
                if engine.dialect.name != "sqlite":
                    query = query.with_for_update()
                pid = conn.execute(query).scalar_one()
                conn.execute(sa.update(hb).where(hb.c.component == "c").values(pid=pid + 1))

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with engine.connect() as conn:
        assert conn.execute(sa.select(hb.c.pid)).scalar_one() == 160
    engine.dispose()


@pytest.mark.parametrize("url", ["postgresql://x/y", "mysql+mysqlconnector://u@h/d", "::nonsense"])
def test_unsupported_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        make_engine(url)


# -- conflicts (Galera / InnoDB): retried whole; the real cluster is in tests/deploy ----------


def _db_error(code: int) -> sa.exc.OperationalError:
    import pymysql

    return sa.exc.OperationalError("COMMIT", {}, pymysql.err.OperationalError(code, "x"))


@pytest.mark.parametrize(("code", "retried"), [(1213, True), (1047, True), (1180, True),
                                               (1062, False), (2013, False)])
def test_retry_conflicts_reruns_only_rolled_back_transactions(
        code: int, retried: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from core import db as core_db

    monkeypatch.setattr(core_db.time, "sleep", lambda _s: None)
    calls: list[bool] = []

    @core_db.retry_conflicts(attempts=3)
    def flaky() -> str:
        calls.append(core_db._retrying.get())
        if len(calls) == 1:
            raise _db_error(code)
        return "done"

    if retried:
        assert flaky() == "done"
        assert calls == [False, True]  # the re-run knows it is one (causal reads)
    else:
        with pytest.raises(sa.exc.OperationalError):
            flaky()
        assert calls == [False]
    assert core_db._retrying.get() is False


def test_retry_conflicts_gives_up_after_its_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    from core import db as core_db

    monkeypatch.setattr(core_db.time, "sleep", lambda _s: None)
    calls: list[int] = []

    @core_db.retry_conflicts(attempts=4)
    def always() -> None:
        calls.append(1)
        raise _db_error(1213)

    with pytest.raises(sa.exc.OperationalError) as caught:
        always()
    assert core_db.is_conflict(caught.value) and len(calls) == 4


def test_failover_hosts_in_the_url() -> None:
    from core.db import _failover_hosts

    url = sa.engine.make_url("mysql+pymysql://u:p@h1:3306/db?failover=h2:3307,[::1]:3308")
    assert _failover_hosts(url) == [("h2", 3307), ("::1", 3308)]
    engine = make_engine(str(url))
    assert "failover" not in engine.url.query
    with pytest.raises(ConfigError, match="not host:port"):
        make_engine("mysql+pymysql://u:p@h1/db?failover=h2")


def test_new_connections_racing_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    """Switching a fresh file to WAL can answer "database is locked" at once (no busy wait)
    while another new connection is switching it: each connection tries again."""
    errors: list[BaseException] = []
    for round_ in range(25):
        url = f"sqlite:///{tmp_path / f'race{round_}.db'}"
        engines = [make_engine(url) for _ in range(6)]
        barrier = threading.Barrier(len(engines))

        def connect(engine: sa.engine.Engine, barrier: threading.Barrier) -> None:
            try:
                barrier.wait(30)
                with engine.begin() as conn:
                    assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=connect, args=(e, barrier))
                   for e in engines]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for engine in engines:
            engine.dispose()
    assert not errors, errors[:3]
