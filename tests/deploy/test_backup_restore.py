"""scripts/backup.sh: a pilotwms instance on MariaDB is backed up while it serves, lost (database
dropped, sandbox store and instance directory deleted), restored into a new database and new
directories, and works again: the finished job, its history and its output come back, and new
jobs are accepted after the old ones."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.support.mariadb import fresh_database
from tests.support.serve import ServeProcess, derived_config

from core.cli.instance import create_instance
from core.client_config import load_client_config
from core.rpc.client import Credentials, RPCClient
from wms.client import WMSClient

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def _admin(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "core.cli.admin", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _client_config(base: Path, inst: Path, url: str) -> Path:
    path = base / "client.yaml"
    path.write_text(f"URLs: [{url}]\nCADir: {inst}/ca/certificates\n"
                    f"Cert: {inst}/users/alice/usercert.pem\n"
                    f"Key: {inst}/users/alice/userkey.pem\nGroup: demo_user\nVO: demo\n")
    return path


def test_backup_then_restore_brings_back_a_working_instance(
        mariadb_admin_url: str, tmp_path: Path) -> None:
    inst = tmp_path / "inst"
    create_instance(inst, port=0)
    sandboxes = inst / "sandboxes"
    config = derived_config(inst / "config.yaml", inst / "stack.yaml", {"Systems": {
        "WorkloadManagement": {"Services": {"SandboxStore": {"Options": {
            "BasePath": str(sandboxes)}}}}}})
    backup = tmp_path / "backup"
    with fresh_database(mariadb_admin_url) as db_url:
        env = {"PILOTWMS_DB": db_url}
        _admin(env, "db", "init", "--config", str(config))
        token = _admin(env, "token", "issue", "--config", str(config), "--user", "pilot", "-g",
                       "demo_pilot").strip().splitlines()[-1]
        with ServeProcess(config, env=env, log=tmp_path / "serve-1.log") as server:
            cfg = load_client_config(_client_config(tmp_path, inst, server.url))
            with WMSClient(cfg) as wms:
                job = wms.submit('[Executable="/bin/echo"; Arguments="kept";]')[0]
                with RPCClient("WorkloadManagement/JobStateUpdate", urls=[server.url],
                               credentials=Credentials(token=token), ca_dir=cfg.ca_dir) as pilot:
                    for status, minor in (("Matched", "Assigned"), ("Running", "Application"),
                                          ("Done", "Execution Complete")):
                        pilot.call("setJobStatus", job, status, minor, "Pilot")
                made = tmp_path / "made"
                made.mkdir()
                (made / "std.out").write_text("kept across the restore\n")
                wms.assign_sandboxes([job], wms.upload_sandbox([made / "std.out"]), "Output")
            # the backup runs while the server serves
            subprocess.run(["bash", str(REPO / "scripts" / "backup.sh"), "backup", "--db", db_url,
                            "--sandboxes", str(sandboxes), "--instance", str(inst),
                            "--out", str(backup)], check=True, timeout=300)
        # the disaster: database, sandbox files and instance directory gone
        admin = sa.create_engine(mariadb_admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE `{sa.engine.make_url(db_url).database}`")
        admin.dispose()
    shutil.rmtree(inst)
    assert sorted(p.name for p in backup.iterdir()) == [
        "SHA256SUMS", "database.sql.gz", "instance.tar.gz", "sandboxes.tar.gz"]

    # restore into a new database, a new sandbox directory, the instance directory again
    with fresh_database(mariadb_admin_url) as new_url:
        new_sandboxes = tmp_path / "restored-sandboxes"
        subprocess.run(["bash", str(REPO / "scripts" / "backup.sh"), "restore", "--db", new_url,
                        "--sandboxes", str(new_sandboxes), "--instance", str(inst),
                        "--from", str(backup)], check=True, timeout=300)
        config = derived_config(inst / "config.yaml", inst / "restored.yaml", {"Systems": {
            "WorkloadManagement": {"Services": {"SandboxStore": {"Options": {
                "BasePath": str(new_sandboxes)}}}}}})
        env = {"PILOTWMS_DB": new_url}
        _admin(env, "db", "upgrade", "--config", str(config))
        with ServeProcess(config, env=env, log=tmp_path / "serve-2.log") as server:
            cfg = load_client_config(_client_config(tmp_path, inst, server.url))
            with WMSClient(cfg) as wms:
                summary = wms.summary([job])[job]
                assert summary["Status"] == "Done", summary
                history = [row.status for row in wms.logging_info(job)]
                assert history[-1] == "Done" and "Matched" in history, history
                out = tmp_path / "out"
                wms.download_job_sandbox(job, "Output", out)
                assert (out / "std.out").read_text() == "kept across the restore\n"
                new = wms.submit('[Executable="/bin/true";]')[0]
                assert new > job
                assert wms.summary([new])[new]["Status"] == "Waiting"
