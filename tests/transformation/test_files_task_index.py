"""``ts_files.task_id`` without its index (migration 0 -> 1 of the Transformation schema):
the upgrade and downgrade on both databases, and file selections by TaskID, which now find
the files through ``ts_task_files``, with the same answers."""

from __future__ import annotations

import sqlalchemy as sa

from core import migrations
from tests.transformation.conftest import DATA, MANAGER, World
from transformation.agents.transformation_agent import TransformationAgent
from transformation.db.schema import (
    FILES_TASK_INDEX,
    FILES_TASK_INDEX_STEP,
    TRANSFORMATION_SCHEMA,
)
from transformation.logic import files as files_logic
from transformation.logic import transformations as logic


def indexes(world: World) -> set[str]:
    with world.engine.connect() as conn:
        return {ix["name"] for ix in sa.inspect(conn).get_indexes("ts_files")}


def grouped(world: World) -> int:
    world.field("kind", "string")
    world.register([f"{DATA}/g/f{i}" for i in range(6)])
    world.meta(f"{DATA}/g", {"kind": "raw"})
    tid = logic.create(world.engine, world.catalog, world.settings, MANAGER, {
        "Name": "g", "Type": "Processing", "GroupSize": 2, "Body": '[Executable = "x";]',
        "InputMetaQuery": {"kind": "raw"}, "Status": "Active"})
    TransformationAgent(world.config, instance="a", period=0.1).run(once=True)
    return tid


def by_task(world: World, tid: int, task: object) -> list[tuple[int, int | None]]:
    rows = files_logic.get_files(world.engine, None, "demo",
                                 {"TransformationID": tid, "TaskID": task})
    return sorted((r["FileID"], r["TaskID"]) for r in rows)


def test_upgrade_drops_the_index_and_downgrade_makes_it_again(world: World) -> None:
    tid = grouped(world)
    assert FILES_TASK_INDEX not in indexes(world)  # a new schema is made without it
    step = TRANSFORMATION_SCHEMA.migrations.index(FILES_TASK_INDEX_STEP)
    assert migrations.downgrade_schema(world.engine, TRANSFORMATION_SCHEMA, step) == step
    assert FILES_TASK_INDEX in indexes(world)
    before = by_task(world, tid, 2)
    assert migrations.upgrade_schema(world.engine, TRANSFORMATION_SCHEMA) == \
        TRANSFORMATION_SCHEMA.latest
    assert FILES_TASK_INDEX not in indexes(world)
    with world.engine.begin() as conn:  # re-runnable: nothing to drop, nothing to make
        FILES_TASK_INDEX_STEP.upgrade(conn)
        FILES_TASK_INDEX_STEP.downgrade(conn)
        FILES_TASK_INDEX_STEP.downgrade(conn)
        FILES_TASK_INDEX_STEP.upgrade(conn)
        FILES_TASK_INDEX_STEP.upgrade(conn)
    assert FILES_TASK_INDEX not in indexes(world)
    assert by_task(world, tid, 2) == before and len(before) == 2


def test_selection_by_task_follows_the_files_current_task(world: World) -> None:
    tid = grouped(world)
    everything = files_logic.get_files(world.engine, None, "demo", {"TransformationID": tid})
    tasks = {r["FileID"]: r["TaskID"] for r in everything}
    assert sorted(tasks.values()) == [1, 1, 2, 2, 3, 3]
    of_two = sorted(f for f, t in tasks.items() if t == 2)
    assert by_task(world, tid, 2) == [(f, 2) for f in of_two]
    assert by_task(world, tid, "2") == [(f, 2) for f in of_two]
    assert [t for _f, t in by_task(world, tid, [1, 3])] == [1, 1, 3, 3]
    assert by_task(world, tid, []) == [] and by_task(world, tid, 9) == []
    # a file back to Unused leaves its task (the link stays in ts_task_files): not selected
    files_logic.set_file_status(world.engine, MANAGER, tid, {of_two[0]: ("Unused", False)})
    assert by_task(world, tid, 2) == [(of_two[1], 2)]
    assert by_task(world, tid, None) == [(of_two[0], None)]
    assert by_task(world, tid, [None, 2]) == [(of_two[1], 2)]  # as before: an IN list
