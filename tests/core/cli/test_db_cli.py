"""``pilotwms db`` as operators use it: versions with Alembic revisions, history, downgrade."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from core.db import make_engine
from wms.db.schema import WMS_SCHEMA

PILOTWMS = [sys.executable, "-m", "core.cli.admin"]
WMS = WMS_SCHEMA.latest
WMS_HEAD = f"workload_management_{WMS:04d}"


def db(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PILOTWMS, "db", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))


def test_db_commands_show_revisions_and_guard_downgrades(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    url = f"sqlite:///{tmp_path / 'p.db'}"
    config.write_text(f"Database: {url}\n")
    out = db(config, "version").stdout
    assert f"WorkloadManagement: not initialised (head {WMS_HEAD})" in out
    out = db(config, "init").stdout
    assert (f"WorkloadManagement: version {WMS}, revision {WMS_HEAD} "
            f"(head {WMS_HEAD})") in out
    assert "Framework: version 0, revision framework_0000 (head framework_0000)" in out
    with make_engine(url).begin() as conn:  # as an older release left it
        conn.execute(sa.text("UPDATE pilotwms_schema SET version = 2 "
                             "WHERE system = 'WorkloadManagement'"))
    assert (f"WorkloadManagement: version 2, revision {WMS_HEAD} "
            f"(head {WMS_HEAD}): run 'pilotwms db upgrade'") in db(
        config, "version").stdout
    out = db(config, "upgrade").stdout
    assert f"WorkloadManagement: version {WMS}, revision {WMS_HEAD}" in out
    lines = db(config, "history", "--system", "DataManagement").stdout.splitlines()
    assert [line.split()[1:3] for line in lines] == [
        ["data_management_0000", "one-way"], ["data_management_0001", "one-way"]]
    refused = db(config, "downgrade", "--system", "WorkloadManagement", "--to", "1")
    assert refused.returncode == 2
    assert "step(s) 2, 3 define no downgrade; restore the backup" in refused.stderr
    assert db(config, "downgrade", "--system", "Nope", "--to", "0").returncode == 2
    assert "needs --system and --to" in db(config, "downgrade").stderr
    assert f"WorkloadManagement: version {WMS}" in db(config, "version").stdout
