"""Growth: submission, matching, search and status reads as the job DB grows to 10M jobs.

    PYTHONPATH=. python bench/growth.py [--steps 10000,100000,1000000,10000000]
        [--buffer-pool 6G] [--calls 200] [--matches 300] [--budget-minutes 45]
        [--explain-from 1000000] [--compare-plans 3]

Starts a private MariaDB (tests.support.mariadb, 127.0.0.1, own datadir, deleted at the end)
and fills the WMS tables in steps. At each step the DB holds about ``step`` jobs, as a real one
does: 99% written server-side in bulk (``INSERT ... SELECT`` from MariaDB's ``seq_1_to_N``
tables, no Python per row): Done 85%, Failed 9%, Killed 3%, Running 2%, over 1,000 owners (in
blocks of 10 consecutive jobs, as bulk submissions make them; the searching owner, a heavy user,
holds 1.1%), 4 groups, 6 sites, 200 job groups, each job with a short JDL row and two logging
rows (Received, final status); the job counters get the same rows' counts (one grouped
upsert per chunk, the count triggers dropped during the fill and created again after). The last
1% are Waiting jobs of 20 active owners put in their task queues by the matcher's own
``enqueue_jobs`` (about 60 queues).

Then, in process, with the project's own functions (the code paths of bench/submission.py,
bench/matcher.py and bench/search.py):

* bulk submission: a parametric JDL of 1,000 jobs stored, confirmed and optimised to Waiting
  (``submit`` + ``confirm_bulk`` + ``optimizer.optimise``), ``--submissions`` times;
* matching: ``match_job`` for a pilot of bench/matcher.py, ``--matches`` times, one process;
* search: ``JobMonitoringService.search`` for one owner, a page of 100 with a status filter and
  a sort, total included (reply encoded as on the wire);
* status: ``JobMonitoringService.getJobsStatus`` for 100 IDs of that owner spread over the
  whole table.

Prints p50/p99 (p50/max for submissions) per step, the ratio to the first step's p50, the
load average, fill time, DB size on disk and buffer pool pages in use; from
``--explain-from`` jobs on, MariaDB's plan (EXPLAIN) of every statement the reads and the
matcher send. Steps whose fill would
not finish within ``--budget-minutes`` (estimated from the previous fill rate) are skipped.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Engine

from bench.machine import machine_line
from bench.matcher import RESOURCE
from bench.submission import PARAMETRIC
from core.config.loader import load_config
from core.db import init_schema, make_engine, write_transaction
from core.exceptions import NoMatchError
from core.rpc.context import ServerContext
from core.rpc.jencode import encode
from core.rpc.service import Call
from core.security.identity import Identity
from wms.db import counters, job_queries, search_plans
from wms.db import jobs as jobs_db
from wms.db.filters import Scope
from wms.db.schema import WMS_SCHEMA
from wms.db.tables import job_jdls, jobs
from wms.logic import optimizer
from wms.logic.job_description import JobLimits
from wms.logic.matching import MatchScope, MatchSettings, TQJob, enqueue_jobs, match_job
from wms.logic.monitoring import fold_counters
from wms.logic.submission import Submitter, confirm_bulk, submit
from wms.service.common import enqueue
from wms.service.job_monitoring import JobMonitoringService

CHUNK = 250_000
OWNERS = 1000
SEARCHER = "user007"
ACTIVE = [f"user{i:03d}" for i in range(20)]  # owners with waiting jobs
VARIANTS: list[dict[str, Any]] = [{}, {"sites": [RESOURCE["Site"]]}, {"tags": ["GPU"]}]
EPOCH = "2025-01-01 00:00:00"

# the owner of a block of 10 consecutive jobs (a bulk submission): one block in 100 is the
# searching owner's (a heavy user: 1.1% of all jobs), the others spread over 1,000 owners
_OWNER_IDX = "IF((seq DIV 10) MOD 100 = 7, 7, ((seq DIV 10) * 7919) MOD 1000)"
_STATUS_KEY = "((seq * 37) MOD 99)"
# fixed SQL text: only integers (chunk bounds) are formatted into the seq table's name
_FILL_JOBS = f"""
INSERT INTO jobs (job_id, job_type, job_group, site, job_name, owner, owner_group, vo,
  submission_time, last_update_time, start_exec_time, end_exec_time, status, minor_status,
  application_status, user_priority, reschedule_counter)
