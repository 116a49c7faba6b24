"""The ARC CE against the A-REX REST stand-in (tests/support/arc.py): real TLS with the test
PKI, real proxies and delegation, pilots run as real local processes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.arc import ARCStandIn, parse_xrsl
from tests.support.credentials import Creds
from tests.wms.ce.grid_helpers import wait_live
from tests.wms.ce.helpers import live_processes_with, wait_final, wait_status

from core.config.schema import Config
from core.exceptions import ConfigError
from core.security.tokens import TokenVerifier
from core.security.x509 import identity_from_chain, load_pem_chain
from wms.ce.arc import ARCComputingElement
from wms.ce.base import CEError, PilotStatus, ce_class


def dn_of(path: Path) -> str:
    return identity_from_chain(load_pem_chain(path.read_bytes())).dn


@pytest.fixture
def arc(creds: Creds, config: Config, tmp_path: Path) -> Iterator[ARCStandIn]:
    with ARCStandIn(tmp_path / "arex", ca_dir=creds.ca_dir, host_cert=creds.host[0],
                    host_key=creds.host[1], allowed_dns={dn_of(creds.alice[0])},
                    tokens=TokenVerifier(config.auth)) as server:
        yield server


@pytest.fixture
def alice_proxy(creds: Creds) -> Path:
    return creds.proxy(creds.alice, group="demo_user")


def settings(arc: ARCStandIn, creds: Creds, **extra: Any) -> dict[str, Any]:
    return {"Host": "localhost", "Port": arc.port, "CADir": str(creds.ca_dir), **extra}


@pytest.fixture
def ce(arc: ARCStandIn, creds: Creds, alice_proxy: Path) -> Iterator[ARCComputingElement]:
    with ARCComputingElement("arc-ce", settings(arc, creds, Proxy=str(alice_proxy))) as c:
        assert isinstance(c, ARCComputingElement)
        yield c


def test_type_is_registered() -> None:
    assert ce_class("ARC") is ARCComputingElement


def test_pilot_runs_to_done_with_delegated_proxy(ce: ARCComputingElement, arc: ARCStandIn,
                                                 creds: Creds) -> None:
    script = ("#!/bin/sh\necho \"hello $GREETING\"\necho warn >&2\n"
              "grep -c 'BEGIN CERTIFICATE' \"$X509_USER_PROXY\"\n")
    refs = ce.submit(script, 2, queue="default", processors=2, wall_seconds=600,
                     memory_mb=4000, env={"GREETING": "arc world"})
    assert len(refs) == 2 and all(r.startswith("arc://localhost/") for r in refs)
    assert wait_final(ce, refs) == {r: PilotStatus.DONE for r in refs}
    out, err = ce.output(refs[0])
    assert out.splitlines()[0] == "hello arc world"
    assert int(out.splitlines()[1]) >= 2  # proxy + alice's certificate
    assert err == "warn\n"
    # one delegation for both jobs; the jobs carry it, the description is what we sent
    assert [u for _, u in arc.requests if "delegations?action=new" in u] == [
        "/arex/rest/1.0/delegations?action=new"]
    job = arc.jobs[refs[0].rsplit("/", 1)[1]]
    assert job.desc["walltime"] == ["10"] and job.desc["memory"] == ["2000"]
    assert job.desc["count"] == ["2"] and job.delegation is not None
    proxy = (job.session / "user.proxy").read_bytes()
    assert identity_from_chain(load_pem_chain(proxy)).dn == dn_of(creds.alice[0])
    ce.cleanup(refs)
    assert ce.status(refs) == {r: PilotStatus.DELETED for r in refs}
    assert not job.session.exists()


def test_failing_pilot_is_failed(ce: ARCComputingElement) -> None:
    [ref] = ce.submit("#!/bin/sh\necho bad >&2\nexit 3\n", queue="default")
    assert wait_final(ce, [ref])[ref] == PilotStatus.FAILED
    assert ce.output(ref) == ("", "bad\n")


def test_kill_aborts_and_stops_the_process_tree(ce: ARCComputingElement) -> None:
    marker = f"arc-kill-{uuid.uuid4().hex}"
    [ref] = ce.submit(f"#!/bin/sh\nsh -c 'sleep 300; : {marker}' &\nsleep 300\n",
                      queue="default")
    assert wait_status(ce, ref, PilotStatus.RUNNING) == PilotStatus.RUNNING
    assert wait_live(marker)  # the payload's child has started
    ce.kill([ref])
    assert wait_final(ce, [ref])[ref] == PilotStatus.ABORTED
    assert live_processes_with(marker) == []
    ce.kill([ref])  # killing a finished pilot is a no-op


def test_unknown_and_foreign_references(ce: ARCComputingElement) -> None:
    refs = ["arc://localhost/0123456789abcdef", "arc://otherhost/abc", "slurm://x/1",
            "arc://localhost/bad/id"]
    assert ce.status(refs) == {r: PilotStatus.DELETED for r in refs}
    with pytest.raises(ValueError, match="not a pilot reference"):
        ce.kill(["slurm://x/1"])
    with pytest.raises(ValueError, match="not a pilot reference"):
        ce.output("arc://otherhost/abc")
    ce.kill(["arc://localhost/0123456789abcdef"])  # unknown job: ignored
    assert ce.output("arc://localhost/0123456789abcdef") == ("", "")


def test_unknown_queue_is_refused(ce: ARCComputingElement) -> None:
    with pytest.raises(CEError, match="queue nosuch is not served"):
        ce.submit("#!/bin/sh\ntrue\n", queue="nosuch")


def test_delegation_is_renewed_when_short(arc: ARCStandIn, creds: Creds,
                                          alice_proxy: Path) -> None:
    with ARCComputingElement("arc-ce", settings(
            arc, creds, Proxy=str(alice_proxy), DelegationLifetime=600,
            DelegationRenewSeconds=3600)) as ce:
        refs = ce.submit("#!/bin/sh\ntrue\n", queue="default")
        refs += ce.submit("#!/bin/sh\ntrue\n", queue="default")
        assert wait_final(ce, refs) == {r: PilotStatus.DONE for r in refs}
    urls = [u for _, u in arc.requests if "delegations" in u]
    assert sum("action=new" in u for u in urls) == 1
    assert sum("action=renew" in u for u in urls) == 1


def test_token_auth_without_delegation(arc: ARCStandIn, creds: Creds, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(creds.token("pilot", "demo_pilot") + "\n")
    with ARCComputingElement("arc-ce", settings(arc, creds, TokenFile=str(token))) as ce:
        [ref] = ce.submit("#!/bin/sh\necho \"proxy=${X509_USER_PROXY:-none}\"\n",
                          queue="default")
        assert wait_final(ce, [ref])[ref] == PilotStatus.DONE
        assert ce.output(ref)[0] == "proxy=none\n"
        token.write_text("not-a-token")
        with pytest.raises(CEError, match="refused us \\(401"):
            ce.status([ref])


def test_stranger_is_refused(arc: ARCStandIn, creds: Creds) -> None:
    with ARCComputingElement("arc-ce", settings(
            arc, creds, Proxy=str(creds.proxy(creds.stranger)))) as ce:
        with pytest.raises(CEError, match="refused us \\(403"):
            ce.submit("#!/bin/sh\ntrue\n", queue="default")


def test_foreign_ca_fails_tls(arc: ARCStandIn, creds: Creds, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.pem"
    foreign.write_bytes(creds.foreign[0].read_bytes() + creds.foreign[1].read_bytes())
    with ARCComputingElement("arc-ce", settings(arc, creds, Proxy=str(foreign),
                                                Delegation=False)) as ce:
        with pytest.raises(CEError, match="TLS|refused"):
            ce.status(["arc://localhost/0123456789abcdef"])


def test_server_errors_are_ce_errors(ce: ARCComputingElement, arc: ARCStandIn) -> None:
    arc.fail_next = [500]
    with pytest.raises(CEError, match="500"):
        ce.submit("#!/bin/sh\ntrue\n", queue="default")
    arc.fail_next = [503]
    with pytest.raises(CEError, match="503"):
        ce.status(["arc://localhost/0123456789abcdef"])
    [ref] = ce.submit("#!/bin/sh\ntrue\n", queue="default")  # and it recovers
    assert wait_final(ce, [ref])[ref] == PilotStatus.DONE


def test_unreachable_ce(creds: Creds, alice_proxy: Path) -> None:
    with ARCComputingElement("arc-ce", {"Host": "127.0.0.1", "Port": 1, "CADir":
                                        str(creds.ca_dir), "Proxy": str(alice_proxy)}) as ce:
        with pytest.raises(CEError, match="failed"):
            ce.status(["arc://127.0.0.1/0123456789abcdef"])


@pytest.mark.parametrize(("values", "message"), [
    ({}, "Host is required"),
    ({"Host": "https://ce.example.org"}, "host name, not a URL"),
    ({"Host": "ce", "Port": 0}, "Port must be an integer >= 1"),
    ({"Host": "ce"}, "CADir is required"),
    ({"Host": "ce", "CADir": "/nonexistent"}, "not a directory"),
    ({"Host": "ce", "CADir": "CA"}, "needs Proxy"),
    ({"Host": "ce", "CADir": "CA", "Proxy": "/nonexistent"}, "cannot load"),
    ({"Host": "ce", "CADir": "CA", "TokenFile": "/nonexistent"}, "does not exist"),
    ({"Host": "ce", "CADir": "CA", "TokenFile": "TOKEN", "Delegation": True},
     "Delegation needs a Proxy"),
    ({"Host": "ce", "CADir": "CA", "Proxy": "PROXY", "Timeout": "soon"}, "Timeout"),
    ({"Host": "ce", "Prxy": "x"}, "unknown setting"),
])
def test_bad_settings(values: dict[str, Any], message: str, creds: Creds, alice_proxy: Path,
                      tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    subst = {"CA": str(creds.ca_dir), "PROXY": str(alice_proxy), "TOKEN": str(token)}
    values = {k: subst.get(v, v) if isinstance(v, str) else v for k, v in values.items()}
    with pytest.raises(ConfigError, match=message):
        ARCComputingElement("arc-ce", values)


def test_certificate_without_key_is_refused(creds: Creds) -> None:
    with pytest.raises(ConfigError, match="no private key"):
        ARCComputingElement("arc-ce", {"Host": "ce", "CADir": str(creds.ca_dir),
                                       "Proxy": str(creds.alice[0])})


def test_xrsl_round_trip(ce: ARCComputingElement) -> None:
    text = ce.xrsl(queue='q "1"', processors=4, wall_seconds=61, memory_mb=1001,
                   delegation="abc")
    desc = parse_xrsl(text)
    assert desc["queue"] == ['q "1"'] and desc["walltime"] == ["2"]
    assert desc["memory"] == ["251"] and desc["countpernode"] == ["4"]
    assert desc["inputfiles"] == [["pilot.sh", ""]] and desc["delegationid"] == ["abc"]


def test_partial_submission_keeps_the_accepted_pilots(ce: ARCComputingElement,
                                                      arc: ARCStandIn) -> None:
    first = ce.submit("#!/bin/sh\ntrue\n", queue="default")  # delegation made
    arc.fail_next = [None, None, 500]  # job 1 created and uploaded, job 2 refused
    refs = ce.submit("#!/bin/sh\ntrue\n", 3, queue="default")
    assert len(refs) == 1
    assert wait_final(ce, first + refs) == {r: PilotStatus.DONE for r in first + refs}
    assert len(arc.jobs) == 2


def test_incomplete_status_reply_is_an_error(ce: ARCComputingElement, arc: ARCStandIn,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A reply that leaves a job out must not turn a running pilot into Deleted."""
    from tests.support import arc as arc_module

    [ref] = ce.submit("#!/bin/sh\nsleep 30\n", queue="default")
    monkeypatch.setattr(arc_module.JobsHandler, "status_of",
                        lambda self, job_id, job: {"status-code": "200", "state": "RUNNING",
                                                   "id": "someone-else"})
    with pytest.raises(CEError, match="no answer for 1 job"):
        ce.status([ref])
    monkeypatch.undo()
    ce.kill([ref])
    assert wait_final(ce, [ref])[ref] == PilotStatus.ABORTED


