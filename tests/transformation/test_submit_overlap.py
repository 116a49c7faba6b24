"""The WorkflowTaskAgent's overlapped batches (``SubmitOverlap``: batch N+1 claimed and
prepared while a writer thread stores and records batch N): the same jobs, tasks and rows as
serial batches, and a batch that fails to be stored leaves nothing half done (its tasks and
those of the batch prepared meanwhile are Created again, without jobs). On SQLite the
batches stay serial."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from tests.transformation.conftest import DATA, World, config_for
from tests.transformation.test_lifecycle import create, reco
from transformation.agents.task_agents import WorkflowTaskAgent
from transformation.agents.transformation_agent import TransformationAgent
from transformation.db.tables import tasks as ts_tasks
from transformation.logic import submit
from wms.db.tables import input_data, job_jdls, job_logging, jobs
from wms.db.tq_tables import tq_jobs

FILES = 14  # GroupSize 2: 7 tasks; SubmitBatch 2: 4 batches


class Recording(WorkflowTaskAgent):
    """Records its steps; ``hold``: the first store waits until the next batch is being
    prepared (so the test knows the batches overlapped); ``fail_at``: that store raises once
    the next batch is prepared."""

    hold = False
    fail_at: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.steps: list[tuple[str, int, str]] = []
        self.stores = 0
        self.prepared = threading.Event()

    def prepare(self, trans: Any, tasks: list[Any]) -> Any:
        self.steps.append(("prepare", tasks[0].task_id, threading.current_thread().name))
        out = super().prepare(trans, tasks)
        if self.stores:
            self.prepared.set()
        return out

    def store(self, trans: Any, prepared: Any) -> dict[int, int]:
        self.stores += 1
        number = self.stores
        self.steps.append(("store", prepared.task_ids[0], threading.current_thread().name))
        if self.overlap() and ((self.hold and number == 1) or self.fail_at == number):
            self.prepared.clear()
            assert self.prepared.wait(20), "the next batch was not prepared meanwhile"
        if self.fail_at == number:
            raise RuntimeError("the WMS database went away")
        return super().store(trans, prepared)


def _world(world: World, overlap: bool) -> tuple[World, int]:
    config = config_for(str(world.engine.url.render_as_string(hide_password=False)),
                        FilesMaxResetCounter=2, ReservedTimeout=1, SubmitBatch=2,
                        SubmitOverlap=overlap)
    world = World(world.engine, config, world.catalog)
    world.field("kind", "string")
    world.register([f"{DATA}/ov/f{i:02d}" for i in range(FILES)])
    world.meta(f"{DATA}/ov", {"kind": "raw"})
    tid = create(world, reco(Status="Active"))
    TransformationAgent(world.config, instance="t", period=0.1).run(once=True)
    return world, tid


def _snapshot(world: World, tid: int) -> dict[str, Any]:
    """Everything the submission wrote, with the job IDs replaced by task numbers (from the
    job names)."""
    with world.engine.connect() as conn:
        tasks = {r.task_id: (r.status, r.external_id, r.claimed_by) for r in conn.execute(
            sa.select(ts_tasks).where(ts_tasks.c.transformation_id == tid))}
        rows = {r.job_id: r for r in conn.execute(sa.select(jobs))}
        task_of = {j: int(r.job_name.rpartition("_")[2]) for j, r in rows.items()}
        assert all(str(j) == tasks[task_of[j]][1] for j in rows  # recorded: this job
                   if tasks[task_of[j]][0] == "Submitted")

        def by_task(table: sa.Table, *columns: sa.ColumnElement[Any]) -> list[tuple[Any, ...]]:
            return sorted((task_of[r[0]], *r[1:]) for r in conn.execute(
                sa.select(table.c.job_id, *columns)))

        return {
            "tasks": {t: s for t, (s, _e, _c) in tasks.items()},
            "jobs": sorted((task_of[j], r.status, r.minor_status, r.job_name, r.site)
                           for j, r in rows.items()),
            "jdls": by_task(job_jdls, job_jdls.c.original_jdl, job_jdls.c.scheduling),
            "processed": sorted(task_of[j] for j, in conn.execute(
                sa.select(job_jdls.c.job_id).where(job_jdls.c.processed_jdl.is_not(None)))),
            "input_data": by_task(input_data, input_data.c.lfn),
            "logging": by_task(job_logging, job_logging.c.status, job_logging.c.minor_status),
            "queued": sorted(task_of[j] for j, in conn.execute(sa.select(tq_jobs.c.job_id))),
        }


def test_overlapped_batches_store_what_serial_batches_store(world: World) -> None:
    overlapped, tid = _world(world, True)
    agent = Recording(overlapped.config, instance="o", period=0.1)
    agent.hold = agent.overlap()  # SQLite: serial, nothing to wait for
    agent.run(once=True)
    first = _snapshot(overlapped, tid)
    assert first["tasks"] == {n: "Submitted" for n in range(1, 8)}
    assert len(first["jobs"]) == 7 and {j[1] for j in first["jobs"]} == {"Waiting"}
    assert len(first["input_data"]) == FILES and first["queued"] == list(range(1, 8))
    assert [s[:2] for s in agent.steps if s[0] == "store"] == [
        ("store", 1), ("store", 3), ("store", 5), ("store", 7)]
    writers = {name for step, _task, name in agent.steps if step == "store"}
    main = {name for step, _task, name in agent.steps if step == "prepare"}
    if world.engine.dialect.name == "sqlite":
        assert not agent.overlap() and writers == main
    else:  # stored by the writer thread, batch 2 prepared while batch 1 was stored
        assert agent.overlap() and writers.isdisjoint(main)

    # the same transformation submitted serially, in a fresh database state
    with world.engine.begin() as conn:
        for table in (tq_jobs, job_logging, input_data, job_jdls, jobs):
            conn.execute(table.delete())
        conn.execute(ts_tasks.update().where(ts_tasks.c.transformation_id == tid).values(
            status="Created", external_id="", claimed_by=None))
    serial_world = World(world.engine, config_for(
        str(world.engine.url.render_as_string(hide_password=False)), SubmitBatch=2,
        SubmitOverlap=False), world.catalog)
    serial = Recording(serial_world.config, instance="s", period=0.1)
    assert not serial.overlap()
    serial.run(once=True)
    assert _snapshot(serial_world, tid) == first


@pytest.mark.parametrize("fail_at", [1, 2])
def test_a_failed_batch_leaves_nothing_half_done(world: World, fail_at: int) -> None:
    overlapped, tid = _world(world, True)
    agent = Recording(overlapped.config, instance="o", period=0.1)
    agent.fail_at = fail_at  # SQLite: serial batches, the same failure and release
    with pytest.raises(RuntimeError, match="went away"):
        agent.run_once()
    state = _snapshot(overlapped, tid)
    stored = 2 * (fail_at - 1)  # the batches before the failed one
    assert state["tasks"] == {n: "Submitted" if n <= stored else "Created"
                              for n in range(1, 8)}
    assert [j[0] for j in state["jobs"]] == list(range(1, stored + 1))
    with overlapped.engine.connect() as conn:
        claimed = conn.execute(sa.select(sa.func.count()).select_from(ts_tasks).where(
            ts_tasks.c.claimed_by.is_not(None), ts_tasks.c.status != "Submitted")).scalar_one()
    assert claimed == 0
    # the next cycle submits the rest, each task once
    agent.fail_at = None
    agent.run(once=True)
    state = _snapshot(overlapped, tid)
    assert state["tasks"] == {n: "Submitted" for n in range(1, 8)}
    assert [j[0] for j in state["jobs"]] == list(range(1, 8))


def test_a_failed_record_leaves_reserved_tasks_that_recovery_finds(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # recording batch 1 fails while batch 2 is being stored (overlap) or before it is
    # claimed (serial): the stored batches' tasks stay Reserved with their jobs, as after a
    # crash between storing and recording; the recovery finds every job by its name
    overlapped, tid = _world(world, True)
    agent = Recording(overlapped.config, instance="o", period=0.1)
    real = submit.record

    def failing(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("the transformation database went away")

    monkeypatch.setattr(submit, "record", failing)
    with pytest.raises(RuntimeError, match="went away"):
        agent.run_once()
    monkeypatch.setattr(submit, "record", real)
    state = _snapshot(overlapped, tid)
    stored = 4 if agent.overlap() else 2
    assert state["tasks"] == {n: "Reserved" if n <= stored else "Created" for n in range(1, 8)}
    with overlapped.engine.begin() as conn:  # the claims are old, their agent gone
        conn.execute(ts_tasks.update().values(
            last_update=datetime(2020, 1, 1, tzinfo=timezone.utc)))
    assert submit.recover_reserved(overlapped.engine, tid, 1, agent.lookup) == (stored, 0)
    Recording(overlapped.config, instance="p", period=0.1).run(once=True)
    state = _snapshot(overlapped, tid)
    assert state["tasks"] == {n: "Submitted" for n in range(1, 8)}
    assert [j[0] for j in state["jobs"]] == list(range(1, 8))  # one job per task