SELECT seq, 'User', CONCAT('group', (seq DIV 5000) MOD 200),
  ELT(1 + seq MOD 6, 'LCG.CERN.cern', 'LCG.CNAF.it', 'LCG.IN2P3.fr', 'LCG.RAL.uk',
      'HPC.Ciemat.es', 'DIRAC.Demo.org'),
  CONCAT('job', seq), CONCAT('user', LPAD({_OWNER_IDX}, 3, '0')),
  ELT(1 + {_OWNER_IDX} MOD 4, 'demo_user', 'demo_prod', 'demo_sgm', 'demo_lcg'), 'demo',
  TIMESTAMP '{EPOCH}' + INTERVAL seq * 2 SECOND,
  TIMESTAMP '{EPOCH}' + INTERVAL seq * 2 + 7200 SECOND,
  TIMESTAMP '{EPOCH}' + INTERVAL seq * 2 + 600 SECOND,
  IF({_STATUS_KEY} < 97, TIMESTAMP '{EPOCH}' + INTERVAL seq * 2 + 7200 SECOND, NULL),
  CASE WHEN {_STATUS_KEY} < 85 THEN 'Done' WHEN {_STATUS_KEY} < 94 THEN 'Failed'
       WHEN {_STATUS_KEY} < 97 THEN 'Killed' ELSE 'Running' END,
  CASE WHEN {_STATUS_KEY} < 85 THEN 'Execution Complete'
       WHEN {_STATUS_KEY} < 94 THEN 'Application Finished With Errors'
       WHEN {_STATUS_KEY} < 97 THEN 'Marked for termination' ELSE 'Application' END,
  'Unknown', 1, 0
FROM seq_{{lo}}_to_{{hi}}
"""  # noqa: S608 - fixed text
_FILL_JDLS = """
INSERT INTO job_jdls (job_id, original_jdl, processed_jdl)
SELECT seq, CONCAT('[Executable = "analysis.sh"; JobName = "job', seq, '";]'),
  CONCAT('[Executable = "analysis.sh"; JobName = "job', seq, '"; JobID = ', seq, ';]')