def test_every_ce_type_loads() -> None:
    from wms.ce import base

    for name in base._TYPES:
        assert ce_class(name).TYPE == name
    with pytest.raises(ConfigError, match="unknown CE type 'Globus'"):
        ce_class("Globus")


def test_delegation_of_an_earlier_process_is_reused(arc: ARCStandIn, creds: Creds,
                                                     alice_proxy: Path) -> None:
    def new_delegations() -> int:
        return sum("delegations?action=new" in u for _, u in arc.requests)

    for _ in range(2):  # two site director processes, one after the other
        with ARCComputingElement("arc-ce", settings(arc, creds, Proxy=str(alice_proxy))) as ce:
            [ref] = ce.submit("#!/bin/sh\ntrue\n", queue="default")
            assert wait_final(ce, [ref])[ref] == PilotStatus.DONE
    assert new_delegations() == 1 and len(arc.delegations) == 1
    # another group is another delegation
    other = creds.proxy(creds.alice, group="demo_admin")
    with ARCComputingElement("arc-ce", settings(arc, creds, Proxy=str(other))) as ce:
        [ref] = ce.submit("#!/bin/sh\ntrue\n", queue="default")
        assert wait_final(ce, [ref])[ref] == PilotStatus.DONE
    assert new_delegations() == 2
    # a short one is renewed rather than replaced
    with ARCComputingElement("arc-ce", settings(arc, creds, Proxy=str(alice_proxy),
                                                DelegationRenewSeconds=10**6)) as ce:
        ce.submit("#!/bin/sh\ntrue\n", queue="default")
    assert new_delegations() == 2
    assert sum("action=renew" in u for _, u in arc.requests) == 1
