"""Catalog calls naming 40,000 existing files (more than SQLite's 32,766 bound parameters) on
SQLite and MariaDB: the replicas' statuses and the LFNs of GUIDs (``core.in_values``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from core.db import init_schema, make_engine
from dms.db.schema import DMS_SCHEMA
from dms.logic import access, namespace
from dms.logic.rights import CatalogSettings, Requester

CFG = CatalogSettings(vo_groups={"demo": "demo_user"})
ADMIN = Requester("admin", "dm_admin", "demo", admin=True)
LONG = 40_000


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_schema(eng, DMS_SCHEMA)
    yield eng
    eng.dispose()


def test_40000_files_in_one_call(engine: Engine) -> None:
    lfns = [f"/demo/many/d{i % 20}/f{i}" for i in range(LONG)]
    added = namespace.add_files(engine, CFG, ADMIN, {
        lfn: {"Size": 1, "SE": "DISK-A", "GUID": f"G{i}"} for i, lfn in enumerate(lfns)})
    assert added.failed == {}
    statuses = access.replica_status(engine, ADMIN, dict.fromkeys(lfns, "DISK-A"))
    assert statuses.failed == {} and len(statuses.successful) == LONG
    assert set(statuses.successful.values()) == {"AprioriGood"}
    found = access.lfns_for_guids(engine, ADMIN, [f"G{i}" for i in range(LONG)] + ["NOPE"])
    assert len(found.successful) == LONG and found.successful["G7"] == lfns[7]
    assert list(found.failed) == ["NOPE"]
