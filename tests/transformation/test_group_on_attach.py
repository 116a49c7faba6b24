"""Grouping at attach time (``tasks.Grouper``, the TransformationAgent's journal step), on
both databases: files reaching an Active transformation through the journal are stored
already Assigned with their task, grouped together with its Unused files; the statuses
reported, the links and the task counter are what grouping after attaching gave; a plan that
no longer holds attaches the files Unused and stores nothing else."""

from __future__ import annotations

import sqlalchemy as sa

from core.db import utcnow, write_transaction
from tests.transformation.conftest import DATA, MANAGER, World
from transformation.db import queries as db
from transformation.db.tables import files as ts_files
from transformation.db.tables import task_files
from transformation.db.tables import tasks as ts_tasks
from transformation.logic import files as files_logic
from transformation.logic import inputs, tasks
from transformation.logic import transformations as logic

TEMPLATE = '[Executable = "/bin/sh"; CPUTime = 600;]'


def make(world: World, name: str = "t", **extra: object) -> int:
    return logic.create(world.engine, world.catalog, world.settings, MANAGER, {
        "Name": name, "Type": "Processing", "GroupSize": 2, "Body": TEMPLATE,
        "InputMetaQuery": {"kind": "raw"}, "Status": "Active", **extra})


def start(world: World) -> None:
    """Fields declared and the journal's watermark set (as a first agent cycle does)."""
    world.field("kind", "string")
    inputs.follow_journal(world.engine, world.catalog)


def grouper(world: World) -> tasks.Grouper:
    return tasks.Grouper(world.catalog, {"DISK-A": "LCG.There.org", "DISK-B": "LCG.Here.org"})


def file_rows(world: World, tid: int) -> dict[int, tuple[str, int | None, str]]:
    with world.engine.connect() as conn:
        return {r.file_id: (r.status, r.task_id, r.target_se) for r in conn.execute(
            sa.select(ts_files).where(ts_files.c.transformation_id == tid))}


def links(world: World, tid: int) -> dict[int, list[int]]:
    with world.engine.connect() as conn:
        return db.files_of_tasks(conn, tid, conn.execute(
            sa.select(ts_tasks.c.task_id).where(ts_tasks.c.transformation_id == tid))
            .scalars())


def test_journal_files_are_stored_assigned_with_their_tasks(world: World) -> None:
    start(world)
    tid = make(world)
    idle = make(world, "idle", Status="New")  # not Active: attached Unused, grouped later
    world.register([f"{DATA}/a/f{i}" for i in range(5)])
    world.meta(f"{DATA}/a", {"kind": "raw"})
    report = inputs.follow_journal(world.engine, world.catalog, grouper=grouper(world))
    assert report.attached == {tid: 5, idle: 5}
    rows = file_rows(world, tid)
    by_task = links(world, tid)
    assert sorted(by_task) == [1, 2] and sorted(len(v) for v in by_task.values()) == [2, 2]
    for task, fids in by_task.items():
        assert all(rows[f] == ("Assigned", task, "") for f in fids)
    [left] = [f for f, r in rows.items() if r[0] == "Unused"]
    assert rows[left] == ("Unused", None, "")  # GroupSize 2: the fifth waits
    assert {r[0] for r in file_rows(world, idle).values()} == {"Unused"}
    # what the service reports
    stats = logic.file_stats(world.engine, tid)
    assert stats == {"Assigned": 4, "Unused": 1, "Total": 5}
    listed = files_logic.get_files(world.engine, world.catalog, "demo",
                                   {"TransformationID": tid, "Status": "Assigned"})
    assert sorted(r["TaskID"] for r in listed) == [1, 1, 2, 2]
    assert all(r["LFN"].startswith(f"{DATA}/a/") for r in listed)
    with world.engine.connect() as conn:
        vectors = dict(conn.execute(sa.select(ts_tasks.c.task_id, ts_tasks.c.input_vector)
                                    .where(ts_tasks.c.transformation_id == tid)).all())
        assert db.get_transformation(conn, tid).next_task == 3  # type: ignore[union-attr]
    lfns = world.catalog.lfns(rows)
    assert vectors == {t: "\n".join(lfns[f] for f in fids) for t, fids in by_task.items()}
    # the next files are grouped with the one left Unused
    world.register([f"{DATA}/a/g{i}" for i in range(3)])
    inputs.follow_journal(world.engine, world.catalog, grouper=grouper(world))
    rows = file_rows(world, tid)
    assert [r[0] for r in rows.values()].count("Assigned") == 8
    assert left in links(world, tid)[3] + links(world, tid)[4]
    # the usual step finds nothing more to do; the idle transformation is grouped as before
    assert tasks.make_tasks(world.engine, world.catalog, tid, {}) == 0
    logic.change_status(world.engine, idle, "Active", "admin")
    assert tasks.make_tasks(world.engine, world.catalog, idle, {}) == 4


