"""The data manager against a real catalog service, the HTTPS disk SEs, the real xrootd
server and a local SE, on SQLite and MariaDB: put/get/replicate/remove with checksums, best
replica choice, rollback of half-done steps, consistency checks, and the failover path where a
broken SE ends with the data safe elsewhere plus a request the agent completes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.db import make_engine
from core.exceptions import AlreadyExistsError
from core.rpc.client import RPCClient
from dms.agents.request_executing import RequestExecutingAgent
from dms.catalog_client import FileCatalogClient
from dms.db.rms import rms_requests
from dms.logic.data_manager import LAST_REPLICA, CatalogError, DataManager
from dms.request_client import ReqManagerClient
from dms.storage import StorageElements
from dms.storage.base import StorageError, adler32_bytes
from tests.dms.storage.conftest import DMS
from tests.support.xrootd import XRootDServer, free_port

ALICE = "/demo/user/a/alice"


def data_file(tmp_path: Path, name: str = "f.bin", size: int = 200_000) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


def manager(dms: DMS, site: str | None = None, jobs: bool = False,
            ses: StorageElements | None = None) -> DataManager:
    submit = ReqManagerClient(dms.rpc("RequestManagement/ReqManager")).put_request \
        if jobs else None
    return DataManager(dms.catalog(), ses or dms.ses(), site=site, submit_request=submit,
                       job_id=42 if jobs else None)


def test_put_get_replicate_remove(dms_server: DMS, tmp_path: Path) -> None:
    src, data = data_file(tmp_path)
    dm = manager(dms_server, site="LCG.Here.org")
    lfn = f"{ALICE}/dm/f.bin"
    put = dm.put_and_register(lfn, src, "DISK-A")
    assert (put.se, put.size, put.checksum, put.request_id) == (
        "DISK-A", len(data), adler32_bytes(data), None)
    fc = dms_server.catalog()
    meta = fc.get_file_metadata(lfn).successful[lfn]
    assert (meta["Size"], meta["Checksum"], meta["GUID"]) == (len(data), put.checksum,
                                                              put.guid)
    assert list(fc.get_replicas(lfn).successful[lfn]) == ["DISK-A"]
    with pytest.raises(AlreadyExistsError):
        dm.put_and_register(lfn, src, "DISK-B")
    assert not dms_server.ses()["DISK-B"].exists(lfn)
    # replicate to the local site's SE and to xrootd; a second time is a no-op
    assert dm.replicate_and_register(lfn, "DISK-B") is True
    assert dm.replicate_and_register(lfn, "XRD", source_se="DISK-B") is True
    assert dm.replicate_and_register(lfn, "XRD") is False
    replicas = fc.get_replicas(lfn).successful[lfn]
    assert sorted(replicas) == ["DISK-A", "DISK-B", "XRD"]
    assert replicas["XRD"].startswith("root://127.0.0.1:")
    # the local site's SE is preferred; a corrupted local copy is skipped for the next one
    assert dm.ordered_ses(replicas) == ["DISK-B", "DISK-A", "XRD"]
    assert dm.get(lfn, tmp_path / "out.bin").read_bytes() == data
    (dms_server.base / "disk-b" / lfn.lstrip("/")).write_bytes(b"rubbish" * 10)
    assert dm.get(lfn, tmp_path).read_bytes() == data  # into a directory: f.bin
    assert manager(dms_server, site="LCG.There.org").url_for_job(lfn).startswith("https://")
    # replicas: the last one cannot go
    assert dm.remove_replica(lfn, "DISK-B").successful == {lfn: True}
    assert not dms_server.ses()["DISK-B"].exists(lfn)
    assert dm.remove_replica(lfn, "DISK-B").successful == {lfn: False}
    assert dm.remove_replica(lfn, "XRD").successful == {lfn: True}
    assert dm.remove_replica(lfn, "DISK-A").failed == {lfn: LAST_REPLICA}
    # remove the file: storage and catalog
    assert dm.remove_file([lfn]).successful == {lfn: True}
    assert not dms_server.ses()["DISK-A"].exists(lfn)
    assert "No such file" in fc.get_replicas(lfn).failed[lfn]
    assert dm.remove_file([lfn]).failed  # gone


def test_every_replica_bad_is_an_error_not_a_bad_file(dms_server: DMS, tmp_path: Path) -> None:
    src, _ = data_file(tmp_path)
    dm = manager(dms_server)
    lfn = f"{ALICE}/dm/bad.bin"
    dm.put_and_register(lfn, src, "SHARED")
    (dms_server.base / "shared" / lfn.lstrip("/")).write_bytes(b"x" * 10)
    with pytest.raises(StorageError, match="no replica of .* could be read.*adler32"):
        dm.get(lfn, tmp_path / "copy.bin")
    assert not (tmp_path / "copy.bin").exists()
    with pytest.raises(StorageError):  # nor is a bad copy replicated
        dm.replicate_and_register(lfn, "DISK-A")
    assert not dms_server.ses()["DISK-A"].exists(lfn)


def test_failed_registration_rolls_the_upload_back(dms_server: DMS, tmp_path: Path) -> None:
    """Storage accepts (the SEs are reached as a trusted host) but the catalog refuses alice
    in bob's home: the interactive upload is removed again, a job's is kept with a request."""
    src, _ = data_file(tmp_path)
    host_ses = dms_server.ses("host")
    dm = manager(dms_server, ses=host_ses)
    lfn = "/demo/user/b/bob/from-alice"
    with pytest.raises(CatalogError, match="upload removed.*Permission denied"):
        dm.put_and_register(lfn, src, "DISK-A")
    assert not host_ses["DISK-A"].exists(lfn)
    assert not list((dms_server.base / "disk-a" / "demo/user/b/bob").iterdir())
    job_dm = manager(dms_server, jobs=True, ses=host_ses)
    put = job_dm.put_and_register(lfn, src, "DISK-A")
    assert put.request_id is not None and put.se == "DISK-A"
    assert host_ses["DISK-A"].exists(lfn)
    req = ReqManagerClient(dms_server.rpc("RequestManagement/ReqManager")).get_request(
        put.request_id)
    assert [op["Type"] for op in req["Operations"]] == ["RegisterFile"]
    assert req["JobID"] == 42 and req["Owner"] == "alice" and req["Status"] == "Waiting"


def test_catalog_down_during_a_job_upload(dms_server: DMS, tmp_path: Path) -> None:
    """The catalog is unreachable: the job's output is stored and a request registers it."""
    src, data = data_file(tmp_path)
    dead = RPCClient("DataManagement/FileCatalog", urls=[f"https://127.0.0.1:{free_port()}"],
                     ca_dir=dms_server.creds.ca_dir)
    submit = ReqManagerClient(dms_server.rpc("RequestManagement/ReqManager")).put_request
    dm = DataManager(FileCatalogClient(dead), dms_server.ses(), submit_request=submit)
    lfn = f"{ALICE}/down/out.bin"
    put = dm.put_and_register(lfn, src, "DISK-A")
    assert put.request_id is not None
    # an interactive data manager refuses instead of uploading blind
    with pytest.raises(CatalogError, match="cannot check"):
        DataManager(FileCatalogClient(dead), dms_server.ses()).put_and_register(
            f"{ALICE}/down/other", src, "DISK-A")
    agent = RequestExecutingAgent(dms_server.config, instance="t1")
    agent.run(once=True)
    fc = dms_server.catalog()
    meta = fc.get_file_metadata(lfn).successful[lfn]
    assert (meta["Size"], meta["Checksum"], meta["Owner"]) == (len(data), put.checksum,
                                                               "alice")
    status = ReqManagerClient(dms_server.rpc("RequestManagement/ReqManager")) \
        .get_request_status(put.request_id)
    assert status == "Done"


