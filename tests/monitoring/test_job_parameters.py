"""Job parameters in the search backend, unchanged on the wire; the WMS table takes them
while the cluster is down."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.config.schema import Config
from core.db import init_schema, make_engine
from core.rpc.runner import available_services
from monitoring.jobparams import OpenSearchParameterStore
from tests.pilot.conftest import Env
from tests.support.credentials import Creds
from tests.support.osmem import OsmemServer
from tests.support.servers import ThreadedServer
from wms.db.schema import WMS_SCHEMA
from wms.db.tables import job_parameters

JOB_STATE = "WorkloadManagement/JobStateUpdate"


def table_rows(engine: sa.engine.Engine, job: int) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(job_parameters.c.name, job_parameters.c.value)
                                 .where(job_parameters.c.job_id == job)).all())


@pytest.mark.slow
def test_parameters_in_the_search_backend(config: Config, creds: Creds,
                                          tmp_path: Path) -> None:
    search = OsmemServer(tmp_path / "osmem").start()
    try:
        data = config.model_dump(by_alias=True, exclude_none=True)
        data["Monitoring"] = {"JobParameters": "OpenSearch", "RunInServer": False,
                              "OpenSearch": {"Hosts": [search.url], "Timeout": 2,
                                             "IndexPrefix": f"jp{uuid.uuid4().hex[:6]}"}}
        cfg = Config.model_validate(data)
        assert cfg.database
        engine = make_engine(cfg.database)
        init_schema(engine, WMS_SCHEMA)
        store = OpenSearchParameterStore(cfg)
        with ThreadedServer(cfg, available_services().values()) as server:
            env = Env(server, creds, Path("unused.pyz"), tmp_path)
            job = env.submit('[Executable = "/bin/true";]')

            def params() -> dict[str, str]:
                found = env.call("alice", "WorkloadManagement/JobMonitoring",
                                 "getJobParameters", [job])
                return dict(found[str(job)])

            env.call("admin", JOB_STATE, "setJobParameters", job, [["A", "1"], ["B", "2"]])
            assert params() == {"A": "1", "B": "2"}
            assert store.get([job]) == {job: {"A": "1", "B": "2"}}
            assert table_rows(engine, job) == {}  # not in the WMS table
            assert store.prefix + "_jobparameters-0m" in store.backend.client.indices.get(
                index=f"{store.prefix}_jobparameters-*")

            search.stop()  # the cluster goes: writes fall back, nothing fails
            env.call("admin", JOB_STATE, "setJobParameter", job, "B", "20")
            assert table_rows(engine, job) == {"B": "20"}
            assert params() == {"B": "20"}

            search.restart()  # back (empty: the stand-in keeps data in memory)
            env.call("admin", JOB_STATE, "sendHeartBeat", job, {}, {"C": "3"})
            assert params() == {"B": "20", "C": "3"}  # table and store merged
            env.call("admin", JOB_STATE, "setJobParameters", job, [["B", "200"]])
            assert table_rows(engine, job) == {}  # the newer value replaced the fallback
            assert params() == {"B": "200", "C": "3"}
    finally:
        search.stop()