def test_broadcast_file_rows_take_their_first_task(world: World) -> None:
    start(world)
    tid = make(world, "repl", Type="Replication", Plugin="Broadcast", GroupSize=1,
               Body="ReplicateAndRegister", TargetSE=["DISK-B", "DISK-C"])
    world.register([f"{DATA}/b/f{i}" for i in range(2)])
    world.meta(f"{DATA}/b", {"kind": "raw"})
    inputs.follow_journal(world.engine, world.catalog, grouper=grouper(world))
    rows = file_rows(world, tid)
    by_task = links(world, tid)
    assert len(by_task) == 4  # one task per file and target SE
    with world.engine.connect() as conn:
        targets = dict(conn.execute(sa.select(ts_tasks.c.task_id, ts_tasks.c.target_se)
                                    .where(ts_tasks.c.transformation_id == tid)).all())
    for fid, (status, task, target) in rows.items():
        mine = sorted(t for t, fids in by_task.items() if fid in fids)
        assert len(mine) == 2 and status == "Assigned"
        assert (task, target) == (mine[0], targets[mine[0]])


def test_a_plan_that_no_longer_holds_attaches_the_files_unused(world: World) -> None:
    start(world)
    tid = make(world)
    world.register([f"{DATA}/c/f{i}" for i in range(4)])
    world.meta(f"{DATA}/c", {"kind": "raw"})
    ids = sorted(world.catalog.file_ids([f"{DATA}/c/f{i}" for i in range(4)]).values())
    plan = grouper(world).plan(world.engine, tid, ids)
    assert plan is not None and len(plan.specs) == 2 and plan.new == set(ids)
    # meanwhile one of the files is attached by hand (as a reconciliation would)
    files_logic.add_files(world.engine, world.catalog, MANAGER, tid, [f"{DATA}/c/f0"])
    with write_transaction(world.engine) as conn:
        assert inputs._attach_grouped(conn, grouper(world), plan, utcnow()) is None
        assert db.add_files(conn, tid, ids, utcnow()) == 3
    assert {r[0] for r in file_rows(world, tid).values()} == {"Unused"}
    with world.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(ts_tasks)).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(task_files)).scalar() == 0
        assert db.get_transformation(conn, tid).next_task == 1  # type: ignore[union-attr]
    # an Unused file grouped by another agent meanwhile: the same
    plan = grouper(world).plan(world.engine, tid, [])
    assert plan is None
    more = world.catalog.file_ids([f"{DATA}/c/f9"])
    assert more == {}
    world.register([f"{DATA}/c/f9"])
    new = list(world.catalog.file_ids([f"{DATA}/c/f9"]).values())
    plan = grouper(world).plan(world.engine, tid, new)
    assert plan is not None and sum(len(s.file_ids) for s in plan.specs) == 4
    assert tasks.make_tasks(world.engine, world.catalog, tid, {}) == 2
    with write_transaction(world.engine) as conn:
        assert inputs._attach_grouped(conn, grouper(world), plan, utcnow()) is None
    with world.engine.connect() as conn:
        assert db.get_transformation(conn, tid).next_task == 3  # type: ignore[union-attr]
    assert sum(len(v) for v in links(world, tid).values()) == 4


def test_no_plan_past_the_backlog_or_max_tasks(lite: World) -> None:
    start(lite)
    tid = make(lite, MaxNumberOfTasks=1)
    lite.register([f"{DATA}/d/f{i}" for i in range(6)])
    ids = sorted(lite.catalog.file_ids([f"{DATA}/d/f{i}" for i in range(6)]).values())
    files_logic.add_files(lite.engine, lite.catalog, MANAGER, tid, [f"{DATA}/d/f{i}"
                                                                    for i in range(3)])
    small = tasks.Grouper(lite.catalog, {}, backlog=2)
    assert small.plan(lite.engine, tid, ids[3:]) is None  # 3 Unused files: past the backlog
    plan = grouper(lite).plan(lite.engine, tid, ids[3:])
    assert plan is not None and [s.file_ids for s in plan.specs] == [ids[:2]]  # MaxTasks 1
    with write_transaction(lite.engine) as conn:
        assert inputs._attach_grouped(conn, grouper(lite), plan, utcnow()) == 3
    assert sorted(r[0] for r in file_rows(lite, tid).values()) == \
        ["Assigned", "Assigned", "Unused", "Unused", "Unused", "Unused"]
    assert grouper(lite).plan(lite.engine, tid, [ids[-1] + 1000]) is None  # no room left
