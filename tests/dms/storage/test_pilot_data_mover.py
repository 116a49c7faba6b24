"""The pilot's standard-library data mover (``pilot.data.DataMover``) against the real
storage, catalog and request services, on both databases: the wire formats agree (SE
configuration, streamed PUT/GET with adler32, catalog registration, failover requests that
the agent completes)."""

from __future__ import annotations

import os
from pathlib import Path

from dms.agents.request_executing import RequestExecutingAgent
from dms.request_client import ReqManagerClient
from pilot.data import DataMover
from pilot.rpc import RpcClient
from tests.dms.storage.conftest import DMS

ALICE = "/demo/user/a/alice"


def mover(dms: DMS, tmp_path: Path, site: str) -> DataMover:
    token = dms.creds.token("alice", "demo_user")
    rpc = RpcClient([dms.server.url], token=token, ca_dir=str(dms.creds.ca_dir), retries=0)
    return DataMover(rpc, site=site, workdir=str(tmp_path), log=lambda _msg: None)


def test_outputs_and_inputs_through_the_real_services(dms_server: DMS, tmp_path: Path) -> None:
    out = tmp_path / "out.dat"
    data = os.urandom(300_000)
    out.write_bytes(data)
    lfn = f"{ALICE}/job7/out.dat"
    result = mover(dms_server, tmp_path, "LCG.There.org").store_outputs(
        {lfn: str(out)}, ses=["DISK-A"], job_id=7)
    assert (result.stored, result.failover, result.lost, result.requests) == (
        {lfn: "DISK-A"}, {}, {}, [])
    fc = dms_server.catalog()
    assert fc.get_file_metadata(lfn).successful[lfn]["Size"] == len(data)
    assert (dms_server.base / "disk-a" / lfn.lstrip("/")).read_bytes() == data
    # inputs: downloaded and checked
    work = tmp_path / "job8"
    work.mkdir()
    fetched = mover(dms_server, work, "LCG.There.org").fetch_inputs([lfn])
    assert Path(fetched[lfn]).read_bytes() == data


def test_a_dead_output_se_ends_on_a_failover_se_and_the_agent_moves_it(
        dms_server: DMS, tmp_path: Path) -> None:
    out = tmp_path / "res.dat"
    out.write_bytes(os.urandom(50_000))
    lfn = f"{ALICE}/job9/res.dat"
    data = dms_server.config.model_dump(by_alias=True, exclude_none=True)
    # DISK-B is the wanted SE; its directory is made unwritable by a file in the way
    (dms_server.base / "disk-b").write_bytes(b"not a directory")
    result = mover(dms_server, tmp_path, "LCG.Here.org").store_outputs(
        {lfn: str(out)}, ses=["DISK-B"], job_id=9)
    assert lfn in result.failover and len(result.requests) == 1
    failover_se = result.failover[lfn]
    fc = dms_server.catalog()
    assert list(fc.get_replicas(lfn).successful[lfn]) == [failover_se]
    (dms_server.base / "disk-b").unlink()  # DISK-B repaired
    config = type(dms_server.config).model_validate(data)
    RequestExecutingAgent(config, instance="pilot-test").run(once=True)
    rm = ReqManagerClient(dms_server.rpc("RequestManagement/ReqManager"))
    assert rm.get_request_status(result.requests[0]) == "Done"
    assert list(fc.get_replicas(lfn).successful[lfn]) == ["DISK-B"]
    assert (dms_server.base / "disk-b" / lfn.lstrip("/")).read_bytes() == out.read_bytes()


def test_an_output_already_registered_is_never_overwritten(dms_server: DMS,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "again.dat"
    out.write_bytes(b"first run\n")
    lfn = f"{ALICE}/job11/again.dat"
    first = mover(dms_server, tmp_path, "LCG.There.org").store_outputs(
        {lfn: str(out)}, ses=["DISK-A"], job_id=11)
    assert first.stored == {lfn: "DISK-A"}
    rerun = mover(dms_server, tmp_path, "LCG.There.org").store_outputs(
        {lfn: str(out)}, ses=["DISK-A"], job_id=11)
    assert rerun.stored == {lfn: "(already registered)"} and not rerun.requests
    out.write_bytes(b"something else\n")
    clash = mover(dms_server, tmp_path, "LCG.There.org").store_outputs(
        {lfn: str(out)}, ses=["DISK-A"], job_id=11)
    assert clash.lost == {lfn: "already registered with another content"}
    assert (dms_server.base / "disk-a" / lfn.lstrip("/")).read_bytes() == b"first run\n"
