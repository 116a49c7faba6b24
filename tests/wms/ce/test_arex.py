"""The ARC CE and the site director's pilots against a REAL A-REX: Debian 12's NorduGrid ARC
6.17 with the fork LRMS on 127.0.0.1 (tests/support/arex.py), REST interface 1.0, real
delegation, jobs run as the mapped local account.

What only the stand-in (tests/support/arc.py, tests/wms/ce/test_arc.py) still covers: ARC 7
bearer tokens (A-REX 6.17 has none) and faults a real A-REX cannot be made to show on demand
(5xx answers, a batch refused half-way).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from tests.support.arex import AREX, USER
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer

from core.config.schema import Config
from core.db import init_schema, make_engine
from core.rpc.runner import available_services
from core.security.ca import CertificateAuthority, write_pem
from core.security.x509 import identity_from_chain, load_pem_chain
from wms.agents.site_director import SiteDirector
from wms.ce.arc import ARCComputingElement, rest_status
from wms.ce.base import PilotStatus
from wms.db.schema import WMS_SCHEMA


@pytest.fixture(scope="module")
def arex(creds: Creds, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AREX]:
    base = tmp_path_factory.mktemp("arex-pki")
    ca = CertificateAuthority.load(creds.instance.directory / "ca")
    cert, key = ca.issue("localhost", kind="host", extra_dns_names=["127.0.0.1"])
    alice = identity_from_chain(load_pem_chain(creds.alice[0].read_bytes())).dn
    with AREX(creds.ca_dir, write_pem(base / "hostcert.pem", cert),
              write_pem(base / "hostkey.pem", key, 0o600), allowed_dns=[alice]) as server:
        yield server


@pytest.fixture(scope="module")
def proxy(creds: Creds) -> Path:
    return creds.proxy(creds.alice, group="demo_user")


def arc_settings(arex: AREX, proxy: Path) -> dict[str, Any]:
    return {"Host": "127.0.0.1", "Port": arex.port, "CADir": str(arex.ca_dir),
            "Proxy": str(proxy)}


def job_of(ref: str) -> str:
    return ref.rsplit("/", 1)[1]


def test_pilot_life_cycle_on_a_real_arex(arex: AREX, proxy: Path) -> None:
    """Done, Failed, Aborted and Deleted pilots, the REST states A-REX reports on the way
    and what each maps to, the output, the mapped account, the delegated proxy."""
    tag = uuid.uuid4().hex
    with ARCComputingElement("arex", arc_settings(arex, proxy)) as ce:
        assert isinstance(ce, ARCComputingElement)
        good = ce.submit('#!/bin/sh\necho "hello $GREETING as $(id -un)"\n'
                         'grep -c "BEGIN CERTIFICATE" "$X509_USER_PROXY"\necho warn >&2\n',
                         queue="fork", wall_seconds=600, env={"GREETING": "arex"})[0]
        bad = ce.submit("#!/bin/sh\necho failing\nexit 3\n", queue="fork")[0]
        long = ce.submit(f"#!/bin/sh\nexec sleep 300 # {tag}\n", queue="fork")[0]
        # a job waiting for an input file that never comes stays PREPARING
        reply = ce._request("POST", "jobs", params={"action": "new"},  # noqa: SLF001
                            data='&(executable="run.sh")(inputfiles=("run.sh" ""))',
                            headers={"Content-Type": "application/rsl"})
        waiting = f"arc://127.0.0.1/{reply.json()['job']['id']}"
        refs = [good, bad, long, waiting]
        # the delegation made for these jobs is found and reused by another CE object
        with ARCComputingElement("arex", arc_settings(arex, proxy)) as again:
            assert isinstance(again, ARCComputingElement)
            assert again.delegation_id() == ce.delegation_id()

        seen: dict[str, list[tuple[str, PilotStatus]]] = {r: [] for r in refs}

        def poll() -> dict[str, PilotStatus]:
            raw = ce._jobs_action("status", [job_of(r) for r in refs])  # noqa: SLF001
            mapped = ce.status(refs)
            for ref in refs:
                pair = (str(raw[job_of(ref)].get("state")), mapped[ref])
                if not seen[ref] or seen[ref][-1] != pair:
                    seen[ref].append(pair)
            return mapped

        deadline = time.monotonic() + 150
        killed = False
        while time.monotonic() < deadline:
            states = poll()
            if not killed and states[long] == PilotStatus.RUNNING:
                ce.kill([long])
                killed = True
            if (states[good].is_final and states[bad].is_final
                    and seen[long][-1][0] in ("KILLED", "FAILED")):
                break
            time.sleep(1)
        assert states == {good: PilotStatus.DONE, bad: PilotStatus.FAILED,
                          long: PilotStatus.ABORTED, waiting: PilotStatus.WAITING}, \
            (seen, arex.logs())
        # every REST state seen maps as documented (and through rest_status)
        observed = {state for pairs in seen.values() for state, _ in pairs}
        for pairs in seen.values():
            for state, status in pairs:
                if state != "FINISHED":
                    assert rest_status(state) == status, (state, status)
        assert {"ACCEPTED", "FINISHED", "KILLING"} <= observed, seen
        assert seen[long][-1][0] == "KILLED", seen[long]
        assert observed & {"RUNNING", "EXITINGLRMS"}, seen
        assert seen[waiting][-1][0] == "PREPARING", seen[waiting]
        assert seen[bad][-1][0] in ("FINISHED", "FAILED"), seen[bad]
        print(f"\nA-REX states seen: {sorted(observed)}; {seen}")

        out, err = ce.output(good)
        assert out.splitlines()[0] == f"hello arex as {USER}", out
        assert int(out.splitlines()[1]) >= 2, out  # the delegated proxy and its chain
        assert err == "warn\n"
        assert ce.output(bad)[0] == "failing\n"
        # the fork LRMS leaves a killed job's payload running (A-REX's cancel kills only the
        # watcher shell): the test stops it by PID, as a site's cleanup would
        arex.kill_job_processes()
        ce.cleanup(refs)  # queued by A-REX ("202"): the jobs go within a few seconds
        deadline = time.monotonic() + 60
        while set(ce.status(refs).values()) != {PilotStatus.DELETED}:
            assert time.monotonic() < deadline, (ce.status(refs), arex.logs())
            time.sleep(1)


@pytest.fixture
def wms(config: Config) -> Iterator[ThreadedServer]:
    engine = make_engine(config.database_url("WorkloadManagement"))
    init_schema(engine, WMS_SCHEMA)
    engine.dispose()
    with ThreadedServer(config, available_services().values()) as srv:
        yield srv


def call(server: ThreadedServer, creds: Creds, service: str, method: str, *args: Any) -> Any:
    reply = requests.post(f"{server.url}/WorkloadManagement/{service}",
                          data={"method": method, "args": json.dumps(list(args))},
                          cert=tuple(map(str, creds.alice)), verify=str(creds.ca_dir),
                          timeout=60)
    body = reply.json()
    assert body["OK"], body
    return body["Value"]


def test_site_director_pilots_run_jobs_on_a_real_arex(arex: AREX, proxy: Path, config: Config,
                                                      wms: ThreadedServer,
                                                      creds: Creds) -> None:
    """The site director submits the real pilot to A-REX; it runs there as the mapped
    account, reaches our server, runs both jobs to Done; the director stores its output and
    has the CE clean the job."""
    data = config.model_dump(by_alias=True, exclude_none=True)
    data["Resources"] = {"Sites": {"Grid.AREX.site": {"CEs": {"arex": {
        "CEType": "ARC", "Settings": arc_settings(arex, proxy),
        "Queues": {"fork": {"MaxCPUTime": 3600, "MaxWallTime": 3600,
                            "MaxWaitingPilots": 1, "MaxTotalPilots": 1}}}}}}}
    data["Operations"] = {"Pilot": {"URLs": [wms.url], "MaxFailedMatches": 2, "Poll": 0.5,
                                    "Heartbeat": 1}}
    cfg = Config.model_validate(data)
    jobs = [call(wms, creds, "JobManager", "submitJob",
                 f'[Executable = "/bin/sh"; Arguments = "-c \'echo arex job {i} $(id -un)\'";'
                 ' CPUTime = 600; OutputSandbox = {"std.out"};]') for i in range(2)]
    director = SiteDirector(cfg, instance="arex", period=1)
    try:
        deadline = time.monotonic() + 180
        states: dict[str, Any] = {}
        while time.monotonic() < deadline:
            director.run_once()
            states = call(wms, creds, "JobMonitoring", "getJobsStatus", jobs)
            if all(v["Status"] in ("Done", "Failed") for v in states.values()):
                break
            time.sleep(2)
        assert {v["Status"] for v in states.values()} == {"Done"}, (states, arex.logs())
        params = call(wms, creds, "JobMonitoring", "getJobParameters", jobs[0])
        params = params.get(str(jobs[0]), params)
        assert params["LocalAccount"] == USER, params  # the pilot ran as the mapped account
        pilots = call(wms, creds, "PilotManager", "getPilots", jobs[0])
        assert len(pilots) == 1 and next(iter(pilots)).startswith("arc://127.0.0.1/")
        # the pilot stops after 2 failed matches; A-REX reports it FINISHED, the director
        # records it Done with its output, then has A-REX clean the job
        info: dict[str, Any] = {}
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            director.run_once()
            info = call(wms, creds, "PilotManager", "getPilots", jobs[0])
            if all(p["Status"] in ("Done", "Failed", "Aborted") for p in info.values()):
                break
            time.sleep(2)
        assert {p["Status"] for p in info.values()} == {"Done"}, (info, arex.logs())
        output = call(wms, creds, "PilotManager", "getJobPilotOutput", jobs[0])
        assert "pilot" in (output["StdOut"] + output["StdErr"]), output
        ref = next(iter(info))
        with ARCComputingElement("check", arc_settings(arex, proxy)) as ce:
            wait = time.monotonic() + 30
            while ce.status([ref])[ref] != PilotStatus.DELETED and time.monotonic() < wait:
                director.run_once()
                time.sleep(1)
            assert ce.status([ref])[ref] == PilotStatus.DELETED  # cleaned on A-REX
    finally:
        director.stop()
        director.run(once=True)
