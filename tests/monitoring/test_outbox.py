"""The WMS outbox: one row per job or pilot reaching a final status, in the status change's
own transaction; the WMS migration that adds it."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from core.db import (
    init_schema,
    make_engine,
    schema_version,
    schema_versions,
    upgrade_schema,
)
from core.security.identity import Identity
from wms.db import outbox
from wms.db.schema import WMS_SCHEMA
from wms.db.tables import metadata
from wms.logic import pilots, state_update
from wms.logic.states import FINAL
from wms.logic.submission import DEFAULT_LIMITS, Submitter, submit

ADMIN = Identity(auth_method="x509", username="admin", group="demo_admin", vo="demo",
                 valid_dn=True, valid_group=True, properties=frozenset({"JobAdministrator"}))


def test_final_statuses_are_the_state_machines() -> None:
    assert outbox.FINAL_JOB_STATUSES == {str(s) for s in FINAL}
    assert outbox.FINAL_PILOT_STATUSES < pilots.FINAL_PILOT


def test_rows_follow_final_status_changes(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'wms.db'}")
    init_schema(engine, WMS_SCHEMA)
    [a, b] = submit(engine, '[Executable = "ls"; Parameters = 2;]', Submitter("al", "g", "v"),
                    DEFAULT_LIMITS).job_ids
    for job in (a, b):
        state_update.set_status(engine, ADMIN, job, "Received", source="t", force=True)
    state_update.set_status(engine, ADMIN, a, "Failed", source="t")
    state_update.set_status(engine, ADMIN, a, "Failed", "again", source="t")  # no new row
    state_update.set_status(engine, ADMIN, a, "Rescheduled", source="t")
    state_update.set_status(engine, ADMIN, a, "Killed", source="t")
    pilots.add_pilots(engine, ["p1", "p2"], vo="v", owner_group="g", grid_type="Local")
    pilots.set_status(engine, ["p1"], "Running")
    pilots.set_status(engine, ["p1", "p2"], "Done")
    pilots.set_status(engine, ["p1"], "Done")  # already final: nothing
    with engine.connect() as conn:
        rows = [(r.kind, r.ref, r.status) for r in outbox.pending(conn, 100)]
    pilot_ids = sorted(r[1] for r in rows if r[0] == "pilot")
    assert [r for r in rows if r[0] == "job"] == [("job", a, "Failed"), ("job", a, "Killed")]
    assert len(pilot_ids) == 2 and {r[2] for r in rows if r[0] == "pilot"} == {"Done"}


def test_the_migration_adds_the_outbox(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    init_schema(engine, WMS_SCHEMA)
    with engine.begin() as conn:  # a database made before the outbox existed
        outbox.monitoring_outbox.drop(conn)
        conn.execute(sa.update(schema_versions).where(
            schema_versions.c.system == "WorkloadManagement").values(version=1))
    assert schema_version(engine, "WorkloadManagement") == 1
    assert upgrade_schema(engine, WMS_SCHEMA) == WMS_SCHEMA.latest >= 2
    assert "monitoring_outbox" in sa.inspect(engine).get_table_names()
    assert "monitoring_outbox" in metadata.tables
