"""Two copies of every agent at once make no duplicate task, job or request, on both
databases; also when both copies work on the same transformations (as during a change of
peers), which exercises the claims and the compare-and-set updates themselves."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa

from core.db import init_schema, write_transaction
from core.tables import FRAMEWORK_SCHEMA
from dms.db.rms import rms_requests
from tests.transformation.conftest import DATA, MANAGER, World
from transformation.agents.monitor import TransformationMonitor
from transformation.agents.task_agents import RequestTaskAgent, WorkflowTaskAgent
from transformation.agents.transformation_agent import TransformationAgent
from transformation.db.tables import task_files
from transformation.db.tables import tasks as ts_tasks
from transformation.logic import transformations as logic
from wms.db.tables import jobs

TEMPLATE = '[Executable = "/bin/true"; CPUTime = 600;]'
AGENTS = (TransformationAgent, WorkflowTaskAgent, RequestTaskAgent, TransformationMonitor)


def greedy(cls: type) -> type:
    """The agent without the split between copies: every copy takes every transformation."""
    return type(f"Greedy{cls.__name__}", (cls,), {"mine": lambda self, key: True})


def run_copies(world: World, classes: list[type], done: Any, timeout: float = 60) -> None:
    # the heartbeat table is made before the copies start: concurrent DDL on SQLite fails
    init_schema(world.engine, FRAMEWORK_SCHEMA)
    copies = [cls(world.config, instance=f"{cls.__name__}-{i}", period=0.05)
              for cls in classes for i in range(2)]
    threads = [threading.Thread(target=c.run, daemon=True) for c in copies]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    try:
        while not done():
            assert time.monotonic() < deadline, "the agents did not finish in time"
            time.sleep(0.2)
    finally:
        for c in copies:
            c.stop()
        for t in threads:
            t.join(30)


@pytest.mark.parametrize("split", [True, False], ids=["split", "overlap"])
def test_two_copies_make_no_duplicates(world: World, split: bool) -> None:
    world.field("kind", "string")
    tids = []
    for n in range(3):
        tids.append(logic.create(world.engine, world.catalog, world.settings, MANAGER, {
            "Name": f"reco{n}", "Type": "Processing", "GroupSize": 3, "Body": TEMPLATE,
            "InputMetaQuery": {"kind": f"raw{n}"}, "Status": "Active"}))
    tids.append(logic.create(world.engine, world.catalog, world.settings, MANAGER, {
        "Name": "repl", "Type": "Replication", "Plugin": "Broadcast", "GroupSize": 1,
        "Body": "ReplicateAndRegister", "TargetSE": ["DISK-B", "DISK-C"], "Status": "Active",
        "InputMetaQuery": {"kind": "raw0"}}))
    classes = [cls if split else greedy(cls) for cls in AGENTS]
    # files arrive while the agents run
    for n in range(3):
        world.register([f"{DATA}/r{n}/f{i:03d}" for i in range(60)])
        world.meta(f"{DATA}/r{n}", {"kind": f"raw{n}"})

    def all_submitted() -> bool:
        with world.engine.connect() as conn:
            pending = conn.execute(sa.select(sa.func.count()).select_from(ts_tasks).where(
                ts_tasks.c.status.in_(["Created", "Reserved"]))).scalar_one()
            total = conn.execute(sa.select(sa.func.count()).select_from(ts_tasks)
                                 ).scalar_one()
        return total == 3 * 20 + 120 and not pending

    run_copies(world, classes, all_submitted)
    with world.engine.connect() as conn:
        links = conn.execute(sa.select(task_files.c.transformation_id,
                                       task_files.c.file_id)).fetchall()
        task_rows = conn.execute(sa.select(ts_tasks)).fetchall()
        job_rows = conn.execute(sa.select(jobs.c.job_id, jobs.c.job_name)).fetchall()
        requests = conn.execute(sa.select(rms_requests.c.request_id, rms_requests.c.name)
                                ).fetchall()
    job_links = [(t, f) for t, f in links if t != tids[3]]
    assert len(job_links) == len(set(job_links)) == 180  # no file in two tasks
    repl = [(t, f) for t, f in links if t == tids[3]]
    assert len(repl) == 120 and len(set(repl)) == 60  # one task per file and target SE
    names = [name for _id, name in job_rows]
    assert len(names) == len(set(names)) == 60  # one job per task
    assert sorted(str(j) for j, _n in job_rows) == sorted(
        t.external_id for t in task_rows if t.transformation_id != tids[3])
    assert len(requests) == len({n for _i, n in requests}) == 120  # one request per task
    for tid in tids:
        assert logic.file_stats(world.engine, tid).get("Assigned") == 60


def test_two_mc_extension_copies_never_pass_the_target(world: World) -> None:
    from transformation.agents.mc_extension import MCExtensionAgent

    tid = logic.create(world.engine, world.catalog, world.settings, MANAGER, {
        "Name": "sim", "Type": "MCSimulation", "Body": TEMPLATE, "MaxNumberOfTasks": 40,
        "Parameters": {"TasksInFlight": 15}, "Status": "Active"})
    peak = [0]

    def finish_some() -> bool:
        with write_transaction(world.engine) as conn:
            open_ids = list(conn.execute(sa.select(ts_tasks.c.task_id).where(
                ts_tasks.c.status == "Created")).scalars())
            peak[0] = max(peak[0], len(open_ids))
            conn.execute(ts_tasks.update().where(ts_tasks.c.task_id.in_(open_ids[:5]))
                         .values(status="Done"))
        return logic.get(world.engine, tid, "demo")["Status"] == "Completed"

    run_copies(world, [greedy(MCExtensionAgent)], finish_some)
    assert logic.task_stats(world.engine, tid) == {"Done": 40, "TotalCreated": 40}
    assert peak[0] <= 15
