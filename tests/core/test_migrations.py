"""Schema upgrades through Alembic on SQLite and MariaDB: databases made by the runner of
``main`` before the switch (tests/support/legacy_schema.py) upgrade in place with their jobs,
files and tokens; fresh init, idempotent re-upgrade, failures, downgrades, concurrency."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core import migrations
from core.auth import tables as auth_tables
from core.cli.dbcmd import installed_schemas
from core.db import (
    Schema,
    init_schema,
    make_engine,
    schema_version,
    upgrade_schema,
    utcnow,
    write_transaction,
)
from core.exceptions import DatabaseError
from dms.db import changes
from dms.db import tables as fc
from tests.support import legacy_schema
from tests.support.demo_schema import demo, steps_log
from wms.db import jobs as jobs_db
from wms.db import outbox, scheduling_tables

ROOT = Path(__file__).resolve().parents[2]


# -- a database of the old runner --------------------------------------------------------------


def _legacy_database(engine: Engine, rewind: bool) -> None:
    """Every installed schema made by the old runner. ``rewind``: WMS back at version 1 (no
    outbox, events or schedules yet) and DataManagement at 0 (no change journal), as an
    older release left them: the tables those steps add dropped, the version set back."""
    for schema in installed_schemas():
        assert legacy_schema.init_schema(engine, schema) == schema.latest
    if not rewind:
        return
    with engine.begin() as conn:
        for table in (*reversed(scheduling_tables.SCHEDULING_TABLES),
                      outbox.monitoring_outbox, changes.changes):
            table.drop(conn)
        for system, version in (("WorkloadManagement", 1), ("DataManagement", 0)):
            conn.execute(sa.update(legacy_schema.schema_versions)
                         .where(legacy_schema.schema_versions.c.system == system)
                         .values(version=version))


def _fill(engine: Engine) -> list[int]:
    """Jobs, a directory with files and replicas, a refresh token; the job IDs."""
    now = utcnow()
    with write_transaction(engine) as conn:
        ids = jobs_db.insert_jobs(conn, [
            jobs_db.NewJob(owner=owner, owner_group="demo_user", vo="demo", status="Received",
                           minor_status="Job accepted", original_jdl=f"[Executable = {n};]")
            for n, owner in enumerate(["alice", "alice", "bob"])], now=now, source="test")
        jobs_db.update_jobs(conn, ids[:1], status="Done")
        conn.execute(sa.insert(fc.directories).values(
            dir_id=1, parent_id=None, path="/demo", path_hash="h-demo", owner="alice",
            owner_group="demo_user", mode=0o755, created=now, modified=now))
        conn.execute(sa.insert(fc.storage_elements).values(se_id=1, name="DISK-SE"))
        for n in range(2):
            conn.execute(sa.insert(fc.files).values(
                file_id=n + 1, dir_id=1, name=f"f{n}.dat", size=1000 + n, checksum="ad1e",
                checksum_type="Adler32", guid=f"guid-{n}", owner="alice",
                owner_group="demo_user", mode=0o644, created=now, modified=now))
            conn.execute(sa.insert(fc.replicas).values(
                file_id=n + 1, se_id=1, pfn=f"root://se/f{n}.dat", created=now))
        conn.execute(sa.insert(auth_tables.refresh_tokens).values(
            token_hash="t" * 64, family="fam", client_id="pilotwms-cli", username="alice",
            group_name="demo_user", scope="openid", access_jti="jti-1",
            access_expires=now, status="active", created=now, expires=now))
    return ids


def _snapshot(engine: Engine) -> dict[str, list[Any]]:
    tables = {"jobs": jobs_db.jobs, "fc_files": fc.files, "fc_replicas": fc.replicas,
              "fc_directories": fc.directories,
              "auth_refresh_tokens": auth_tables.refresh_tokens}
    with engine.connect() as conn:
        return {name: [tuple(row) for row in conn.execute(
            sa.select(table).order_by(*table.primary_key.columns))]
            for name, table in tables.items()}


def _assert_at_head(engine: Engine) -> None:
    for schema in installed_schemas():
        status = migrations.status(engine, schema)
        assert status.version == schema.latest, status
        assert status.revision == status.head == f"{migrations.slug(schema.system)}_" \
            f"{schema.latest:04d}"
        assert legacy_schema.schema_version(engine, schema.system) == schema.latest
    names = set(sa.inspect(engine).get_table_names())
    for schema in installed_schemas():
        assert set(schema.metadata.tables) <= names, schema.system


@pytest.mark.parametrize("rewind", [False, True], ids=["main-before-switch", "older-release"])
def test_a_database_of_the_old_runner_upgrades_in_place(db_url: str, rewind: bool) -> None:
    engine = make_engine(db_url)
    _legacy_database(engine, rewind)
    ids = _fill(engine)
    before = _snapshot(engine)
    assert not any(t.startswith("alembic_version") for t in sa.inspect(engine).get_table_names())
    for schema in installed_schemas():
        assert upgrade_schema(engine, schema) == schema.latest
    _assert_at_head(engine)
    assert _snapshot(engine) == before  # jobs, files, replicas, tokens: all intact
    with engine.connect() as conn:
        assert jobs_db.status_of(conn, ids)[ids[0]].status == "Done"
        if rewind:  # the migrations ran: the outbox is there, empty
            assert conn.execute(sa.select(sa.func.count()).select_from(
                outbox.monitoring_outbox)).scalar() == 0
    for schema in installed_schemas():  # idempotent
        assert upgrade_schema(engine, schema) == schema.latest
    _assert_at_head(engine)
    assert _snapshot(engine) == before
    # an older pilotwms, which knows fewer steps, refuses the upgraded database
    wms = next(s for s in installed_schemas() if s.system == "WorkloadManagement")
    older = Schema(wms.system, wms.metadata, migrations=list(wms.migrations)[:-1])
    with pytest.raises(DatabaseError, match="newer than this pilotwms"):
        legacy_schema.upgrade_schema(engine, older)
    engine.dispose()


# -- a small schema whose steps leave traces (tests/support/demo_schema.py) ------------------


def _logged_steps(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(steps_log.c.step)).scalars())


def test_fresh_init_is_stamped_at_the_head_and_reupgrades_change_nothing(db_url: str) -> None:
    engine = make_engine(db_url)
    assert migrations.status(engine, demo(2)).version is None
    assert init_schema(engine, demo(2)) == 2
    status = migrations.status(engine, demo(2))
    assert (status.version, status.revision, status.head) == (2, "demo_steps_0002",
                                                             "demo_steps_0002")
    assert _logged_steps(engine) == []  # made from the metadata, no step ran
    for _ in range(2):
        assert upgrade_schema(engine, demo(2)) == init_schema(engine, demo(2)) == 2
    assert _logged_steps(engine) == []
    with engine.connect() as conn:
        assert conn.exec_driver_sql(
            "SELECT version_num FROM alembic_version_demo_steps").scalars().all() == [
            "demo_steps_0002"]
    assert [r[0] for r in migrations.history(demo(2))] == [
        "demo_steps_0000", "demo_steps_0001", "demo_steps_0002"]
    engine.dispose()


def test_steps_run_in_order_and_a_failure_keeps_the_version(db_url: str) -> None:
    engine = make_engine(db_url)
    assert init_schema(engine, demo(0)) == 0
    with pytest.raises(DatabaseError, match="DemoSteps migration 2 -> 3 failed"):
        upgrade_schema(engine, demo(2, broken=True))
    status = migrations.status(engine, demo(2, broken=True))
    assert (status.version, status.revision) == (2, "demo_steps_0002")
    assert schema_version(engine, "DemoSteps") == 2
    assert _logged_steps(engine) == [1, 2]  # the failed step's row was rolled back
    cols = {c["name"] for c in sa.inspect(engine).get_columns("things")}
    assert "note" in cols
    assert upgrade_schema(engine, demo(2)) == 2  # fixed release: nothing left to do
    engine.dispose()


def test_downgrade_runs_the_steps_downgrades_or_refuses(db_url: str) -> None:
    engine = make_engine(db_url)
    init_schema(engine, demo(2))
    with pytest.raises(DatabaseError, match=r"step\(s\) 2 define no downgrade; restore"):
        migrations.downgrade_schema(engine, demo(2, reversible=False), 1)
    with pytest.raises(DatabaseError, match=r"step\(s\) 1 define no downgrade"):
        migrations.downgrade_schema(engine, demo(2), 0)
    assert schema_version(engine, "DemoSteps") == 2  # nothing ran
    assert migrations.downgrade_schema(engine, demo(2), 1) == 1
    assert "note" not in {c["name"] for c in sa.inspect(engine).get_columns("things")}
    status = migrations.status(engine, demo(2))
    assert (status.version, status.revision) == (1, "demo_steps_0001")
    assert legacy_schema.schema_version(engine, "DemoSteps") == 1
    with pytest.raises(ValueError, match="cannot downgrade"):
        migrations.downgrade_schema(engine, demo(2), 2)
    assert upgrade_schema(engine, demo(2)) == 2  # and up again through Alembic
    assert "note" in {c["name"] for c in sa.inspect(engine).get_columns("things")}
    assert _logged_steps(engine) == [2]
    engine.dispose()


_COPY = """
import sys, time
from core.db import make_engine, init_schema
from tests.support.demo_schema import demo
engine = make_engine(sys.argv[1])
time.sleep(max(0.0, float(sys.argv[3]) - time.time()))  # all start together
print(init_schema(engine, demo(int(sys.argv[2]))))
"""


def _copies(url: str, steps: int, count: int = 4) -> list[str]:
    start = str(time.time() + 3)  # after every copy has imported pilotwms
    procs = [subprocess.Popen([sys.executable, "-c", _COPY, url, str(steps), start], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(count)]
    outs = [proc.communicate(timeout=120) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err for _, err in outs]
    return [out.strip() for out, _ in outs]


def test_copies_starting_together_create_and_upgrade_once(db_url: str) -> None:
    """Four processes on a fresh database, then four on it with a newer release: one
    creates, the others wait; each step runs once (MariaDB: the named lock)."""
    assert _copies(db_url, 0) == ["0"] * 4
    assert _copies(db_url, 2) == ["2"] * 4
    engine = make_engine(db_url)
    assert _logged_steps(engine) == [1, 2]
    assert migrations.status(engine, demo(2)).revision == "demo_steps_0002"
    engine.dispose()