FROM seq_{lo}_to_{hi}
"""
_FILL_LOGGING = """
INSERT INTO job_logging (job_id, status, minor_status, application_status, status_time, source)
SELECT job_id, 'Received', 'Job accepted', 'Unknown', submission_time, 'JobManager'
FROM jobs WHERE job_id BETWEEN :lo AND :hi
UNION ALL
SELECT job_id, status, minor_status, application_status, last_update_time, 'JobWrapper'
FROM jobs WHERE job_id BETWEEN :lo AND :hi
"""
_DIMS = "owner, owner_group, vo, status, minor_status, site, job_group"
_FILL_COUNTERS = f"""
INSERT INTO job_counters ({_DIMS}, n)
SELECT {_DIMS}, COUNT(*) FROM jobs WHERE job_id BETWEEN :lo AND :hi GROUP BY {_DIMS}
ON DUPLICATE KEY UPDATE n = n + VALUES(n)
"""  # noqa: S608 - fixed text


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


# -- filling -------------------------------------------------------------------------------------


def fill_final(engine: Engine, first: int, last: int) -> None:
    """Jobs ``first..last`` (final and running ones), their JDLs, logging rows and counts."""
    with engine.connect() as conn:
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS jobs_count_insert")
        conn.commit()
        for lo in range(first, last + 1, CHUNK):
            hi = min(last, lo + CHUNK - 1)
            bounds = {"lo": lo, "hi": hi}
            conn.exec_driver_sql(_FILL_JOBS.format(**bounds))
            conn.exec_driver_sql(_FILL_JDLS.format(**bounds))
            conn.execute(sa.text(_FILL_LOGGING), bounds)
            conn.execute(sa.text(_FILL_COUNTERS), bounds)
            conn.commit()
        counters.create_triggers(conn)
        conn.commit()


def fill_waiting(engine: Engine, count: int, rng: random.Random) -> None:
    """``count`` Waiting jobs of the active owners, queued by the matcher's ``enqueue_jobs``."""
    now = datetime.now(timezone.utc)
    for start in range(0, count, 5000):
        owners = [rng.choice(ACTIVE) for _ in range(min(5000, count - start))]
        with write_transaction(engine) as conn:
            ids = jobs_db.insert_jobs(conn, [jobs_db.NewJob(
                owner=o, owner_group="demo_user", vo="demo", status="Waiting",
                minor_status="Pilot Agent Submission",
                original_jdl='[Executable = "analysis.sh";]') for o in owners],
                now=now, source="bench")
            conn.execute(sa.update(job_jdls).where(job_jdls.c.job_id.in_(ids))
                         .values(processed_jdl=job_jdls.c.original_jdl))
            enqueue_jobs(conn, [TQJob(job_id=j, owner=o, owner_group="demo_user", vo="demo",
                                      cpu_time=3600 * (1 + i % 3), **VARIANTS[i % 3])
                                for i, (j, o) in enumerate(zip(ids, owners, strict=True))], now)
    fold_counters(engine, batches=1000)


