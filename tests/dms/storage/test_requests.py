"""Failover requests: validation, the request table on both databases (claims never overlap,
dead agents' claims are taken over, cancellation wins over a late save) and the ReqManager
service's ownership rules."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.db import init_schema, make_engine, utcnow
from core.exceptions import InvalidArgumentError, NotAuthorizedError
from dms.db import rms as db
from dms.logic.rms import backoff, parse_request
from dms.request_client import ReqManagerClient
from tests.dms.storage.conftest import DMS

OP = {"Type": "RemoveFile", "Files": [{"LFN": "/demo/user/a/alice/f"}]}


@pytest.mark.parametrize(("wire", "message"), [
    ([], "a request is a dict"),
    ({"Operations": []}, "non-empty list of Operations"),
    ({"Operations": [{"Type": "Teleport", "Files": [{"LFN": "/x"}]}]}, "Type must be one of"),
    ({"Operations": [{"Type": "ReplicateAndRegister", "Files": [{"LFN": "/x"}]}]},
     "needs a TargetSE"),
    ({"Operations": [{"Type": "RemoveFile", "Files": [{"LFN": "x"}]}]}, "absolute LFN"),
    ({"Operations": [{"Type": "RemoveFile", "Files": []}]}, "non-empty list"),
    ({"Operations": [{"Type": "RegisterFile", "TargetSE": "S", "Files": [{"LFN": "/x"}]}]},
     "needs Size, Checksum, GUID"),
    ({"JobID": "12", "Operations": [OP]}, "JobID must be an integer"),
])
def test_invalid_requests_are_refused_with_the_reason(wire: object, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        parse_request(wire, "alice", "demo_user", "demo")


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff(a, 60, 600) for a in range(6)] == [60, 120, 240, 480, 600, 600]


def test_claims_never_overlap_and_dead_claims_are_taken_over(db_url: str) -> None:
    engine = make_engine(db_url)
    init_schema(engine, db.REQUEST_SCHEMA)
    new = parse_request({"Operations": [OP]}, "alice", "demo_user", "demo")
    ids = [db.insert_request(engine, new) for _ in range(5)]
    later = db.insert_request(engine, new, not_before=utcnow() + timedelta(hours=1))
    first = db.claim(engine, "agent-1", 3, timedelta(minutes=30))
    second = db.claim(engine, "agent-2", 3, timedelta(minutes=30))
    got1, got2 = {r.request_id for r in first}, {r.request_id for r in second}
    assert not got1 & got2 and got1 | got2 == set(ids)  # the future one is not due
    assert all(r.status == db.ASSIGNED for r in first + second)
    assert db.claim(engine, "agent-3", 10, timedelta(minutes=30)) == []
    # agent-1 died: after the stale time its requests go to whoever asks
    stolen = db.claim(engine, "agent-3", 10, timedelta(minutes=30),
                      now=utcnow() + timedelta(minutes=31))
    assert {r.request_id for r in stolen} == got1 | got2
    # cancelled while assigned: the late save of the agent does not revive it
    victim = stolen[0]
    assert db.cancel(engine, victim.request_id) is True
    victim.status = db.DONE
    db.save_outcome(engine, victim)
    assert db.get_request(engine, victim.request_id).status == db.CANCELED
    assert db.cancel(engine, victim.request_id) is False
    assert [r.request_id for r in db.find_requests(engine, status=db.WAITING)] == [later]
    engine.dispose()


def test_req_manager_ownership(dms_server: DMS) -> None:
    alice = ReqManagerClient(dms_server.rpc("RequestManagement/ReqManager"))
    host = ReqManagerClient(dms_server.rpc("RequestManagement/ReqManager", "host"))
    bob = ReqManagerClient(dms_server.rpc("RequestManagement/ReqManager", "bob"))
    # a user cannot file requests for somebody else: Owner is ignored
    rid = alice.put_request({"RequestName": "r", "Owner": "bob", "OwnerGroup": "demo_guest",
                             "Operations": [OP]})
    assert alice.get_request(rid)["Owner"] == "alice"
    # a trusted host (a pilot's job wrapper) files for the job's owner
    hid = host.put_request({"RequestName": "h", "JobID": 7, "Owner": "bob",
                            "OwnerGroup": "demo_guest", "Operations": [OP]})
    req = bob.get_request(hid)
    assert (req["Owner"], req["OwnerGroup"], req["JobID"], req["Status"]) == (
        "bob", "demo_guest", 7, "Waiting")
    with pytest.raises(InvalidArgumentError, match="Owner/OwnerGroup"):
        host.put_request({"Owner": "bob", "OwnerGroup": "demo_user", "Operations": [OP]})
    with pytest.raises(NotAuthorizedError):
        bob.get_request_status(rid)
    with pytest.raises(NotAuthorizedError):
        bob.cancel_request(rid)
    assert bob.get_request_ids_for_jobs([7]) == {7: hid}
    # job IDs that are none (found by the RPC fuzzer: "²" and 19 nines were HTTP 500s) are
    # not looked up; an ID as text is
    assert bob.rpc.call("getRequestIDsForJobs", ["²", "9" * 19, "1" * 25, -1, "7"]) == {
        "Successful": {"7": hid}, "Failed": {}}
    assert alice.get_request_ids_for_jobs([7]) == {}
    assert alice.cancel_request(rid) is True
    assert host.get_request_status(rid) == "Canceled"
    with pytest.raises(InvalidArgumentError, match="Type must be one of"):
        alice.put_request({"Operations": [{"Type": "Nope", "Files": [{"LFN": "/x"}]}]})
