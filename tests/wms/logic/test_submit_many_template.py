"""``submission.submit_many`` describes JDLs made from one template once per constant step
(issue 17): the descriptions and processed JDL texts are the ones made job by job."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.db import init_schema, make_engine
from core.exceptions import InvalidJDLError
from wms.db import counters
from wms.db import jobs as jobs_db
from wms.db.schema import WMS_SCHEMA
from wms.db.tables import input_data, job_jdls, job_logging, jobs
from wms.db.tq_tables import tq_jobs
from wms.logic import optimizer, submission
from wms.logic.input_data import InputDataVerdict
from wms.logic.jdl import JDL, parse_jdl
from wms.logic.job_description import DEFAULT_LIMITS, describe_job, processed_jdl
from wms.service.common import enqueue_new

WHO = submission.Submitter("alice", "demo_user", "demo")
TEMPLATE = ('[Executable = "run.sh"; Arguments = "-n 5"; CPUTime = 600; Tags = {"a"};'
            ' OutputData = {"out.root"}; Custom = "x"; Priority = 3;]')


def task_jdls(count: int) -> list[JDL]:
    """As the WorkflowTaskAgent makes them: the template with a few attributes set."""
    template = parse_jdl(TEMPLATE)
    out = []
    for n in range(count):
        jdl = template.copy()
        jdl["InputData"] = [f"LFN:/demo/f{n}-{i}" for i in range(3)]
        jdl["JobName"] = f"00000001_{n:08d}"
        jdl["JobGroup"] = "00000001"
        jdl["OutputPath"] = f"/demo/out/{n}"
        jdl["TaskID"] = n
        jdl["Site"] = "LCG.CERN.cern" if n % 2 else "LCG.CNAF.it"
        out.append(jdl)
    return out


def test_varying_attributes() -> None:
    jdls = task_jdls(4)
    assert submission.varying_attributes(jdls) == {"inputdata", "jobname", "outputpath",
                                                   "taskid", "site"}
    assert submission.varying_attributes(jdls[:1]) == frozenset()
    other = jdls[1].copy()
    other["Extra"] = 1
    assert submission.varying_attributes([jdls[0], other]) is None  # not the same attributes
    spelt = jdls[1].copy()
    del spelt["Custom"]
    spelt["CUSTOM"] = "x"
    assert submission.varying_attributes([jdls[0], spelt]) is None  # spelt differently
    typed = [parse_jdl("[A = 1; B = {1}; C = 1.0]"), parse_jdl("[A = true; B = {1.0}; C = 1.0]")]
    assert submission.varying_attributes(typed) == {"a", "b"}  # equal values, other types


def test_template_descriptions_are_the_job_by_job_ones() -> None:
    jdls = task_jdls(6)
    descriptions, template, write = submission._describe_many(jdls, WHO, DEFAULT_LIMITS)
    assert template is not None
    for n, (jdl, desc) in enumerate(zip(jdls, descriptions, strict=True)):
        assert write(jdl) == jdl.to_text()
        alone = describe_job(jdl, owner=WHO.owner, owner_group=WHO.owner_group, vo=WHO.vo,
                             limits=DEFAULT_LIMITS)
        assert desc == alone
        assert template.text(desc, 100 + n) == processed_jdl(alone, 100 + n).to_text()


def test_a_bad_task_fails_with_the_job_by_job_error() -> None:
    jdls = task_jdls(3)
    jdls[2]["InputData"] = ["LFN:/other/vo/file"]
    with pytest.raises(InvalidJDLError) as by_template:
        submission._describe_many(jdls, WHO, DEFAULT_LIMITS)
    with pytest.raises(InvalidJDLError) as alone:
        describe_job(jdls[2], owner=WHO.owner, owner_group=WHO.owner_group, vo=WHO.vo,
                     limits=DEFAULT_LIMITS)
    assert str(by_template.value) == str(alone.value)


# -- optimised as stored: the jobs to be Waiting inserted Waiting ------------------------------

@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_schema(eng, WMS_SCHEMA)
    yield eng
    eng.dispose()


def optimised_jdls(count: int) -> list[JDL]:
    """Tasks with input data (see :func:`check`)."""
    return task_jdls(count)


def check(wanted: dict[int, list[str]]) -> dict[int, InputDataVerdict]:
    """Job by job, from the first file's name: refused, at no site, at one, or at two."""
    out = {}
    for job_id, lfns in wanted.items():
        n = int(lfns[0].rsplit("/f", 1)[1].split("-")[0])
        out[job_id] = (InputDataVerdict(reason="Input Data Not Available") if n % 5 == 4
                       else InputDataVerdict(sites=("LCG.CERN.cern", "LCG.CNAF.it")[:n % 3]))
    return out


