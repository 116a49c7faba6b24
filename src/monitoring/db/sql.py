"""The SQL backend: records in the Monitoring database (SQLite, the embedded default, or
MariaDB), one table per type (:mod:`monitoring.db.tables`).

Writes are upserts on the record id (``INSERT ... ON CONFLICT DO UPDATE`` on SQLite,
``ON DUPLICATE KEY UPDATE`` on MariaDB), 500 rows per statement. Aggregations are one
``GROUP BY`` on the ``ts`` index; intervals are ``ts - ts % interval`` (integer arithmetic
both databases share).

Example::

    >>> from core.db import make_engine
    >>> from monitoring.types import TYPES, doc_id, normalise
    >>> backend = SQLBackend(make_engine("sqlite://")); backend.setup()
    >>> rtype = TYPES["PilotsHistory"]
    >>> doc = normalise(rtype, {"Status": "Running", "GridSite": "S", "NumOfPilots": 3,
    ...                         "timestamp": 1_780_000_000})
    >>> backend.put(rtype, [{**doc, "_id": doc_id(rtype, doc)}] * 2)
    2
    >>> [row.sums["NumOfPilots"] for row in backend.aggregate(rtype, Aggregation(
    ...     from_epoch(0), from_epoch(2_000_000_000), sums=("NumOfPilots",)))]
    [3.0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection, Engine

from core.db import init_schema
from core.in_values import in_values
from monitoring.db.base import Aggregation, AggRow, Backend, BackendUnavailable, epoch, from_epoch
from monitoring.db.tables import MONITORING_SCHEMA, record_table
from monitoring.types import RecordType

CHUNK = 500


class SQLBackend(Backend):
    name = "SQL"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._compiled: dict[tuple[str, str], tuple[str, list[str] | None]] = {}

    def setup(self) -> None:
        init_schema(self.engine, MONITORING_SCHEMA)

    # -- conversion ----------------------------------------------------------------------

    @staticmethod
    def _row(rtype: RecordType, doc: Mapping[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {"id": doc["_id"], "ts": epoch(doc[rtype.time_field])}
        for name in (*rtype.keys, *rtype.values):
            row[name] = doc[name]
        for name, kind in rtype.extra.items():
            value = doc.get(name)
            row[name] = epoch(value) if kind == "date" and value is not None else value
        return row

    @staticmethod
    def _doc(rtype: RecordType, row: Any) -> dict[str, Any]:
        data = row._mapping
        doc: dict[str, Any] = {"_id": data["id"], rtype.time_field: from_epoch(data["ts"])}
        for name in (*rtype.keys, *rtype.values):
            doc[name] = data[name]
        for name, kind in rtype.extra.items():
            value = data[name]
            doc[name] = from_epoch(value) if kind == "date" and value is not None else value
        return doc

    # -- writes --------------------------------------------------------------------------

    def _upsert_sql(self, conn: Connection, table: sa.Table) -> tuple[str, list[str] | None]:
        """The upsert compiled once per table and dialect: (SQL text, positional parameter
        order or None for named parameters)."""
        key = (conn.dialect.name, table.name)
        if key not in self._compiled:
            columns = [c.name for c in table.columns if c.name != "id"]
            stmt: Any
            if conn.dialect.name == "sqlite":
                lite = sqlite.insert(table)
                stmt = lite.on_conflict_do_update(
                    index_elements=["id"], set_={c: lite.excluded[c] for c in columns})
            elif conn.dialect.name in ("mysql", "mariadb"):
                my = mysql.insert(table)
                stmt = my.on_duplicate_key_update({c: my.inserted[c] for c in columns})
            else:  # pragma: no cover - only SQLite and MariaDB are supported (core.db)
                raise BackendUnavailable(f"no upsert for {conn.dialect.name}")
            values: dict[str, Any] = {c.name: sa.bindparam(c.name) for c in table.columns}
            compiled = stmt.values(values).compile(dialect=conn.dialect)
            order = list(compiled.positiontup) if compiled.positional else None
            self._compiled[key] = (str(compiled), order)
        return self._compiled[key]

    def _upsert(self, conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        # the statement is made with SQLAlchemy Core, compiled once, then run with the
        # driver's executemany: per-row parameter processing of a 100k-record batch costs
        # more than the database's own work (bench/monitoring_backends.py)
        text, order = self._upsert_sql(conn, table)
        if order is not None:
            conn.exec_driver_sql(text, [tuple(row[name] for name in order) for row in rows])
        else:
            conn.exec_driver_sql(text, rows)

    def put(self, rtype: RecordType, docs: Sequence[dict[str, Any]]) -> int:
        if not docs:
            return 0
        table = record_table(rtype.name)
        unique = {doc["_id"]: self._row(rtype, doc) for doc in docs}  # last one wins
        rows = list(unique.values())
        try:
            with self.engine.begin() as conn:
                for start in range(0, len(rows), CHUNK):
                    self._upsert(conn, table, rows[start:start + CHUNK])
        except sa.exc.OperationalError as exc:
            raise BackendUnavailable(f"monitoring database: {exc.orig}") from exc
        return len(docs)

    def delete_ids(self, rtype: RecordType, ids: Sequence[str]) -> int:
        table = record_table(rtype.name)
        gone = 0
        with self.engine.begin() as conn:
            for start in range(0, len(ids), CHUNK):
                gone += int(conn.execute(sa.delete(table).where(
                    table.c.id.in_(list(ids[start:start + CHUNK])))).rowcount or 0)
        return gone

    def delete_range(self, rtype: RecordType, start: datetime, end: datetime) -> int:
        table = record_table(rtype.name)
        with self.engine.begin() as conn:
            return int(conn.execute(sa.delete(table).where(
                table.c.ts >= epoch(start), table.c.ts < epoch(end))).rowcount or 0)

    def drop_before(self, rtype: RecordType, cutoff: datetime) -> int:
        table = record_table(rtype.name)
        total = 0
        while True:  # in slices, so a big purge never holds the write lock for long
            with self.engine.begin() as conn:
                ids = conn.execute(sa.select(table.c.id).where(table.c.ts < epoch(cutoff))
                                   .limit(10_000)).scalars().all()
                if not ids:
                    return total
                for start in range(0, len(ids), CHUNK):
                    conn.execute(sa.delete(table).where(
                        table.c.id.in_(ids[start:start + CHUNK])))
            total += len(ids)

    # -- reads ---------------------------------------------------------------------------

    def _where(self, table: sa.Table, start: datetime, end: datetime,
               filters: Mapping[str, Sequence[str]] | None) -> list[Any]:
        clauses: list[Any] = [table.c.ts >= epoch(start), table.c.ts < epoch(end)]
        for name, values in (filters or {}).items():
            if values:
                clauses.append(in_values(table.c[name], values))
        return clauses

    def get(self, rtype: RecordType, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        table = record_table(rtype.name)
        found: dict[str, dict[str, Any]] = {}
        wanted = list(dict.fromkeys(ids))
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), CHUNK):
                for row in conn.execute(sa.select(table).where(
                        table.c.id.in_(wanted[start:start + CHUNK]))):
                    found[row.id] = self._doc(rtype, row)
        return found

    def aggregate(self, rtype: RecordType, query: Aggregation) -> list[AggRow]:
        table = record_table(rtype.name)
        groups = [table.c[name] for name in query.group_by]
        columns: list[Any] = list(groups)
        if query.interval:
            slot = (table.c.ts - table.c.ts % query.interval).label("slot")
            columns.append(slot)
            groups.append(slot)  # type: ignore[arg-type]
        columns.append(sa.func.count().label("n"))
        columns += [sa.func.sum(table.c[name]).label(f"s_{i}")
                    for i, name in enumerate(query.sums)]
        stmt = sa.select(*columns).where(*self._where(table, query.start, query.end,
                                                      query.filters))
        if groups:
            stmt = stmt.group_by(*groups)
        rows = []
        with self.engine.connect() as conn:
            for row in conn.execute(stmt):
                data = row._mapping
                if not data["n"]:
                    continue
                rows.append(AggRow(
                    keys=tuple(str(data[name]) for name in query.group_by),
                    time=from_epoch(data["slot"]) if query.interval else None,
                    count=int(data["n"]),
                    sums={name: float(data[f"s_{i}"] or 0)
                          for i, name in enumerate(query.sums)}))
        return rows

    def times(self, rtype: RecordType, start: datetime, end: datetime) -> list[datetime]:
        table = record_table(rtype.name)
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(table.c.ts).distinct().where(
                table.c.ts >= epoch(start), table.c.ts < epoch(end))
                .order_by(table.c.ts)).scalars().all()
        return [from_epoch(t) for t in found]

    def records(self, rtype: RecordType, start: datetime, end: datetime,
                filters: Mapping[str, Sequence[str]] | None = None,
                limit: int = 1000) -> list[dict[str, Any]]:
        table = record_table(rtype.name)
        stmt = (sa.select(table).where(*self._where(table, start, end, filters))
                .order_by(table.c.ts.desc(), table.c.id).limit(limit))
        with self.engine.connect() as conn:
            return [self._doc(rtype, row) for row in conn.execute(stmt)]

    def key_values(self, rtype: RecordType, start: datetime | None = None
                   ) -> dict[str, list[str]]:
        table = record_table(rtype.name)
        out: dict[str, list[str]] = {}
        with self.engine.connect() as conn:
            for name in rtype.keys:
                stmt = sa.select(table.c[name]).distinct()
                if start is not None:
                    stmt = stmt.where(table.c.ts >= epoch(start))
                out[name] = sorted(str(v) for v in conn.execute(stmt).scalars())
        return out

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError:
            return False
        return True
