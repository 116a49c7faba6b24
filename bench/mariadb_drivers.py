"""Client CPU of the two MariaDB drivers, pymysql and mysqlclient (``MySQLdb``), per statement.

Usage::

    python bench/mariadb_drivers.py                  # a private MariaDB (tests/support)
    python bench/mariadb_drivers.py --mysql-url mysql+pymysql://root:pw@127.0.0.1/mysql

Each driver runs through ``core.db.make_engine`` (SQLAlchemy Core, as the services do) on a
fresh database of the same server, one after the other, ``--rounds`` times alternately;
printed per driver: the CPU time of this process (``time.process_time``: the client's work,
independent of waiting for mariadbd or for a core on a loaded machine) and the wall time, for

* ``SELECT 1`` (the floor of a statement);
* a fetch of 20,000 rows of 5 columns (a large search or ``dstat -a`` page);
* ``SELECT ... WHERE id IN (100 values)`` (the report path's ``status_of``);
* a 1,000-row INSERT executemany (multi-row INSERTs on both drivers);
* ``core.bulk.insert_rows`` of 1,000 rows with 2 constants (the bulk submission's path);

the two INSERTs include deleting the rows again and the commit.

The best round of each is printed (least disturbed by other load), with the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent), str(_HERE.parent / "src")] + [
    p for p in sys.path if Path(p or ".").resolve() != _HERE]

import sqlalchemy as sa  # noqa: E402

from bench.machine import machine_line  # noqa: E402
from core.bulk import insert_rows  # noqa: E402
from core.db import UTCDateTime, make_engine  # noqa: E402

MD = sa.MetaData()
ROWS = sa.Table("rows", MD, sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                sa.Column("owner", sa.String(64)), sa.Column("status", sa.String(32)),
                sa.Column("site", sa.String(64)), sa.Column("at", UTCDateTime))
AT = datetime(2026, 12, 4, 5, 0, tzinfo=timezone.utc)


def measure(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(CPU, wall) seconds per call of ``fn``, over ``repeat`` calls."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.process_time() - cpu) / repeat, (time.perf_counter() - wall) / repeat


def run(url: str) -> dict[str, tuple[float, float]]:
    engine = make_engine(url)
    MD.create_all(engine)
    rows = [{"id": n + 1, "owner": f"user{n % 50}", "status": "Waiting", "site": f"LCG.S{n % 9}.x",
             "at": AT} for n in range(20_000)]
    with engine.begin() as conn:
        conn.execute(ROWS.insert(), rows)
    out: dict[str, tuple[float, float]] = {}
    with engine.connect() as conn:
        one = sa.text("SELECT 1")
        out["SELECT 1"] = measure(lambda: conn.execute(one).scalar(), 500)
        every = sa.select(ROWS)
        out["fetch 20,000 rows"] = measure(lambda: conn.execute(every).all(), 5)
        some = sa.select(ROWS.c.id, ROWS.c.status).where(
            ROWS.c.id.in_(sa.bindparam("ids", expanding=True)))
        ids = list(range(1, 20_000, 200))
        out["IN (100 values)"] = measure(lambda: conn.execute(some, {"ids": ids}).all(), 100)
        new = [{**r, "id": r["id"] + 100_000} for r in rows[:1000]]

        def executemany() -> None:
            conn.execute(ROWS.insert(), new)
            conn.execute(sa.delete(ROWS).where(ROWS.c.id >= 100_000))
            conn.commit()
        out["INSERT 1,000 rows (executemany)"] = measure(executemany, 10)
        bare = [{k: v for k, v in r.items() if k not in ("status", "at")} for r in new]

        def bulk() -> None:
            insert_rows(conn, ROWS, bare, constants={"status": "Received", "at": AT})
            conn.execute(sa.delete(ROWS).where(ROWS.c.id >= 100_000))
            conn.commit()
        out["insert_rows 1,000 rows"] = measure(bulk, 10)
    engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mysql-url", help="admin URL of a MariaDB server")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(machine_line(), flush=True)
    from tests.support.mariadb import MariaDBServer, fresh_database, with_driver

    with ExitStack() as stack:
        admin = args.mysql_url
        if not admin:
            server = MariaDBServer()
            server.start()
            stack.callback(server.stop)
            admin = server.admin_url
        load0 = os.getloadavg()[0]
        best: dict[str, dict[str, tuple[float, float]]] = {}
        for _ in range(args.rounds):
            for driver in ("pymysql", "mysqldb"):
                with fresh_database(admin) as url:
                    for name, (cpu, wall) in run(with_driver(url, driver)).items():
                        old = best.setdefault(driver, {}).get(name)
                        if old is None or cpu < old[0]:
                            best[driver][name] = (cpu, wall)
        print(f"MariaDB drivers through SQLAlchemy, best of {args.rounds} rounds, load average "
              f"{load0:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"  {'statement':34s} {'pymysql CPU (wall)':>24s} {'mysqldb CPU (wall)':>24s}"
              "  CPU ratio")
        for name, (cpu, wall) in best["pymysql"].items():
            c2, w2 = best["mysqldb"][name]
            print(f"  {name:34s} {cpu * 1e3:9.3f} ms ({wall * 1e3:8.3f}) "
                  f"{c2 * 1e3:9.3f} ms ({w2 * 1e3:8.3f})  {cpu / c2:5.1f}x")


if __name__ == "__main__":
    main()