def stored_as(conn: Connection, ids: list[int]) -> list[object]:
    """Everything stored for ``ids``, job IDs made relative to the first one (the processed
    JDL with them; not the random pick keys)."""
    first = ids[0]
    wanted = jobs.c.job_id.between(ids[0], ids[-1])
    out: list[object] = []
    rows = conn.execute(sa.select(jobs).where(wanted).order_by(jobs.c.job_id)).mappings()
    out.append([{**r, "job_id": r["job_id"] - first} for r in rows])
    for table, order in ((job_logging, job_logging.c.id), (job_jdls, job_jdls.c.job_id),
                         (input_data, input_data.c.lfn), (tq_jobs, tq_jobs.c.job_id)):
        rows = conn.execute(sa.select(table).where(table.c.job_id.between(ids[0], ids[-1]))
                            .order_by(order)).mappings()
        out.append([{k: (v - first if k == "job_id" else v) for k, v in r.items()
                     if k not in ("id", "processed_jdl", "pick_key")} for r in rows])
    text = [t.replace(f"JobID = {first + n};", f"JobID = {n};")
            for n, t in enumerate(jobs_db.jdls_of(conn, ids).values())]
    out.append(text)
    return out


def counted(conn: Connection) -> dict[tuple[object, ...], int]:
    """The folded counters, every counted column."""
    dims = [c for c in counters.job_counters.c if c.name not in ("id", "n")]
    return {tuple(r[:-1]): int(r[-1]) for r in conn.execute(
        sa.select(*dims, counters.job_counters.c.n))}


def test_optimised_as_stored_is_what_optimise_new_after_storing_stores(engine: Engine) -> None:
    jdls = optimised_jdls(1205)  # more than one 1,000-row statement
    now = datetime(2026, 12, 5, 0, 0, tzinfo=timezone.utc)
    counts: list[dict[object, int]] = []

    def after(conn: Connection, result: submission.SubmitResult, when: datetime) -> None:
        optimizer.optimise_new(conn, result.descriptions, enqueue=enqueue_new, now=when,
                               check_input_data=check)

    old = submission.submit_many(engine, jdls, WHO, DEFAULT_LIMITS, now, on_stored=after)
    with engine.begin() as conn:
        counters.fold(conn)
        counts.append(counted(conn))
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute",
                    lambda *args: statements.append(args[2]))
    new = submission.submit_many(engine, jdls, WHO, DEFAULT_LIMITS, now,
                                 optimise=optimizer.NewJobsOptimiser(enqueue_new, check))
    with engine.begin() as conn:
        counters.fold(conn)
        counts.append(counted(conn))
        assert stored_as(conn, new.job_ids) == stored_as(conn, old.job_ids)
        statuses = dict(conn.execute(sa.select(jobs.c.status, sa.func.count()).where(
            jobs.c.job_id.in_(new.job_ids)).group_by(jobs.c.status)).all())
    assert set(statuses) == {"Failed", "Waiting"}, statuses  # both paths taken
    # no UPDATE of the jobs to be Waiting: only the failed ones are (status and end time, as
    # optimise_new does it)
    updates = [s for s in statements if s.lstrip().upper().startswith("UPDATE JOBS")]
    assert updates and all("end_exec_time" in s for s in updates)
    # the counts moved by the second batch are the first batch's
    assert {k: v - counts[0].get(k, 0) for k, v in counts[1].items()} == counts[0]
