"""The bulk paths made cheaper for MariaDB keep their results, on both databases: recording
external IDs by task ranges, replica-only journal changes, task claims and file assignment."""

from __future__ import annotations

import doctest

import sqlalchemy as sa

from dms.logic import namespace
from dms.logic.replicas import add_replicas
from tests.transformation.conftest import CFG, DATA, DM_ADMIN, MANAGER, World
from transformation.agents.transformation_agent import TransformationAgent
from transformation.db.tables import files as ts_files
from transformation.db.tables import task_files
from transformation.db.tables import tasks as ts_tasks
from transformation.db.tables import transformations as ts_trans
from transformation.logic import inputs, submit
from transformation.logic import transformations as logic

TEMPLATE = '[Executable = "/bin/sh"; CPUTime = 600;]'


def make(world: World, **extra: object) -> int:
    return logic.create(world.engine, world.catalog, world.settings, MANAGER, {
        "Name": "t", "Type": "Processing", "GroupSize": 1, "Body": TEMPLATE,
        "Status": "Active", **extra})


def tasks_of(world: World, tid: int) -> dict[int, tuple[str, str, str | None]]:
    with world.engine.connect() as conn:
        return {r.task_id: (r.status, r.external_id, r.claimed_by) for r in conn.execute(
            sa.select(ts_tasks).where(ts_tasks.c.transformation_id == tid))}


def test_doctests() -> None:
    assert doctest.testmod(submit).failed == 0


def test_record_by_ranges_and_single_rows(world: World) -> None:
    world.field("kind", "string")
    world.register([f"{DATA}/r/f{i:02d}" for i in range(12)])
    world.meta(f"{DATA}/r", {"kind": "raw"})
    tid = make(world, InputMetaQuery={"kind": "raw"})
    TransformationAgent(world.config, instance="a", period=0.1).run(once=True)
    assert len(tasks_of(world, tid)) == 12
    token, claimed = submit.claim(world.engine, tid, "me", 10)
    assert [t.task_id for t in claimed] == list(range(1, 11))
    other, _ = submit.claim(world.engine, tid, "other", 1)  # task 11, not ours
    # runs 1-4 (IDs 1001-1004) and 6-8 (2006-2008); 5 alone; 9 not numeric; 10 a leading
    # zero (kept as text); 11 claimed by another token: untouched
    external = {1: "1001", 2: "1002", 3: "1003", 4: "1004", 5: "77", 6: "2006", 7: "2007",
                8: "2008", 9: "req-9", 10: "0100", 11: "3011"}
    assert submit.record(world.engine, tid, token, external) == 10
    got = tasks_of(world, tid)
    for task in range(1, 11):
        assert got[task][:2] == ("Submitted", external[task]), task
    assert got[11] == ("Reserved", "", other)
    assert got[12][0] == "Created"
    # a second record with the same token changes nothing (the tasks are no longer Reserved)
    assert submit.record(world.engine, tid, token, external) == 0


def test_replica_changes_count_for_queries_on_ses_only(world: World) -> None:
    world.field("kind", "string")
    world.register([f"{DATA}/s/f{i}" for i in range(3)], se="DISK-A")
    world.meta(f"{DATA}/s", {"kind": "raw"})
    on_se = make(world, Name="on-b", InputMetaQuery={"kind": "raw", "SE": "DISK-B"})
    plain = make(world, Name="plain", InputMetaQuery={"kind": "raw"})
    agent = TransformationAgent(world.config, instance="a", period=0.1)
    agent.run(once=True)  # reconciliation at creation
    with world.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(ts_files).where(
            ts_files.c.transformation_id == on_se)).scalar_one() == 0
    # a replica on DISK-B: only the R+ journal change says so
    added = add_replicas(world.engine, DM_ADMIN, {
        f"{DATA}/s/f1": {"SE": "DISK-B", "PFN": ""}})
    assert not added.failed
    report = inputs.follow_journal(world.engine, world.catalog)
    assert report.attached == {on_se: 1}
    with world.engine.connect() as conn:
        rows = conn.execute(sa.select(ts_files.c.transformation_id, sa.func.count())
                            .group_by(ts_files.c.transformation_id)).all()
    assert dict(rows) == {on_se: 1, plain: 3}
    # with no query on SEs, a replica change alone evaluates nothing
    with world.engine.begin() as conn:  # the query on SEs no longer attaches files
        conn.execute(ts_trans.update().where(ts_trans.c.transformation_id == on_se)
                     .values(status="Completed"))
    add_replicas(world.engine, DM_ADMIN, {f"{DATA}/s/f2": {"SE": "DISK-B",
                                                                     "PFN": ""}})
    report = inputs.follow_journal(world.engine, world.catalog)
    assert report.changes == 1 and report.files == 0 and report.attached == {}


