"""Pilots over HTTPS: bookkeeping, the pilot-job link, and job-scoped tokens from the matcher
(they act on their job only; output sandboxes they upload belong to the job's owner)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer

from core.config.schema import Config
from core.db import init_schema, make_engine
from core.rpc.runner import available_services
from wms.db.schema import WMS_SCHEMA


@pytest.fixture
def server(config: Config, db_url: str) -> Iterator[ThreadedServer]:
    cfg = config.model_copy(update={"database": db_url})
    if not db_url.startswith("sqlite"):  # the sandbox store needs a directory on MariaDB
        data = cfg.model_dump(by_alias=True, exclude_none=True)
        data["Systems"] = {"WorkloadManagement": {"Services": {"SandboxStore": {"Options": {
            "BasePath": str(config.database_url("WorkloadManagement")
                            .removeprefix("sqlite:///").rsplit("/", 1)[0] + "/sb")}}}}}
        cfg = Config.model_validate(data)
    engine = make_engine(db_url)
    init_schema(engine, WMS_SCHEMA)
    engine.dispose()
    with ThreadedServer(cfg, available_services().values()) as srv:
        yield srv


def call(server: ThreadedServer, creds: Creds, service: str, method: str, *args: Any,
         token: str | None = None, cert: Any = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    reply = requests.post(f"{server.url}/WorkloadManagement/{service}",
                          data={"method": method, "args": json.dumps(list(args))},
                          headers=headers, cert=cert, verify=str(creds.ca_dir), timeout=60)
    return reply.json()  # type: ignore[no-any-return]


def test_pilot_life_and_job_token(server: ThreadedServer, creds: Creds) -> None:
    alice = tuple(map(str, creds.alice))
    host = tuple(map(str, creds.host))
    pilot = creds.token("pilot", "demo_pilot")
    ref = "local://wn1/1234"
    jdl = '[Executable = "/bin/echo"; Arguments = "x";]'
    job = call(server, creds, "JobManager", "submitJob", jdl, cert=alice)["Value"]
    other = call(server, creds, "JobManager", "submitJob", jdl, cert=alice)["Value"]

    assert call(server, creds, "PilotManager", "addPilotReferences", [ref], "demo_pilot",
                "Local", None, "Demo.Site", "ce1", "q1", cert=host)["OK"]
    assert call(server, creds, "PilotManager", "addPilotReferences", [ref], "demo_pilot",
                cert=alice)["OK"] is False  # users don't submit pilots
    assert call(server, creds, "PilotManager", "registerPilot", ref,
                {"Site": "Demo.Site", "CE": "ce1", "Queue": "q1", "Host": "wn1"},
                token=pilot)["OK"]
    match = call(server, creds, "Matcher", "requestJob",
                 {"Site": "Demo.Site", "CPUTime": 86400, "PilotReference": ref}, token=pilot)
    assert match["OK"], match
    matched, job_token = match["Value"]["JobID"], match["Value"]["JobToken"]
    assert matched in (job, other)
    unmatched = other if matched == job else job

    # the job token is the owner's, scoped to the job, without administrative properties
    who = requests.post(f"{server.url}/Framework/Registry", data={
        "method": "whoami", "args": "[]"}, headers={"Authorization": f"Bearer {job_token}"},
        verify=str(creds.ca_dir), timeout=60).json()["Value"]
    assert (who["username"], who["group"]) == ("alice", "demo_user")
    assert f"job:{matched}" in who["scopes"]
    assert set(who["properties"]) <= {"NormalUser", "ProductionManagement"}

    # the job token acts on its job only, and cannot take more jobs
    assert call(server, creds, "JobStateUpdate", "setJobStatus", matched, "Running",
                "Application", "JobWrapper", token=job_token)["OK"]
    refused = call(server, creds, "JobStateUpdate", "setJobStatus", unmatched, "Killed",
                   "x", "JobWrapper", token=job_token)
    assert refused["OK"] is False and "may not update" in refused["Message"]
    assert call(server, creds, "Matcher", "requestJob", {"Site": "Demo.Site"},
                token=job_token)["OK"] is False
    assert call(server, creds, "JobManager", "killJob", matched, token=job_token)["OK"] is False
    seen = call(server, creds, "JobMonitoring", "getJobsStatus", [job, other], token=job_token)
    assert list(seen["Value"]) == [str(matched)]

    # an output sandbox uploaded with the job token belongs to the job's owner
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:bz2") as tar:
        info = tarfile.TarInfo("std.out")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"hello\n"))
    data = buffer.getvalue()
    name = hashlib.md5(data).hexdigest() + ".tar.bz2"  # noqa: S324 - DIRAC's naming
    upload = call(server, creds, "SandboxStore", "streamFromClient",
                  [name, {f"Job:{matched}": "Output"}], "", len(data),
                  {"__dCls": "b64", "obj": __import__("base64").b64encode(data).decode()},
                  token=job_token)
    assert upload["OK"], upload
    assigned = call(server, creds, "SandboxStore", "getSandboxesAssignedToEntity",
                    f"Job:{matched}", cert=alice)["Value"]
    assert assigned["Output"] == [upload["Value"]]
    raw = requests.post(f"{server.url}/WorkloadManagement/SandboxStore",
                        data={"method": "streamToClient", "args": json.dumps([upload["Value"]]),
                              "rawContent": "true"}, cert=alice, verify=str(creds.ca_dir),
                        timeout=60)
    assert raw.content == data

    # bookkeeping, seen by the job's owner and by administrators
    assert call(server, creds, "PilotManager", "storePilotOutput", ref, "pilot log", "",
                token=pilot)["OK"]
    pilots = call(server, creds, "PilotManager", "getPilots", matched, cert=alice)["Value"]
    assert list(pilots) == [ref] and pilots[ref]["Status"] == "Running"
    assert pilots[ref]["GridSite"] == "Demo.Site" and pilots[ref]["Host"] == "wn1"
    assert call(server, creds, "PilotManager", "getJobPilotOutput", matched,
                cert=alice)["Value"] == {"StdOut": "pilot log", "StdErr": ""}
    assert call(server, creds, "PilotManager", "setPilotStatus", ref, "Done", None, "finished",
                cert=host)["Value"] == [ref]
    assert call(server, creds, "PilotManager", "setPilotStatus", ref, "Running",
                cert=host)["Value"] == []  # final statuses stay
    assert call(server, creds, "PilotManager", "setPilotStatus", ref, "Lost",
                cert=host)["OK"] is False
    info = call(server, creds, "PilotManager", "getPilotInfo", [ref], cert=host)["Value"][ref]
    assert info["Status"] == "Done" and info["Jobs"] == [matched]


def test_pilot_monitor_search_and_counters(server: ThreadedServer, creds: Creds) -> None:
    host = tuple(map(str, creds.host))
    alice = tuple(map(str, creds.alice))
    for site, ce, refs in (("Site.A", "ce-a", ["a/1", "a/2", "a/3"]), ("Site.B", "ce-b", ["b/1"])):
        assert call(server, creds, "PilotManager", "addPilotReferences",
                    [f"local://{r}" for r in refs], "demo_pilot", "Local", None, site, ce,
                    "q", cert=host)["OK"]
    assert call(server, creds, "PilotManager", "setPilotStatus", "local://a/2", "Running",
                cert=host)["OK"]
    # any registered user sees the pilots (the portal's pilot monitor), paged and sorted
    page = call(server, creds, "PilotManager", "searchPilots", {"GridSite": "Site.A"},
                "PilotID", True, 1, 2, cert=alice)["Value"]
    assert page["Total"] == 3
    assert [p["PilotJobReference"] for p in page["Records"]] == ["local://a/3", "local://a/2"]
    second = call(server, creds, "PilotManager", "searchPilots", {"GridSite": "Site.A"},
                  "PilotID", True, 2, 2, cert=alice)["Value"]
    assert [p["PilotJobReference"] for p in second["Records"]] == ["local://a/1"]
    counts = call(server, creds, "PilotManager", "getPilotCounters", ["GridSite", "Status"],
                  {}, cert=alice)["Value"]
    as_dict = {(c[0]["GridSite"], c[0]["Status"]): c[1] for c in counts}
    assert as_dict == {("Site.A", "Submitted"): 2, ("Site.A", "Running"): 1,
                       ("Site.B", "Submitted"): 1}
    running = call(server, creds, "PilotManager", "searchPilots",
                   {"Status": ["Running", "Done"]}, cert=alice)["Value"]
    assert [p["PilotJobReference"] for p in running["Records"]] == ["local://a/2"]
    for bad in (("searchPilots", {"Owner": "x"}), ("searchPilots", {}, "StdOut"),
                ("getPilotCounters", ["Nope"], {})):
        refused = call(server, creds, "PilotManager", *bad, cert=alice)
        assert refused["OK"] is False and refused["ExceptionClass"] == "InvalidArgumentError"
    assert call(server, creds, "PilotManager", "searchPilots", {}, "PilotID", True, 1, 5000,
                cert=alice)["OK"] is False
    assert call(server, creds, "PilotManager", "searchPilots", {})["OK"] is False  # anonymous


#: each was an HTTP 500 (found by tests/fuzz/test_rpc_methods.py once its dictionaries had
#: the attribute names the services know): a dict or a nested list as a filter value reached
#: SQL, and so did text or a number for a time column (UTCDateTime wants a datetime)
BAD_FILTERS: list[tuple[str, list[Any], str]] = [
    ("searchPilots", [{"Status": {"a": 1}}], "items must be"),
    ("searchPilots", [{"Status": [[1]]}], "items must be"),
    ("searchPilots", [{"Status": [True]}], "'Status': True is not a text"),
    ("searchPilots", [{"SubmissionTime": "x"}], "bad SubmissionTime 'x'"),
    ("searchPilots", [{"SubmissionTime": 5}], "'SubmissionTime': a time is expected"),
    ("searchPilots", [{"LastUpdateTime": [""]}], "'LastUpdateTime': a time is expected"),
    ("searchPilots", [{"PilotID": "²"}], "'PilotID': '²' is not a pilot ID"),
    ("getPilotCounters", [["Status"], {"Status": {"a": 1}}], "items must be"),
    ("getPilotCounters", [["Status"], {"SubmissionTime": ["2026-01-01", 1.5]}],
     "'SubmissionTime': a time is expected"),
    ("selectPilots", [{"SubmissionTime": "x"}], "bad SubmissionTime 'x'"),
    ("selectPilots", [{"OutputReady": "yes"}], "'OutputReady': 'yes' is not a boolean"),
    ("selectPilots", [{"GridSite": {"__dCls": "b64", "obj": "AAEC"}}], "not bytes"),
]


def test_bad_pilot_filters_are_clear_errors(server: ThreadedServer, creds: Creds) -> None:
    """Regression: the calls of BAD_FILTERS were HTTP 500s; the accepted forms select."""
    host = tuple(map(str, creds.host))
    assert call(server, creds, "PilotManager", "addPilotReferences", ["local://f/1"],
                "demo_pilot", "Local", None, "Site.F", "ce-f", "q", cert=host)["OK"]
    for method, args, message in BAD_FILTERS:
        reply = call(server, creds, "PilotManager", method, *args, cert=host)
        assert reply["OK"] is False and reply["Errno"] == 22, (method, args, reply)
        assert message in reply["Message"], (method, args, reply)
    queues = call(server, creds, "QueueMonitoring", "getQueues", {"Tag": {"a": 1}}, cert=host)
    assert queues["OK"] is False and "items must be str, not dict" in queues["Message"], queues
    # the accepted forms: DIRAC's time text, a JEncoded datetime, numbers for text columns
    record = call(server, creds, "PilotManager", "searchPilots", {}, cert=host)
    submitted = record["Value"]["Records"][0]["SubmissionTime"]["obj"][:19]
    for when, total in ((submitted, 1), ([{"__dCls": "dt", "obj": submitted}], 1),
                        ("2000-01-01", 0), (["2000-01-01 00:00:00", submitted], 1)):
        reply = call(server, creds, "PilotManager", "searchPilots", {"SubmissionTime": when},
                     cert=host)
        assert reply["OK"] and reply["Value"]["Total"] == total, (when, reply)
    counters = call(server, creds, "PilotManager", "getPilotCounters", ["GridSite"],
                    {"SubmissionTime": submitted}, cert=host)
    assert counters == {"OK": True, "Value": [[{"GridSite": "Site.F"}, 1]]}, counters
    selected = call(server, creds, "PilotManager", "selectPilots",
                    {"GridSite": "Site.F", "OutputReady": False, "PilotID": ["1", 1]},
                    cert=host)
    assert selected == {"OK": True, "Value": ["local://f/1"]}, selected
    assert call(server, creds, "PilotManager", "searchPilots", {"Queue": 5, "GridSite": 1.5},
                cert=host)["Value"]["Total"] == 0
