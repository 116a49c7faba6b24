"""Jobs on a dataset end to end, on SQLite and MariaDB: a 20-file catalog dataset submitted
with 5 files per job makes 4 jobs, each scheduled where its files are and reading its 5 files
on a real pilot; a metadata query does the same; a dataset that does not exist creates
nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from core.db import make_engine
from core.exceptions import NotFoundError
from core.rpc.client import Credentials, RPCClient
from dms.catalog_client import FileCatalogClient
from tests.dms.test_data_driven_jobs import HOME, THERE, Stack, wait_for
from tests.dms.test_data_driven_jobs import pyz as pyz  # noqa: F401 - fixture
from tests.dms.test_data_driven_jobs import stack as stack  # noqa: F401 - fixture
from wms.db.tables import jobs

PAYLOAD = ('[Executable = "/bin/sh"; Arguments = "-c \'ls *.dat | sort | tr \\"\\\\n\\" \\" \\"\'";'
           ' CPUTime = 600; OutputSandbox = {"std.out"};]')


def job_count(stack: Stack) -> int:
    engine = make_engine(stack.config.database_url("WorkloadManagement"))
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one())
    finally:
        engine.dispose()


def test_a_dataset_makes_one_job_per_group_of_files(stack: Stack,  # noqa: F811
                                                    tmp_path: Path) -> None:
    host = Credentials(cert=stack.creds.host[0], key=stack.creds.host[1])
    admin = FileCatalogClient(RPCClient("DataManagement/FileCatalog", urls=[stack.server.url],
                                        credentials=host, ca_dir=stack.creds.ca_dir))
    admin.add_metadata_field("run", "INT")
    dm = stack.data_manager()
    names = [f"f{i:02d}.dat" for i in range(20)]
    for name in names:
        source = tmp_path / name
        source.write_text(name)
        dm.put_and_register(f"{HOME}/run42/{name}", source, "DISK-A")
    wms = stack.wms()
    catalog = FileCatalogClient(wms.rpc("DataManagement/FileCatalog"))
    catalog.set_metadata(f"{HOME}/run42", {"run": 42})
    assert catalog.add_dataset({f"{HOME}/sets/run42": {"run": 42}}).failed == {}
    before = job_count(stack)
    with pytest.raises(NotFoundError, match=f"dataset {HOME}/sets/nosuch"):
        wms.submit_dataset(PAYLOAD, 5, dataset=f"{HOME}/sets/nosuch")
    assert job_count(stack) == before
    ids = wms.submit_dataset(PAYLOAD, 5, dataset=f"{HOME}/sets/run42")
    assert len(ids) == 4
    inputs = {job: wms.input_data(job) for job in ids}
    assert sorted(lfn.removeprefix("LFN:") for group in inputs.values() for lfn in group) == [
        f"{HOME}/run42/{n}" for n in names]
    assert {len(group) for group in inputs.values()} == {5}
    assert {s["Site"] for s in wms.summary(ids).values()} == {THERE}
    assert {p["Dataset"] for p in wms.parameters(ids).values()} == {f"{HOME}/sets/run42"}
    queried = wms.submit_dataset(PAYLOAD, 10, query={"run": 42}, path=HOME)
    assert [len(wms.input_data(j)) for j in queried] == [10, 10]
    wms.kill(queried)
    pilot = stack.pilot(THERE, "there", "--processors", "2", "--max-failed-matches", "1000")
    try:
        wait_for(lambda: all(s in ("Done", "Failed") for s in wms.status(ids).values()), 150,
                 "the 4 dataset jobs to end")
    finally:
        pilot.kill()
        pilot.wait(30)
    assert set(wms.status(ids).values()) == {"Done"}
    read: list[str] = []
    for job in ids:
        wms.download_job_sandbox(job, "Output", tmp_path / str(job))
        files = (tmp_path / str(job) / "std.out").read_text().split()
        assert files == sorted(Path(lfn).name for lfn in inputs[job])  # its own 5 files
        read += files
    assert sorted(read) == names
