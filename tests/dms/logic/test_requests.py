"""Failover requests below the service: the wire form's checks, back-off, and the request
tables (store, load, find, claim by competing agents, stale claims, outcomes, cancel), on
SQLite and MariaDB."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from core.db import init_schema, make_engine, utcnow
from core.exceptions import InvalidArgumentError, NotFoundError
from dms.db import rms as db
from dms.logic.rms import MAX_FILES, backoff, parse_request, to_wire

INFO = {"Size": 3, "Checksum": "0a1b2c3d", "GUID": "g-1"}


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_schema(eng, db.REQUEST_SCHEMA)
    yield eng
    eng.dispose()


def op(kind: str, target: str = "DISK", **extra: Any) -> dict[str, Any]:
    return {"Type": kind, "TargetSE": target,
            "Files": [{"LFN": "/demo/user/a/alice/f", **INFO}], **extra}


@pytest.mark.parametrize(("wire", "message"), [
    ("not a dict", "a request is a dict"),
    ({"RequestName": 7, "Operations": [op("RemoveFile")]}, "RequestName must be a string"),
    ({"RequestName": "x" * 256, "Operations": [op("RemoveFile")]}, "at most 255"),
    ({"JobID": "12", "Operations": [op("RemoveFile")]}, "JobID must be an integer"),
    ({"JobID": True, "Operations": [op("RemoveFile")]}, "JobID must be an integer"),
    ({"Operations": []}, "non-empty list of Operations"),
    ({"Operations": [{"Type": "Teleport", "Files": []}]}, "Operations[0]: Type must be one of"),
    ({"Operations": [op("ReplicateAndRegister", "")]}, "needs a TargetSE"),
    ({"Operations": [op("RemoveFile", SourceSE=3)]}, "are strings"),
    ({"Operations": [{"Type": "RemoveFile", "Files": []}]}, "Files must be a non-empty list"),
    ({"Operations": [{"Type": "RemoveFile", "Files": [{"LFN": "relative"}]}]},
     "absolute LFN"),
    ({"Operations": [{"Type": "RegisterFile", "TargetSE": "D",
                      "Files": [{"LFN": "/f", "Size": 3}]}]}, "needs Size, Checksum, GUID"),
    ({"Operations": [op("PutAndRegister")]}, "PutAndRegister needs the SourceSE"),
    ({"Operations": [op("RemoveFile"), {"Type": "RemoveFile", "Files": [
        {"LFN": f"/f{i}"} for i in range(MAX_FILES)]}]}, f"at most {MAX_FILES} files"),
])
def test_bad_requests_are_refused_with_the_reason(wire: Any, message: str) -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        parse_request(wire, "alice", "demo_user", "demo")
    assert message in str(refused.value), refused.value


def test_a_good_request_and_the_back_off() -> None:
    new = parse_request({"JobID": 12, "Operations": [
        op("RegisterFile"), op("ReplicateAndRegister", "A,B", SourceSE="FAIL"),
        op("PutAndRegister", SourceSE="FAIL")]}, "alice", "demo_user", "demo")
    assert new.name == "request-alice" and new.job_id == 12
    assert [o.type for o in new.operations] == ["RegisterFile", "ReplicateAndRegister",
                                                "PutAndRegister"]
    assert new.operations[1].source_se == "FAIL"
    assert [backoff(n, 60, 3600) for n in (0, 1, 2, 6, 7, 50, -3)] == [
        60, 120, 240, 3600, 3600, 3600, 60]


def test_store_load_find(engine: Engine) -> None:
    new = parse_request({"RequestName": "outs", "JobID": 7, "Operations": [
        op("RegisterFile", PFN="ignored"), op("ReplicateAndRegister", "A,B"),
        op("RemoveReplica", "FAIL")]}, "alice", "demo_user", "demo")
    rid = db.insert_request(engine, new)
    other = db.insert_request(engine, parse_request(
        {"Operations": [op("RemoveFile")]}, "bob", "demo_user", "demo"))
    req = db.get_request(engine, rid)
    assert (req.name, req.owner, req.job_id, req.status, req.attempts) == (
        "outs", "alice", 7, db.WAITING, 0)
    assert [o.type for o in req.operations] == ["RegisterFile", "ReplicateAndRegister",
                                                "RemoveReplica"]
    assert req.operations[1].target_ses == ["A", "B"]
    first = req.operations[0].files[0]
    assert (first.lfn, first.size, first.checksum, first.guid, first.status) == (
        "/demo/user/a/alice/f", 3, "0a1b2c3d", "g-1", db.WAITING)
    wire = to_wire(req)
    assert wire["RequestID"] == rid and wire["Operations"][1]["TargetSE"] == "A,B"
    assert wire["Operations"][0]["Files"][0]["GUID"] == "g-1"
    assert [r.request_id for r in db.find_requests(engine, owner="alice")] == [rid]
    assert [r.request_id for r in db.find_requests(engine, job_ids=[7, 8])] == [rid]
    assert [r.request_id for r in db.find_requests(engine, status=db.WAITING)] == [rid, other]
    assert [r.request_id for r in db.find_requests(engine, limit=1)] == [rid]
    with pytest.raises(NotFoundError, match="does not exist"):
        db.get_request(engine, 999_999)


def test_claims_outcomes_and_cancel(engine: Engine) -> None:
    now = utcnow()
    ready = db.insert_request(engine, parse_request({"Operations": [op("RemoveFile")]},
                                                    "alice", "g", "demo"))
    later = db.insert_request(engine, parse_request({"Operations": [op("RemoveFile")]},
                                                    "alice", "g", "demo"),
                              not_before=now + timedelta(hours=1))
    stale = timedelta(minutes=10)
    taken = db.claim(engine, "agent-1", 10, stale, now=now)
    assert [r.request_id for r in taken] == [ready]  # the other is not due yet
    assert db.claim(engine, "agent-2", 10, stale, now=now) == []  # never twice
    # agent-1 dies: after stale_after its claim may be taken over
    again = db.claim(engine, "agent-2", 10, stale, now=now + timedelta(minutes=11))
    assert [r.request_id for r in again] == [ready]
    req = again[0]
    req.status, req.attempts, req.error = db.WAITING, 1, "SE down"
    req.not_before = now + timedelta(minutes=2)
    req.operations[0].files[0].status, req.operations[0].files[0].error = "Failed", "SE down"
    db.save_outcome(engine, req)
    stored = db.get_request(engine, ready)
    assert (stored.status, stored.attempts, stored.error) == (db.WAITING, 1, "SE down")
    assert stored.operations[0].files[0].error == "SE down"
    assert db.claim(engine, "agent-1", 10, stale, now=now + timedelta(minutes=1)) == []
    assert [r.request_id for r in db.claim(engine, "agent-1", 10, stale,
                                           now=now + timedelta(minutes=3))] == [ready]
    # a cancel while an agent works on it wins over the agent's outcome
    assert db.cancel(engine, ready)
    req.status = db.DONE
    db.save_outcome(engine, req)
    assert db.get_request(engine, ready).status == db.CANCELED
    assert not db.cancel(engine, ready)  # final already
    assert db.cancel(engine, later) and db.get_request(engine, later).status == db.CANCELED
    assert db.claim(engine, "agent-1", 10, stale, now=now + timedelta(days=1)) == []
