"""The journal step by chunks (``inputs.CHUNK``) and without reading replica changes, on both
databases: a batch split into chunks attaches and groups the same files as one chunk (the
files a chunk leaves Unused are grouped with the next chunk's), in one transaction that moves
the watermark; a failing write leaves nothing; replica changes no query needs are not read,
yet a recent gap in the journal's IDs still stops the batch."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from core.db import utcnow, write_transaction
from dms.db import changes as journal
from tests.transformation.conftest import DATA, MANAGER, World
from transformation.db import queries as db
from transformation.db.tables import files as ts_files
from transformation.db.tables import task_files
from transformation.logic import inputs, tasks
from transformation.logic import transformations as logic

TEMPLATE = '[Executable = "/bin/sh"; CPUTime = 600;]'


def make(world: World, name: str, query: dict[str, Any], group: int = 3) -> int:
    return logic.create(world.engine, world.catalog, world.settings, MANAGER, {
        "Name": name, "Type": "Processing", "GroupSize": group, "Body": TEMPLATE,
        "InputMetaQuery": query, "Status": "Active"})


def state(world: World, tid: int) -> tuple[dict[int, str], list[list[int]]]:
    """(file -> status, the tasks' files) of transformation ``tid``."""
    with world.engine.connect() as conn:
        status = dict(conn.execute(sa.select(ts_files.c.file_id, ts_files.c.status).where(
            ts_files.c.transformation_id == tid)).all())
        by_task: dict[int, list[int]] = {}
        for task, fid in conn.execute(sa.select(task_files.c.task_id, task_files.c.file_id)
                                      .where(task_files.c.transformation_id == tid)):
            by_task.setdefault(task, []).append(fid)
    return status, sorted(sorted(v) for v in by_task.values())


@pytest.mark.parametrize("chunk", [3, 7, 1000])
def test_chunks_give_what_one_chunk_gives(world: World, chunk: int,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Twenty files in two directories, two transformations: with chunks of 3 or 7 files
    (leftovers of each chunk carried over to the next) the tasks are those of one chunk:
    the Standard plugin's groups of consecutive file IDs."""
    world.field("kind", "string")
    world.field("run", "int")
    inputs.follow_journal(world.engine, world.catalog)  # the watermark
    a = make(world, "a", {"kind": "raw"})
    b = make(world, "b", {"kind": "raw", "run": {">=": 2}}, group=4)
    lfns = [f"{DATA}/d{i % 2 + 1}/f{i:02d}" for i in range(20)]
    world.register(lfns)
    world.meta(f"{DATA}/d1", {"kind": "raw", "run": 1})
    world.meta(f"{DATA}/d2", {"kind": "raw", "run": 2})
    monkeypatch.setattr(inputs, "CHUNK", chunk)
    monkeypatch.setattr(inputs, "CHUNK_DEFERRED", chunk)  # SQLite's
    report = inputs.follow_journal(world.engine, world.catalog,
                                   grouper=tasks.Grouper(world.catalog, {}))
    assert report.attached == {a: 20, b: 10}
    ids = world.catalog.file_ids(lfns)
    every = sorted(ids.values())
    second = sorted(ids[x] for x in lfns if "/d2/" in x)
    status, by_task = state(world, a)
    assert by_task == [every[i:i + 3] for i in range(0, 18, 3)]
    assert status == {f: "Assigned" if f in every[:18] else "Unused" for f in every}
    status, by_task = state(world, b)
    assert by_task == [second[0:4], second[4:8]]
    assert status == {f: "Assigned" if f in second[:8] else "Unused" for f in second}
    with world.engine.connect() as conn:
        assert db.get_state(conn, inputs.WATERMARK) == journal.last_id(conn)
        assert db.get_transformation(conn, a).next_task == 7  # type: ignore[union-attr]


def test_a_failing_write_leaves_nothing(world: World,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    world.field("kind", "string")
    inputs.follow_journal(world.engine, world.catalog)
    tid = make(world, "a", {"kind": "raw"})
    world.register([f"{DATA}/e/f{i}" for i in range(7)])
    world.meta(f"{DATA}/e", {"kind": "raw"})
    with world.engine.connect() as conn:
        before = db.get_state(conn, inputs.WATERMARK)
    monkeypatch.setattr(inputs, "CHUNK", 2)
    monkeypatch.setattr(inputs, "CHUNK_DEFERRED", 2)
    calls = []
    real = db.add_files

    def failing(conn: Any, *args: Any, **kwargs: Any) -> int:
        calls.append(args[0])
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real(conn, *args, **kwargs)

    monkeypatch.setattr(db, "add_files", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        inputs.follow_journal(world.engine, world.catalog)  # no grouper: add_files
    assert len(calls) == 3
    with world.engine.connect() as conn:
        assert db.get_state(conn, inputs.WATERMARK) == before
    assert state(world, tid) == ({}, [])
    monkeypatch.setattr(db, "add_files", real)
    report = inputs.follow_journal(world.engine, world.catalog)
    assert report.attached == {tid: 7}


def test_replica_changes_not_read_and_the_gap_check(world: World,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    world.field("kind", "string")
    inputs.follow_journal(world.engine, world.catalog)
    tid = make(world, "a", {"kind": "raw"})
    world.register([f"{DATA}/g/f{i}" for i in range(4)])
    ids = sorted(world.catalog.file_ids([f"{DATA}/g/f{i}" for i in range(4)]).values())
    with write_transaction(world.engine) as conn:  # replicas added to two of them
        journal.record(conn, journal.REPLICA_ADDED, file_ids=ids[:2])
    world.meta(f"{DATA}/g", {"kind": "raw"})
    read: list[frozenset[str]] = []
    real = journal.read_since

    def spying(conn: Any, after: int, limit: int, **kwargs: Any) -> list[journal.Change]:
        read.append(frozenset(kwargs.get("skip_kinds", ())))
        found = real(conn, after, limit, **kwargs)
        assert not any(c.kind in inputs.REPLICA_KINDS for c in found) or not kwargs
        return found

    monkeypatch.setattr(journal, "read_since", spying)
    report = inputs.follow_journal(world.engine, world.catalog)
    assert report.attached == {tid: 4} and read == [inputs.REPLICA_KINDS]
    with world.engine.connect() as conn:
        last = journal.last_id(conn)
        assert db.get_state(conn, inputs.WATERMARK) == last == report.watermark
    assert report.changes == 7  # 4 F+, 2 R+ and the D
    # a recent gap (a change still in flight) stops the batch before it, replica or not
    with write_transaction(world.engine) as conn:
        journal.record(conn, journal.REPLICA_ADDED, file_ids=[1, 2])
        journal.record(conn, journal.FILE_ADDED, file_ids=[3])
        gap = journal.last_id(conn) - 1  # the second R+
        conn.execute(journal.changes.delete().where(journal.changes.c.change_id == gap))
    read.clear()
    report = inputs.follow_journal(world.engine, world.catalog)
    assert report.watermark == gap - 1 and read == [inputs.REPLICA_KINDS, frozenset()]
    # once the gap is old, the batch goes past it
    with write_transaction(world.engine) as conn:
        conn.execute(journal.changes.update().where(journal.changes.c.change_id > gap)
                     .values(created=utcnow() - timedelta(seconds=inputs.GAP_WAIT + 5)))
    report = inputs.follow_journal(world.engine, world.catalog)
    assert report.watermark == gap + 1