def test_task_batches_by_range_or_list(world: World) -> None:
    from transformation.db import queries

    stmt = sa.select(ts_tasks.c.task_id).where(queries.among(ts_tasks.c.task_id, [3, 1, 2]))
    assert "BETWEEN" in str(stmt)
    assert "IN" in str(sa.select(ts_tasks.c.task_id).where(
        queries.among(ts_tasks.c.task_id, [1, 2, 4])))
    world.field("kind", "string")
    world.register([f"{DATA}/other/f{i}" for i in range(10)])  # the IDs below have 2 digits
    world.register([f"{DATA}/q/f{i}" for i in range(8)])
    world.meta(f"{DATA}/q", {"kind": "raw"})
    tid = make(world, InputMetaQuery={"kind": "raw"}, GroupSize=2)
    TransformationAgent(world.config, instance="a", period=0.1).run(once=True)
    with world.engine.connect() as conn:
        every = queries.files_of_tasks(conn, tid, [1, 2, 3, 4])  # a range
        some = queries.files_of_tasks(conn, tid, [4, 1, 3])  # a list
    assert sorted(every) == [1, 2, 3, 4] and all(len(f) == 2 for f in every.values())
    assert len({f for fs in every.values() for f in fs}) == 8
    assert some == {t: every[t] for t in (1, 3, 4)}
    with world.engine.connect() as conn:  # the joined IDs, then row by row, agree
        plain = {}
        for task, file_id in conn.execute(sa.select(task_files.c.task_id, task_files.c.file_id)
                                          .where(task_files.c.transformation_id == tid)):
            plain.setdefault(task, []).append(file_id)
        assert every == {t: sorted(f) for t, f in plain.items()}
        if conn.dialect.name != "sqlite":  # "11,12" cut to "11,1": read row by row
            conn.exec_driver_sql("SET SESSION group_concat_max_len = 4")
            short = queries.files_of_tasks(conn, tid, [1, 2, 3, 4])
            assert {t: sorted(f) for t, f in short.items()} == every
    with world.engine.begin() as conn:  # claims by range and by list
        assert queries.set_tasks(conn, tid, [1, 2], {"status": "Reserved"}) == 2
        assert queries.set_tasks(conn, tid, [2, 4], {"status": "Reserved"},
                                 only_status=["Created"]) == 1
    assert [v[0] for _k, v in sorted(tasks_of(world, tid).items())] == [
        "Reserved", "Reserved", "Created", "Reserved"]


def test_files_seen_again_by_later_batches_are_not_sent_again(world: World,
                                                               monkeypatch: object) -> None:
    """A directory's metadata change expands to every file below it; the files' own
    registrations, read by later batches of the same call, do not evaluate or send them
    again. Every file still ends attached once, to the transformations it matches."""
    from transformation.db import queries

    world.field("kind", "string")
    world.field("run", "int")
    namespace.create_directories(world.engine, CFG, DM_ADMIN, [f"{DATA}/dup"])
    raw = make(world, Name="raw", InputMetaQuery={"kind": "raw"})
    run7 = make(world, Name="run7", InputMetaQuery={"kind": "raw", "run": 7})
    inputs.follow_journal(world.engine, world.catalog)  # the watermark: the journal's end
    world.meta(f"{DATA}/dup", {"kind": "raw"})  # journaled before the files
    lfns = [f"{DATA}/dup/f{i:02d}" for i in range(20)]
    world.register(lfns)
    world.meta(lfns[13], {"run": 7})
    sent: list[tuple[int, int]] = []
    evaluated: list[int] = []
    add_files, facts = queries.add_files, world.catalog.facts

    def spy_add(conn: object, tid: int, fids: list[int], *args: object, **kw: object) -> int:
        sent.extend((tid, f) for f in fids)
        return add_files(conn, tid, fids, *args, **kw)  # type: ignore[arg-type]

    def spy_facts(fids: list[int], *args: object, **kw: object) -> object:
        evaluated.extend(fids)
        return facts(fids, *args, **kw)

    monkeypatch.setattr(queries, "add_files", spy_add)  # type: ignore[attr-defined]
    monkeypatch.setattr(world.catalog, "facts", spy_facts)  # type: ignore[attr-defined]
    report = inputs.follow_journal(world.engine, world.catalog, batch=6)
    assert report.attached == {raw: 20, run7: 1}
    assert len(sent) == len(set(sent)) == 21  # 39 before: files again in later batches
    both = world.catalog.file_ids([lfns[13]])[lfns[13]]  # attached to both: evaluated once
    assert evaluated.count(both) == 1 and len(set(evaluated)) == 20
    with world.engine.connect() as conn:
        rows = conn.execute(sa.select(ts_files.c.transformation_id, sa.func.count())
                            .group_by(ts_files.c.transformation_id)).all()
    assert dict(rows) == {raw: 20, run7: 1}


def test_attached_memory() -> None:
    memory = inputs.Attached()
    assert memory.unknown({1, 2, 3}, [10, 11]) == {1, 2, 3}
    memory.remember(10, [1, 2])
    assert memory.new(10, [1, 2, 3]) == [3] and memory.new(11, [1, 2]) == [1, 2]
    assert memory.unknown({1, 2, 3}, [10]) == {3}
    assert memory.unknown({1, 2, 3}, [10, 11]) == {1, 2, 3}  # not known attached to 11
    memory.remember(11, [2, 3])
    assert memory.unknown({1, 2, 3}, [10, 11]) == {1, 3}
    assert memory.unknown({1, 2, 3}, []) == {1, 2, 3}
    assert memory.size == 4
    full = inputs.Attached()
    full.size = inputs.ATTACHED_MEMORY - 1  # past the bound nothing more is remembered
    full.remember(10, [1, 2])
    assert full.new(10, [1, 2]) == [1, 2]