def test_broken_se_ends_with_data_safe_and_a_request_the_agent_completes(
        dms_server: DMS, tmp_path: Path) -> None:
    port = free_port()  # LATE-XRD: an xrootd server that is down at first
    data = dms_server.config.model_dump(by_alias=True, exclude_none=True)
    data["Resources"]["StorageElements"]["LATE-XRD"] = {"Protocols": [
        {"Plugin": "XROOT", "Host": "127.0.0.1", "Port": port, "Path": "/late"}]}
    data["Systems"] = {"RequestManagement": {"Services": {"ReqManager": {"Options": {
        "RetryDelaySeconds": 0}}}}}
    config = type(dms_server.config).model_validate(data)
    ses = StorageElements.from_config(config, credentials=dms_server.credentials("alice"),
                                      ca_dir=dms_server.creds.ca_dir)
    src, payload = data_file(tmp_path, size=1_000_000)
    dm = manager(dms_server, jobs=True, ses=ses)
    lfn = f"{ALICE}/job42/out.root"
    put = dm.put_and_register(lfn, src, "LATE-XRD", failover_ses=["DISK-A"])
    assert put.failover and put.se == "DISK-A" and put.request_id is not None
    fc = dms_server.catalog()
    assert list(fc.get_replicas(lfn).successful[lfn]) == ["DISK-A"]  # safe, and registered
    rm = ReqManagerClient(dms_server.rpc("RequestManagement/ReqManager"))
    assert rm.get_request_ids_for_jobs([42, 43]) == {42: put.request_id}
    assert [op["Type"] for op in rm.get_request(put.request_id)["Operations"]] == [
        "ReplicateAndRegister", "RemoveReplica"]
    # the agent tries while the SE is still down: the request waits for a retry
    agent = RequestExecutingAgent(config, instance="t2")
    agent.run(once=True)
    req = rm.get_request(put.request_id)
    assert (req["Status"], req["Attempts"]) == ("Waiting", 1)
    assert "LATE-XRD" in req["Operations"][0]["Error"]
    # the SE comes back: the next cycle moves the file and drops the failover copy
    late = XRootDServer()
    late.port = port
    late.start()
    try:
        agent.run(once=True)
        req = rm.get_request(put.request_id)
        assert req["Status"] == "Done", req
        assert list(fc.get_replicas(lfn).successful[lfn]) == ["LATE-XRD"]
        assert not dms_server.ses()["DISK-A"].exists(lfn)
        assert (late.data / "late" / lfn.lstrip("/")).read_bytes() == payload
        assert dm.get(lfn, tmp_path / "back.bin").read_bytes() == payload
    finally:
        late.stop()


