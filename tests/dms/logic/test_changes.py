"""The catalog's change journal: written in the same transaction as each change (nothing for
a refused one), in order, with the kinds readers need; facts of a batch of files; pruning."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine

from core.db import init_schema, make_engine
from dms.db import changes
from dms.db.catalog import get_replicas, good_replica_ses, lfns_of
from dms.db.schema import DMS_SCHEMA
from dms.logic import metadata, namespace
from dms.logic.replicas import add_replicas, remove_replicas, set_replica_status
from dms.logic.rights import CatalogSettings, Requester

CFG = CatalogSettings(vo_groups={"demo": "demo_user"})
ADMIN = Requester("admin", "dm_admin", "demo", admin=True)
ALICE = Requester("alice", "demo_user", "demo")
H = "/demo/user/a/alice"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_schema(eng, DMS_SCHEMA)
    yield eng
    eng.dispose()


def journal(engine: Engine, after: int = 0) -> list[tuple[str, int | None, int | None]]:
    with engine.connect() as conn:
        return [(c.kind, c.file_id, c.dir_id) for c in changes.read_since(conn, after, 100)]


def test_every_change_is_journaled_with_its_transaction(engine: Engine) -> None:
    metadata.add_field(engine, ADMIN, "run", "int")
    assert not namespace.add_files(engine, CFG, ALICE, {
        f"{H}/d/f{i}": {"Size": 1, "SE": "A", "GUID": f"g{i}"} for i in range(2)}).failed
    with engine.connect() as conn:
        ids = sorted(changes.file_facts(conn, [1, 2], columns=["size"]))
        assert lfns_of(conn, ids) == {1: f"{H}/d/f0", 2: f"{H}/d/f1"}
    refused = namespace.add_files(engine, CFG, Requester("bob", "g", "demo"), {
        f"{H}/d/x": {"Size": 1, "SE": "A", "GUID": "gx"}})
    assert refused.failed  # bob may not write there: nothing journaled
    add_replicas(engine, ALICE, {f"{H}/d/f0": {"SE": "B"}})
    metadata.set_metadata(engine, ALICE, f"{H}/d", {"run": 3})
    metadata.set_metadata(engine, ALICE, f"{H}/d/f1", {"run": 3})  # same value: no change
    remove_replicas(engine, ALICE, {f"{H}/d/f0": {"SE": "B"}})
    namespace.remove_files(engine, ALICE, [f"{H}/d/f1"])
    with engine.connect() as conn:
        dir_id = changes.file_facts(conn, [1])[1].dir_id
    assert journal(engine) == [("F+", 1, None), ("F+", 2, None), ("R+", 1, None),
                               ("D", None, dir_id), ("R-", 1, None), ("F-", 2, None)]
    with engine.connect() as conn:
        [facts] = changes.file_facts(conn, [1, 2], ["run"], ses=True).values()
    assert (facts.meta, facts.ses, facts.columns["size"]) == ({"run": 3}, {"A"}, 1)
    assert dir_id in facts.dirs and len(facts.dirs) == 6  # /, demo, user, a, alice, d
    with engine.begin() as conn:
        assert changes.prune(conn, older_than=timedelta(days=1)) == 0
        assert changes.prune(conn, older_than=timedelta(seconds=-5)) == 6


def test_a_catalog_of_version_0_gains_the_journal_on_upgrade(tmp_path: object) -> None:
    import sqlalchemy as sa

    from core.db import schema_version, upgrade_schema
    from dms.db import tables

    engine = make_engine(f"sqlite:///{tmp_path}/old.db")
    old = sa.MetaData()
    for table in tables.metadata.sorted_tables:
        if table.name != "fc_changes":
            table.to_metadata(old)
    init_schema(engine, DMS_SCHEMA.__class__("DataManagement", old, migrations=[]))
    assert schema_version(engine, "DataManagement") == 0
    assert upgrade_schema(engine, DMS_SCHEMA) == 1
    with engine.connect() as conn:
        assert sa.inspect(conn).has_table("fc_changes")
    engine.dispose()


def test_good_replica_ses_is_the_lfn_and_replica_reads_joined(engine: Engine) -> None:
    """The transformation's input-data check reads LFNs and good replicas in one joined
    query: same answer as the two reads it replaced, on edge cases (no replica, a replica
    not AprioriGood, several SEs, unknown IDs, more IDs than one chunk)."""
    lfns = {f"{H}/g/f{i}": {"Size": 1, "SE": "A", "GUID": f"gg{i}"} for i in range(1203)}
    assert not namespace.add_files(engine, CFG, ALICE, lfns).failed
    add_replicas(engine, ALICE, {f"{H}/g/f0": {"SE": "B"}, f"{H}/g/f1": {"SE": "B"}})
    assert not set_replica_status(
        engine, ALICE, {f"{H}/g/f1": {"SE": "A", "Status": "Problematic"}}).failed
    remove_replicas(engine, ALICE, {f"{H}/g/f2": {"SE": "A"}})
    with engine.connect() as conn:
        ids = list(lfns_of(conn, range(1, 1300)))
        got = good_replica_ses(conn, [*ids, ids[0], 999_999])
        by_id = get_replicas(conn, ids, all_status=False)
        before = {lfn: sorted(by_id.get(f, {})) for f, lfn in lfns_of(conn, ids).items()}
    assert {lfn: sorted(ses) for lfn, ses in got.items()} == before
    assert len(got) == 1203
    assert sorted(got[f"{H}/g/f0"]) == ["A", "B"]
    assert got[f"{H}/g/f1"] == ["B"]  # the Problematic replica at A is not good
    assert got[f"{H}/g/f2"] == []  # no replica left: present, with no SE
    assert got[f"{H}/g/f3"] == ["A"]


@pytest.mark.parametrize("short_concat", [False, True])
def test_good_replica_ses_grouped_reads_fall_back_exactly(engine: Engine,
                                                          short_concat: bool) -> None:
    """The names come grouped by directory and SE: a name holding the separator (a comma),
    and on MariaDB a group_concat cut short (group_concat_max_len), make that batch read row
    by row; runs of consecutive IDs and scattered IDs give the same answer."""
    lfns = {f"{H}/c/{'a,b' if i % 7 == 0 else 'f'}{i}": {"Size": 1, "SE": "A", "GUID": f"c{i}"}
            for i in range(60)}
    lfns.update({f"{H}/e{i % 3}/f{i}": {"Size": 1, "SE": "A", "GUID": f"e{i}"}
                 for i in range(60)})
    assert not namespace.add_files(engine, CFG, ALICE, lfns).failed
    add_replicas(engine, ALICE, {f"{H}/e1/f1": {"SE": "B"}, f"{H}/c/a,b0": {"SE": "B"}})
    remove_replicas(engine, ALICE, {f"{H}/e2/f2": {"SE": "A"}})
    with engine.connect() as conn:
        if short_concat and engine.dialect.name != "sqlite":  # SQLite: no length limit
            conn.exec_driver_sql("SET SESSION group_concat_max_len = 8")
        every = sorted(lfns_of(conn, range(1, 200)))
        for ids in (every, every[::2], every[5:9]):
            got = good_replica_ses(conn, ids)
            by_id = get_replicas(conn, ids, all_status=False)
            want = {lfn: sorted(by_id.get(f, {})) for f, lfn in lfns_of(conn, ids).items()}
            assert {lfn: sorted(ses) for lfn, ses in got.items()} == want
            if ids is every:
                assert sorted(got[f"{H}/c/a,b0"]) == ["A", "B"] and got[f"{H}/e2/f2"] == []