def grow(engine: Engine, target: int, rng: random.Random) -> None:
    with engine.connect() as conn:
        have = int(conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one())
        top = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(jobs.c.job_id), 0)))
                  .scalar_one())
        waiting = int(conn.execute(sa.select(sa.func.count()).select_from(jobs)
                                   .where(jobs.c.status == "Waiting")).scalar_one())
    todo = target - have
    if todo <= 0:
        return
    n_waiting = max(0, target // 100 - waiting)
    n_final = todo - n_waiting
    fill_final(engine, top + 1, top + n_final)
    fill_waiting(engine, n_waiting, rng)


def check_counters(engine: Engine) -> None:
    """The counters (what search totals read) agree with COUNT(*) for the searching owner."""
    with engine.connect() as conn:
        for status in ("Done", "Failed", "Waiting"):
            filters = [("Owner", "eq", SEARCHER), ("Status", "eq", status)]
            counted = counters.count(conn, filters, None)
            real = conn.execute(sa.select(sa.func.count()).select_from(jobs).where(
                jobs.c.owner == SEARCHER, jobs.c.status == status)).scalar_one()
            assert counted == real, (status, counted, real)


def db_size(engine: Engine, datadir: Path) -> str:
    with engine.connect() as conn:
        tables = conn.execute(sa.text(
            "SELECT SUM(data_length + index_length) FROM information_schema.tables "
            "WHERE table_schema = DATABASE()")).scalar_one()
        pages = conn.execute(sa.text(
            "SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_data'")).one()[1]
    disk = subprocess.run(["du", "-sb", str(datadir)], capture_output=True, text=True,
                          check=True).stdout.split()[0]
    return (f"tables {int(tables or 0) / 2**30:.2f} GiB, datadir {int(disk) / 2**30:.2f} GiB, "
            f"buffer pool data {int(pages) * 16384 / 2**30:.2f} GiB")


# -- measuring -----------------------------------------------------------------------------------


class Measures:
    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        #: the DB URL when the statements' plans are to be printed (``--explain-from``)
        self.explain_url: str | None = None

    def report(self, label: str, samples: list[float], tail: str = "p99",
               note: str = "") -> None:
        p50, p99 = percentiles(samples)
        if tail == "max":
            p99 = max(samples)
        base = self.first.setdefault(label, p50)
        print(f"  {label:34s} p50 {p50 * 1e3:8.2f} ms  {tail} {p99 * 1e3:8.2f} ms  "
              f"x{p50 / base:5.2f} of first step  ({load()}{note})", flush=True)


def timed(fn: Callable[[], Any], calls: int, warm: int = 5) -> list[float]:
    for _ in range(warm):
        fn()
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def measure_submission(engine: Engine, runs: int, measures: Measures) -> None:
    jdl = PARAMETRIC.replace("{N}", "1000")
    limits = JobLimits(max_parametric_jobs=1000)
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        ids = submit(engine, jdl, Submitter("alice", "demo_user", "demo"), limits).job_ids
        confirm_bulk(engine, ids)
        result = optimizer.optimise(engine, ids, enqueue=enqueue)
        samples.append(time.perf_counter() - t0)
        assert len(result.waiting) == 1000, result.failed
    measures.report("bulk submit 1,000 to Waiting", samples, tail="max")
    print(f"  {'':34s} = {1000 / statistics.median(samples):.0f} jobs/s at the p50")


def measure_matching(engine: Engine, matches: int, measures: Measures) -> None:
    """``match_job`` as bench/matcher.py's pilot loop calls it; a miss (a queue emptied under
    the 1 s candidate cache) is retried, 3 in a row end the loop."""
    settings, scope = MatchSettings(candidate_cache_seconds=1.0), MatchScope("demo")
    samples: list[float] = []
    misses = in_a_row = 0
    while len(samples) < matches and in_a_row < 3:
        t0 = time.perf_counter()
        try:
            match_job(engine, RESOURCE, settings=settings, scope=scope)
        except NoMatchError:
            misses += 1
            in_a_row += 1
            continue
        samples.append(time.perf_counter() - t0)
        in_a_row = 0
    measures.report("match_job (1 process)", samples, note=f", {misses} misses")
    if measures.explain_url:
        explain("match_job", lambda: match_job(engine, RESOURCE, settings=settings,
                                               scope=scope), measures.explain_url)


def measure_reads(service: JobMonitoringService, engine: Engine, calls: int,
                  measures: Measures, rng: random.Random) -> None:
    ident = Identity(auth_method="x509", username=SEARCHER, group="demo_user",
                     properties=frozenset({"NormalUser"}), valid_dn=True, valid_group=True)
    call = Call(identity=ident, request_id="bench")
    columns = ["JobID", "Status", "MinorStatus", "Site", "JobName", "LastUpdateTime"]
    queries = {
        "search status=Done, JobID desc": (
            [{"parameter": "Status", "operator": "eq", "value": "Done"}],
            [{"parameter": "JobID", "direction": "desc"}]),
        "search status in 3, JobID desc": (
            [{"parameter": "Status", "operator": "in", "values": ["Waiting", "Running",
                                                                  "Failed"]}],
            [{"parameter": "JobID", "direction": "desc"}]),
        "search status=Done, by submission": (
            [{"parameter": "Status", "operator": "eq", "value": "Done"}],
            [{"parameter": "SubmissionTime", "direction": "desc"}]),
    }
    for label, (search, sort) in queries.items():
        def run(search: Any = search, sort: Any = sort) -> Any:
            reply = service.search(call, columns, search, sort, 1, 100)
            assert reply["TotalIsExact"]
            return encode({"OK": True, "Value": reply})
        measures.report(label, timed(run, calls))
        if measures.explain_url:
            explain(label, run, measures.explain_url)
    with engine.connect() as conn:
        mine = [int(x) for x in conn.execute(
            sa.select(jobs.c.job_id).where(jobs.c.owner == SEARCHER)).scalars()]
    picks = [sorted(rng.sample(mine, min(100, len(mine)))) for _ in range(calls + 6)]
    it = iter(picks)

    def status() -> Any:
        reply = service.get_jobs_status(call, next(it))
        return encode({"OK": True, "Value": reply})
    measures.report(f"getJobsStatus {min(100, len(mine))} IDs (spread)", timed(status, calls))
    if measures.explain_url:
        explain("getJobsStatus", status, measures.explain_url)


def compare_plans(engine: Engine, calls: int, rounds: int, url: str | None) -> None:
    """The searched owner's pages (100, total included) with the code before the search
    plans (the database's plan, the counts read without the counters' (owner, status) index)
    and after them (the plan chosen from the counters, that index), alternately on the same
    database: ``rounds`` times each, p50 per round; then each path forced (``walk``,
    ``status``: what the choice is made between)."""
    scope = Scope(owner=SEARCHER)
    columns = ["JobID", "Status", "MinorStatus", "Site", "JobName", "LastUpdateTime"]
    queries = {"Done, JobID desc": [("Status", "eq", "Done")],
               "3 statuses, JobID desc": [("Status", "in", ["Waiting", "Running", "Failed"])],
               "Running+Killed, JobID desc": [("Status", "in", ["Running", "Killed"])]}
    index = next(ix for ix in counters.job_counters.indexes
                 if ix.name == "ix_job_counters_owner_status")
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for variant, plan in (("before", "database"), ("after", "counted"),
                              ("walk", search_plans.WALK), ("status", search_plans.BY_STATUS)):
            with engine.begin() as conn:  # a small table: a second at 1M jobs
                present = index.name in {ix["name"] for ix in sa.inspect(conn).get_indexes(
                    "job_counters")}
                if variant == "before" and present:
                    index.drop(conn)
                elif variant != "before" and not present:
                    index.create(conn)
            for label, filters in queries.items():
                def run(filters: Any = filters, plan: str = plan) -> Any:
                    with engine.connect() as conn:
                        return job_queries.search_jobs(
                            conn, filters, columns=columns, sort=[("JobID", "desc")],
                            scope=scope, limit=100, datetimes_as_text=True, plan=plan)
                p50, _ = percentiles(timed(run, calls))
                results.setdefault((label, variant), []).append(p50)
                if url and len(results[(label, variant)]) == 1:
                    explain(f"{label} ({variant})", run, url)
    for (label, variant), p50s in results.items():
        print(f"  compare {label:28s} {variant:6s} p50 per round "
              f"{' '.join(f'{x * 1e3:.2f}' for x in p50s)} ms, best {min(p50s) * 1e3:.2f} ms "
              f"({load()})", flush=True)


def explain(label: str, fn: Callable[[], Any], url: str) -> None:
    """Run ``fn`` once, capturing the reads and updates it sends (every engine), and print
    MariaDB's plan of each: how each statement is served at this size."""
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                executemany: bool) -> None:
        if not executemany and statement.lstrip()[:6].upper() in ("SELECT", "UPDATE",
                                                                  "DELETE"):
            seen.append((statement, parameters))

    sa.event.listen(Engine, "before_cursor_execute", capture)
    try:
        fn()
    finally:
        sa.event.remove(Engine, "before_cursor_execute", capture)
    print(f"  EXPLAIN {label}:")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            for statement, parameters in seen[:10]:
                print("    " + " ".join(statement.split())[:160])
                for row in conn.exec_driver_sql("EXPLAIN " + statement, parameters).mappings():
                    print(f"      {row['table']}: type={row['type']} key={row['key']} "
                          f"rows={row['rows']} {row['Extra'] or ''}")
    finally:
        engine.dispose()