def test_requests_back_off_and_give_up(dms_server: DMS, tmp_path: Path) -> None:
    rm = ReqManagerClient(dms_server.rpc("RequestManagement/ReqManager"))
    rid = rm.put_request({"RequestName": "hopeless", "Operations": [
        {"Type": "ReplicateAndRegister", "TargetSE": "DISK-B",
         "Files": [{"LFN": f"{ALICE}/never/registered"}]}]})
    data = dms_server.config.model_dump(by_alias=True, exclude_none=True)
    data["Systems"] = {"RequestManagement": {"Services": {"ReqManager": {"Options": {
        "RetryDelaySeconds": 100, "MaxAttempts": 2}}}}}
    agent = RequestExecutingAgent(type(dms_server.config).model_validate(data), instance="t3")
    agent.run(once=True)
    first = rm.get_request(rid)
    assert first["Status"] == "Waiting" and first["Attempts"] == 1
    assert 95 <= (first["NotBefore"] - first["LastUpdate"]).total_seconds() <= 105
    agent.run(once=True)  # not due yet: untouched
    assert rm.get_request(rid)["Attempts"] == 1
    engine = make_engine(dms_server.config.database_url("RequestManagement"))
    with engine.begin() as conn:
        conn.execute(sa.update(rms_requests).values(not_before=first["LastUpdate"]))
    engine.dispose()
    agent.run(once=True)
    final = rm.get_request(rid)
    assert final["Status"] == "Failed" and final["Attempts"] == 2
    assert final["Operations"][0]["Files"][0]["Status"] == "Failed"
    # bob sees neither the request nor may he cancel it
    bob = ReqManagerClient(dms_server.rpc("RequestManagement/ReqManager", "bob"))
    with pytest.raises(Exception, match="not yours"):
        bob.get_request(rid)
    assert rm.cancel_request(rid) is False  # final already


