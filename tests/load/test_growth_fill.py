"""The bulk fill of ``bench/growth.py`` leaves a consistent WMS DB (issue 17, growth row).

The growth benchmark writes jobs straight into the tables with ``INSERT ... SELECT`` (count
triggers dropped meanwhile); its figures only mean something if the DB is what the services
would have written: every job counted once in the job counters (what search totals read),
one JDL row per job, every Waiting job in a task queue, and the usual status mix. MariaDB
only (the fill uses MariaDB's sequence tables).
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
import sqlalchemy as sa
from bench.growth import SEARCHER, check_counters, grow

from core.db import init_schema, make_engine
from tests.support.mariadb import fresh_database
from wms.db import counters
from wms.db.schema import WMS_SCHEMA
from wms.db.tables import job_jdls, job_logging, jobs
from wms.db.tq_tables import tq_jobs
from wms.logic.matching import MatchScope, MatchSettings, match_job
from wms.logic.monitoring import fold_counters


@pytest.mark.timeout(300)
def test_growth_fill_is_consistent(mariadb_admin_url: str) -> None:
    with fresh_database(mariadb_admin_url) as url:
        engine = make_engine(url)
        try:
            init_schema(engine, WMS_SCHEMA)
            rng = random.Random(1)
            grow(engine, 3_000, rng)
            grow(engine, 8_000, rng)  # a second step continues after the first
            check_counters(engine)
            with engine.connect() as conn:
                dims = [jobs.c[c] for c in counters.COUNTED.values()]
                real = Counter({tuple(r[:-1]): int(r[-1]) for r in conn.execute(
                    sa.select(*dims, sa.func.count()).group_by(*dims))})
                counted = Counter({tuple(v.values()): n for v, n in counters.group_counts(
                    conn, list(counters.COUNTED), [], None)})
                assert counted == real
                statuses = Counter(dict(conn.execute(
                    sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status)).all()))
                n_jobs = sum(statuses.values())
                assert n_jobs == 8_000
                assert statuses["Waiting"] == 80
                assert 0.8 < statuses["Done"] / n_jobs < 0.9
                assert {"Failed", "Killed", "Running"} <= set(statuses)
                queued = conn.execute(sa.select(sa.func.count()).select_from(tq_jobs)).scalar()
                assert queued == statuses["Waiting"]
                assert conn.execute(sa.select(sa.func.count()).select_from(job_jdls)
                                    ).scalar() == n_jobs
                assert conn.execute(sa.select(sa.func.count()).select_from(job_logging)
                                    ).scalar() >= 2 * (n_jobs - 80)
                owners = conn.execute(sa.select(sa.func.count(sa.distinct(jobs.c.owner)))
                                      ).scalar()
                assert owners is not None and owners > 500
                mine = conn.execute(sa.select(sa.func.count()).select_from(jobs)
                                    .where(jobs.c.owner == SEARCHER)).scalar()
                assert mine is not None and mine >= 80  # the heavy user: ~1.1%
            # the triggers are back: a match (Waiting -> Matched) moves the counts
            match_job(engine, {"Site": "LCG.CERN.cern", "CPUTime": 200_000},
                      settings=MatchSettings(), scope=MatchScope("demo"))
            fold_counters(engine)
            with engine.connect() as conn:
                assert counters.count(conn, [("Status", "eq", "Matched")], None) == 1
                assert counters.count(conn, [("Status", "eq", "Waiting")], None) == 79
        finally:
            engine.dispose()