def make_service(url: str, tmp: Path) -> JobMonitoringService:
    inst = tmp / "inst"
    subprocess.run([sys.executable, "-m", "core.cli.admin", "init", str(inst), "--port", "0"],
                   check=True, capture_output=True)
    config = yaml.safe_load((inst / "config.yaml").read_text())
    config["Database"] = url
    (inst / "config.yaml").write_text(yaml.safe_dump(config))
    return JobMonitoringService(ServerContext(load_config(inst / "config.yaml")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="10000,100000,1000000,10000000")
    parser.add_argument("--buffer-pool", default="6G")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--matches", type=int, default=300)
    parser.add_argument("--submissions", type=int, default=3)
    parser.add_argument("--explain-from", type=int, default=1_000_000,
                        help="print the plans of the measured statements from this step on")
    parser.add_argument("--optimizer-switch", default="",
                        help="SET GLOBAL optimizer_switch=... first (e.g. "
                             "index_merge_intersection=off), to try a plan")
    parser.add_argument("--extra-index", action="append", default=[],
                        help="columns of an index of jobs to add before the fill (e.g. "
                             "owner,status,submission_time), to try an index")
    parser.add_argument("--compare-plans", type=int, default=0, metavar="ROUNDS",
                        help="also time the searches before/after the counted search plans, "
                             "alternately, ROUNDS times each (compare_plans)")
    parser.add_argument("--budget-minutes", type=float, default=45.0,
                        help="skip a step whose fill would end after this (estimated)")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    steps = [int(s) for s in args.steps.split(",")]
    began = time.monotonic()
    rng = random.Random(17)
    from tests.support.mariadb import MariaDBServer, fresh_database

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        server = MariaDBServer(buffer_pool=args.buffer_pool)
        server.start()
        stack.callback(server.stop)
        url = stack.enter_context(fresh_database(server.admin_url))
        if args.optimizer_switch:
            admin = make_engine(server.admin_url)
            with admin.connect() as conn:
                conn.exec_driver_sql("SET GLOBAL optimizer_switch = %s",
                                     (args.optimizer_switch,))
            admin.dispose()
        engine = make_engine(url)
        stack.callback(engine.dispose)
        with engine.connect() as conn:
            # bulk loads want a larger redo log than the 96 MB default (dynamic since 10.9)
            conn.exec_driver_sql("SET GLOBAL innodb_log_file_size = 1073741824")
            version = conn.exec_driver_sql("SELECT VERSION()").scalar_one()
        init_schema(engine, WMS_SCHEMA)
        with engine.begin() as conn:
            for i, cols in enumerate(args.extra_index):
                sa.Index(f"ix_growth_{i}", *[jobs.c[c] for c in cols.split(",")]).create(conn)
        service = make_service(url, tmp)
        print(f"MariaDB {version}, buffer pool {args.buffer_pool}, redo log 1 GiB, "
              f"optimizer switch {args.optimizer_switch or 'default'}, extra indexes "
              f"{args.extra_index or 'none'}; "
              f"{os.cpu_count()} cores, {load()}", flush=True)
        measures = Measures()
        rate = 0.0  # jobs filled per second, from the last step
        for step in steps:
            with engine.connect() as conn:
                have = conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one()
            spent = time.monotonic() - began
            if rate and (step - have) / rate > args.budget_minutes * 60 - spent:
                print(f"step {step:,}: skipped (fill estimated {(step - have) / rate / 60:.0f}"
                      f" min at {rate:,.0f} jobs/s; {spent / 60:.0f} of "
                      f"{args.budget_minutes:.0f} min spent)")
                break
            t0 = time.perf_counter()
            grow(engine, step, rng)
            fill = time.perf_counter() - t0
            rate = (step - have) / fill
            check_counters(engine)
            print(f"step {step:,} jobs: filled {step - have:,} in {fill:.1f} s "
                  f"({rate:,.0f} jobs/s, {load()}); {db_size(engine, server.base / 'data')}",
                  flush=True)
            measures.explain_url = url if step >= args.explain_from else None
            measure_submission(engine, args.submissions, measures)
            measure_matching(engine, args.matches, measures)
            fold_counters(engine, batches=1000)
            measure_reads(service, engine, args.calls, measures, rng)
            if args.compare_plans:
                compare_plans(engine, args.calls, args.compare_plans, measures.explain_url)


if __name__ == "__main__":
    main()
