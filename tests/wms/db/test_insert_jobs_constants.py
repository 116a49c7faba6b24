"""``jobs.insert_jobs`` on MariaDB writes the values all rows share once into the INSERT
(issue 17): the stored rows are the ones parameters give, whatever the characters."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.db import init_schema, make_engine
from wms.db import jobs as jobs_db
from wms.db.schema import WMS_SCHEMA
from wms.db.tables import jobs

NOW = datetime(2026, 12, 5, 0, 1, 2, 345678, tzinfo=timezone.utc)
ODD = "it's 100% \\ \"odd\" %s %(x)s ü"


@pytest.fixture
def engine(db_url_all_drivers: str) -> Iterator[Engine]:
    eng = make_engine(db_url_all_drivers)
    init_schema(eng, WMS_SCHEMA)
    yield eng
    eng.dispose()


def new_jobs(count: int, **same: object) -> list[jobs_db.NewJob]:
    values = {"owner": "alice", "owner_group": "demo_user", "vo": "demo", "status": "Received",
              "minor_status": ODD, "original_jdl": "[]", "job_group": ODD, "site": "ANY"}
    values.update(same)
    return [jobs_db.NewJob(**{"job_name": f"{ODD} {n}", **values})  # type: ignore[arg-type]
            for n in range(count)]


def stored(engine: Engine, ids: list[int]) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(jobs).where(jobs.c.job_id.in_(ids))
                            .order_by(jobs.c.job_id)).all()
    return [tuple(row)[1:] for row in rows]


@pytest.mark.parametrize("same", [{}, {"job_name": ODD}, {"user_priority": 7, "site": ODD}])
def test_many_rows_store_what_row_by_row_stores(engine: Engine, same: dict[str, object]
                                                ) -> None:
    statements: list[tuple[str, object]] = []
    sa.event.listen(engine, "before_cursor_execute",
                    lambda c, cur, text, params, ctx, many: statements.append((text, params)))
    with engine.begin() as conn:
        many = jobs_db.insert_jobs(conn, new_jobs(150, **same), now=NOW, source="test")
    inserts = [s for s in statements if s[0].startswith("INSERT INTO jobs ")]
    single: list[int] = []
    with engine.begin() as conn:
        for job in new_jobs(150, **same):  # one at a time: every value a parameter
            single += jobs_db.insert_jobs(conn, [job], now=NOW, source="test")
    assert len(many) == 150 and many == sorted(many)
    assert stored(engine, many) == stored(engine, single)
    if engine.dialect.name != "sqlite":  # the shared values are written in the statement
        assert "'alice'" in inserts[0][0]
        params = inserts[0][1]  # a dict (pymysql) or a tuple (mysqldb)
        assert isinstance(params, (dict, tuple)) and len(params) <= 150 * 2
