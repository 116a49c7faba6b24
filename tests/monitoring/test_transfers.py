"""Data-operation records from finished data-management requests, once each."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

from core.config.schema import Config
from core.db import init_schema, make_engine
from dms.db import rms
from monitoring.db.base import Backend
from monitoring.db.tables import MONITORING_SCHEMA
from monitoring.logic import transfers
from monitoring.logic import transfers as transfers_logic
from monitoring.logic.reports import ReportRequest, build_report
from monitoring.types import TYPES


def finished(engine: sa.engine.Engine, name: str, statuses: list[str], when: datetime
             ) -> int:
    rid = rms.insert_request(engine, rms.NewRequest(name, "alice", "demo_user", "demo", None, [
        rms.NewOperation("ReplicateAndRegister", "DISK-B", "DISK-A",
                         [{"LFN": f"/demo/{name}/{i}", "Size": 1000 * (i + 1)}
                          for i in range(len(statuses))]),
        rms.NewOperation("RemoveFile", "", "", [{"LFN": f"/demo/{name}/gone"}])]))
    req = rms.get_request(engine, rid)
    for f, status in zip(req.operations[0].files, statuses, strict=True):
        f.status = status
    req.status = rms.DONE if all(s == rms.DONE for s in statuses) else rms.FAILED
    rms.save_outcome(engine, req)
    with engine.begin() as conn:  # finished long enough ago to be read
        conn.execute(sa.update(rms.rms_requests).where(rms.rms_requests.c.request_id == rid)
                     .values(last_update=when))
    return rid


def test_each_transferred_file_makes_one_record(backend: Backend, tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'rms.db'}")
    init_schema(engine, rms.REQUEST_SCHEMA)
    init_schema(engine, MONITORING_SCHEMA)
    config = Config.model_validate({"Resources": {"StorageElements": {"DISK-B": {
        "Protocols": [{"Plugin": "XROOT", "Host": "xrd.example.org"}]}}}})
    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
    finished(engine, "a", [rms.DONE, rms.DONE], t0)
    finished(engine, "b", [rms.DONE, rms.FAILED], t0 + timedelta(minutes=5))
    assert transfers.ship(backend, engine, engine, config, batch=1) == 2  # request a
    assert transfers.ship(backend, engine, engine, config, batch=1) == 2  # request b
    assert transfers.ship(backend, engine, engine, config) == 0           # nothing new
    records = backend.records(TYPES["DataOperation"], t0 - timedelta(hours=1),
                              t0 + timedelta(hours=1))
    assert len(records) == 4
    assert {r["Protocol"] for r in records} == {"XROOT"}
    assert sum(r["TransferSize"] for r in records) == 1000 + 2000 + 1000
    report = build_report(backend, ReportRequest(
        "DataOperation", "TransferQuality", t0 - timedelta(hours=1), t0 + timedelta(hours=1),
        "Destination"))
    assert report["totals"] == {"DISK-B": 75.0}


def test_transfer_attempts_make_records_with_their_duration(backend: Backend,
                                                            tmp_path: Path) -> None:
    from transfer.db.tables import TRANSFER_SCHEMA, associations, attempts, transfers

    engine = make_engine(f"sqlite:///{tmp_path / 'xfer.db'}")
    init_schema(engine, TRANSFER_SCHEMA)
    init_schema(engine, MONITORING_SCHEMA)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    with engine.begin() as conn:
        aid = conn.execute(sa.insert(associations).values(
            owner="alice", name="lab", protocol="sftp", created=now, updated=now)
        ).inserted_primary_key[0]
        tid = conn.execute(sa.insert(transfers).values(
            owner="alice", owner_group="demo_user", association_id=aid, association="lab",
            direction="put", source_kind="lfn", source="/demo/f", target="in/f",
            retry_count=3, retry_frequency=60, status="Done", created=now, last_update=now,
            not_before=now)).inserted_primary_key[0]
        for n, (ago, seconds, ok, size) in enumerate([(600, 20, False, 0),
                                                      (300, 40, True, 4000),
                                                      (5, 1, True, 10)]):
            ended = now - timedelta(seconds=ago)
            conn.execute(sa.insert(attempts).values(
                transfer_id=tid, attempt=n + 1, started=ended - timedelta(seconds=seconds),
                ended=ended, ok=ok, bytes=size, agent="a"))
    # the last attempt ended 5 s ago: not settled yet, read at a later cycle
    assert transfers_logic.ship_xfer(backend, engine, engine) == 2
    assert transfers_logic.ship_xfer(backend, engine, engine) == 0
    records = sorted(backend.records(TYPES["DataOperation"], now - timedelta(hours=1),
                                     now + timedelta(minutes=1)),
                     key=lambda r: r["EndTime"])
    assert [(r["FinalStatus"], r["TransferTime"], r["TransferSize"], r["Protocol"])
            for r in records] == [("Failed", 20.0, 0.0, "sftp"), ("Done", 40.0, 4000.0, "sftp")]
    assert {r["OperationType"] for r in records} == {"Transfer-put"}