def test_consistency_check(dms_server: DMS, tmp_path: Path) -> None:
    dm = manager(dms_server)
    top = f"{ALICE}/cc"
    for name in ("a", "b", "sub/c", "sub/d"):
        src, _ = data_file(tmp_path, name.replace("/", "_"), 5000)
        dm.put_and_register(f"{top}/{name}", src, "DISK-A")
    assert dm.check_consistency(top, ["DISK-A"]).consistent
    disk = dms_server.base / "disk-a" / top.lstrip("/")
    (disk / "a").unlink()                                     # missing
    (disk / "sub" / "c").write_bytes(b"y" * 5000)             # same size, other bytes
    (disk / "b").write_bytes(b"short")                        # other size
    (disk / "sub" / "dark").write_bytes(b"not registered")    # extra
    report = dm.check_consistency(top, ["DISK-A"])
    assert report.checked == 4
    assert report.missing == [(f"{top}/a", "DISK-A")]
    assert [x[:2] for x in report.bad_checksum] == [(f"{top}/b", "DISK-A"),
                                                    (f"{top}/sub/c", "DISK-A")]
    assert report.bad_size == [(f"{top}/b", "DISK-A", 5, 5000)]
    assert report.extra == [("DISK-A", f"{top}/sub/dark")]
    assert not report.consistent


def test_put_and_register_request_moves_an_unregistered_failover_copy(
        dms_server: DMS, tmp_path: Path) -> None:
    src, data = data_file(tmp_path)
    ses = dms_server.ses()
    good, bad = f"{ALICE}/pr/good.bin", f"{ALICE}/pr/bad.bin"
    info = ses["SHARED"].put(good, src)  # what a job left on its failover SE
    ses["SHARED"].put(bad, src)
    (dms_server.base / "shared" / bad.lstrip("/")).write_bytes(b"damaged")
    rm = ReqManagerClient(dms_server.rpc("RequestManagement/ReqManager"))
    files = {lfn: {"LFN": lfn, "Size": info.size, "Checksum": info.checksum, "GUID": guid}
             for lfn, guid in ((good, "G-GOOD"), (bad, "G-BAD"))}
    ok_id = rm.put_request({"RequestName": "pr", "Operations": [
        {"Type": "PutAndRegister", "SourceSE": "SHARED", "TargetSE": "DISK-A",
         "Files": [files[good]]}]})
    bad_id = rm.put_request({"RequestName": "pr-bad", "Operations": [
        {"Type": "PutAndRegister", "SourceSE": "SHARED", "TargetSE": "DISK-A",
         "Files": [files[bad]]}]})
    RequestExecutingAgent(dms_server.config, instance="t4").run(once=True)
    assert rm.get_request_status(ok_id) == "Done"
    fc = dms_server.catalog()
    assert list(fc.get_replicas(good).successful[good]) == ["DISK-A"]
    assert fc.get_file_metadata(good).successful[good]["GUID"] == "G-GOOD"
    assert not ses["SHARED"].exists(good)
    assert manager(dms_server).get(good, tmp_path / "g").read_bytes() == data
    # a damaged source copy is never registered: the request waits, nothing was moved
    waiting = rm.get_request(bad_id)
    assert waiting["Status"] == "Waiting" and "adler32" in waiting["Operations"][0]["Error"]
    assert "No such file" in fc.get_replicas(bad).failed[bad]
    assert not ses["DISK-A"].exists(bad) and ses["SHARED"].exists(bad)
