"""What the journal step reads from the catalog when it groups files as they are attached
(``tasks.Grouper``), on both databases: the files' names come with their facts, so the LFNs of
the tasks' input vectors need no second read of the catalog's files, and they are the LFNs the
catalog gives."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from tests.transformation.conftest import DATA, MANAGER, World
from transformation.db.tables import tasks as ts_tasks
from transformation.logic import catalog as catalog_logic
from transformation.logic import inputs, tasks
from transformation.logic import transformations as logic
from transformation.logic.catalog import CatalogView

TEMPLATE = '[Executable = "/bin/sh"; CPUTime = 600;]'


def test_grouped_files_need_no_second_read_of_their_names(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.field("kind", "string")
    inputs.follow_journal(world.engine, world.catalog)  # the watermark
    tid = logic.create(world.engine, world.catalog, world.settings, MANAGER, {
        "Name": "t", "Type": "Processing", "GroupSize": 3, "Body": TEMPLATE,
        "InputMetaQuery": {"kind": "raw"}, "Status": "Active"})
    lfns = [f"{DATA}/x/y{i % 2}/f{i}" for i in range(6)]
    world.register(lfns + [f"{DATA}/other/g0"])
    world.meta(f"{DATA}/x", {"kind": "raw"})
    calls: list[Any] = []
    real = catalog_logic.cat_db.lfns_of

    def counting(conn: Any, file_ids: Any) -> dict[int, str]:
        calls.append(list(file_ids))
        return real(conn, file_ids)

    monkeypatch.setattr(catalog_logic.cat_db, "lfns_of", counting)
    view = CatalogView(world.engine)
    report = inputs.follow_journal(world.engine, view, grouper=tasks.Grouper(view, {}))
    assert report.attached == {tid: 6}
    assert calls == []  # the names came with the facts
    with world.engine.connect() as conn:
        vectors = sorted(conn.execute(sa.select(ts_tasks.c.input_vector).where(
            ts_tasks.c.transformation_id == tid)).scalars())
    assert sorted(x for v in vectors for x in v.split("\n")) == sorted(lfns)
    # the remembered LFNs are the catalog's own, for the matching files only
    ids = CatalogView(world.engine).file_ids(lfns + [f"{DATA}/other/g0"])
    monkeypatch.setattr(catalog_logic.cat_db, "lfns_of", real)
    assert view.lfns([ids[x] for x in lfns]) == {ids[x]: x for x in lfns}
    assert ids[f"{DATA}/other/g0"] not in view._lfns  # noqa: SLF001


def test_facts_of_files_in_shared_directories(world: World) -> None:
    # files of one directory share its ancestors and inherited values; a file's own values
    # are added for that file only
    world.field("kind", "string")
    world.field("run", "int")
    world.field("tag", "string")
    lfns = [f"{DATA}/p/q/f{i}" for i in range(3)] + [f"{DATA}/p/r/g{i}" for i in range(2)]
    world.register(lfns)
    world.meta(f"{DATA}/p", {"kind": "raw"})
    world.meta(f"{DATA}/p/q", {"run": 1})
    world.meta(f"{DATA}/p/r", {"run": 2})
    world.meta(f"{DATA}/p/q/f1", {"tag": "x"})
    view = CatalogView(world.engine)
    ids = view.file_ids(lfns)
    facts = view.facts(list(ids.values()), ["kind", "run", "tag"], ses=True,
                       columns=["size"])
    metas = {x: facts[ids[x]].meta for x in lfns}
    assert metas == {lfns[0]: {"kind": "raw", "run": 1},
                     lfns[1]: {"kind": "raw", "run": 1, "tag": "x"},
                     lfns[2]: {"kind": "raw", "run": 1}, lfns[3]: {"kind": "raw", "run": 2},
                     lfns[4]: {"kind": "raw", "run": 2}}
    q, r, p = (view.dir_id(f"{DATA}/p/{d}".rstrip("/")) for d in ("q", "r", ""))
    assert {x: {p, q, r} & facts[ids[x]].dirs for x in lfns} == {
        lfns[0]: {p, q}, lfns[1]: {p, q}, lfns[2]: {p, q}, lfns[3]: {p, r}, lfns[4]: {p, r}}
    assert all(facts[f].ses == {"DISK-A"} and facts[f].columns == {"size": 10}
               for f in ids.values())
    plain = view.facts(list(ids.values()), ["tag"], columns=[])
    assert all(plain[f].ses == set() for f in ids.values())
    assert {x: plain[ids[x]].meta for x in lfns} == {x: {"tag": "x"} if x == lfns[1] else {}
                                                     for x in lfns}
