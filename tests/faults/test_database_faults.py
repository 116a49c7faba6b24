"""MariaDB crashed and restarted under load, and MariaDB down when the server starts.

While the database is away, requests get a clean ``DatabaseUnavailableError`` (HTTP 503 with
``Retry-After``: nothing was written, the client may send it again), never a 500; once it is
back the server reconnects by itself (pool pre-ping) and nothing accepted is lost or
half-written. A server started while its database is down says so, retries, then serves.
Both MariaDB drivers (pymysql, mysqlclient's MySQLdb): their errors differ in class and code
(a closed connection, a refused one), the outcome must not."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from core.cli.instance import Instance
from core.db import make_engine
from tests.faults.conftest import (
    Load,
    Served,
    check_consistency,
    pending_jobs,
    server_config,
    wait_for,
)
from tests.support.credentials import Creds
from tests.support.mariadb import MariaDBServer, fresh_database, with_driver


@pytest.mark.parametrize("driver", ["pymysql", "mysqldb"])
def test_mariadb_restarted_under_load_then_down_at_server_start(
        driver: str, instance: Instance, creds: Creds, tmp_path: Path) -> None:
    db = MariaDBServer()
    db.start()
    try:
        with fresh_database(db.admin_url) as admin_url:
            url = with_driver(admin_url, driver)
            config = server_config(instance, url, tmp_path, DatabaseWaitSeconds=120)
            served = Served(config, processes=2, base=tmp_path).start()
            load = Load(lambda: served.url, creds).start(uploaders=1)
            engine = make_engine(url)
            try:
                wait_for(lambda: len(load.accepted) >= 5 and load.matched, 60, "first work")
                db.crash()  # mid-request: connections die, transactions roll back
                wait_for(lambda: load.statuses[503] >= 3, 30, "requests answered 503")
                db.restart()
                accepted = len(load.accepted)
                wait_for(lambda: len(load.accepted) >= accepted + 5, 60,
                         "submissions after the database came back")
            finally:
                load.finish()
            assert 500 not in load.statuses, (load.statuses, served.log.read_text()[-3000:])
            assert load.refused["DatabaseUnavailableError"] >= 1, load.refused
            wait_for(lambda: not pending_jobs(engine), 30, "no job left Received/Checking")
            figures = check_consistency(engine, load, tmp_path / "sandboxes")
            print(f"\nMariaDB restart under load: {figures}, HTTP {dict(load.statuses)}, "
                  f"refused {dict(load.refused)}")

            # the database is down when the server starts: a clear message, retries, serves
            served.stop()
            engine.dispose()
            db.crash()
            served.start(wait=False)
            wait_for(lambda: "unreachable" in served.log.read_text(), 60,
                     "the server saying its database is unreachable")
            time.sleep(1.0)
            assert served.proc is not None and served.proc.poll() is None, \
                served.log.read_text()
            db.restart()
            served.wait_serving(90)
            reply = requests.post(f"{served.url}/WorkloadManagement/JobManager",
                                  data={"method": "submitJob",
                                        "args": '["[Executable = \\"/bin/true\\";]"]'},
                                  cert=load.alice, verify=str(creds.ca_dir), timeout=60)
            assert reply.json()["OK"], reply.text
            log = served.log.read_text()
            assert "retrying in" in log and "answers" in log, log
            served.stop()
    finally:
        db.stop()
