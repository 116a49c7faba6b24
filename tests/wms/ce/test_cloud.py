"""The Cloud CE against the Keystone + Nova stand-in (tests/support/openstack.py): real TLS,
real HTTP, the user data really run as a local "VM" process group."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.credentials import Creds
from tests.support.openstack import OpenStackStandIn
from tests.wms.ce.grid_helpers import wait_live
from tests.wms.ce.helpers import live_processes_with, wait_final, wait_status

from core.exceptions import ConfigError
from wms.ce.base import CEError, PilotStatus, ce_class
from wms.ce.cloud import MAX_USER_DATA, CloudComputingElement, encode_user_data, user_data


@pytest.fixture
def cloud(creds: Creds, tmp_path: Path) -> Iterator[OpenStackStandIn]:
    with OpenStackStandIn(tmp_path / "cloud", host_cert=creds.host[0],
                          host_key=creds.host[1]) as server:
        yield server


def settings(cloud: OpenStackStandIn, creds: Creds, **extra: Any) -> dict[str, Any]:
    base = {"AuthURL": cloud.auth_url, "Username": "pilots", "Password": "s3cret",
            "Project": "pilotproject", "Image": "img-debian", "Flavor": "m1.small",
            "CADir": str(creds.ca_dir)}
    return {**base, **extra}


@pytest.fixture
def ce(cloud: OpenStackStandIn, creds: Creds) -> Iterator[CloudComputingElement]:
    with CloudComputingElement("cloud-ce", settings(cloud, creds)) as c:
        assert isinstance(c, CloudComputingElement)
        yield c


def sent_servers(cloud: OpenStackStandIn) -> int:
    return sum(1 for m, u in cloud.requests if m == "POST" and u.endswith("/servers"))


def test_type_is_registered() -> None:
    assert ce_class("Cloud") is CloudComputingElement


def test_vm_runs_the_pilot_to_done(ce: CloudComputingElement, cloud: OpenStackStandIn) -> None:
    refs = ce.submit("#!/bin/sh\necho \"pilot says $GREETING\"\necho oops >&2\n", 2,
                     queue="vm", env={"GREETING": "hello cloud"})
    assert len(refs) == 2 and all(r.startswith("cloud://localhost/") for r in refs)
    assert ce.status(refs) == {r: PilotStatus.WAITING for r in refs}  # BUILD
    [server] = [s for s in cloud.servers.values() if s.id == refs[0].rsplit("/", 1)[1]]
    assert server.flavor == "f-small" and server.metadata["pilotwms-queue"] == "vm"
    assert cloud.last_user_data.startswith(b"#!/bin/sh\n")
    assert wait_final(ce, refs) == {r: PilotStatus.DONE for r in refs}
    console, err = ce.output(refs[0])
    assert "pilot says hello cloud\n" in console and "oops\n" in console
    assert "pilotwms-pilot-exit-code: 0" in console and err == ""
    assert cloud.servers == {}  # powered-off VMs are deleted
    assert ce.status(refs) == {r: PilotStatus.DONE for r in refs}


def test_failing_pilot_is_failed(ce: CloudComputingElement) -> None:
    [ref] = ce.submit("#!/bin/sh\nexit 3\n", queue="vm")
    assert wait_final(ce, [ref])[ref] == PilotStatus.FAILED
    assert "pilotwms-pilot-exit-code: 3" in ce.output(ref)[0]


def test_script_that_never_powers_off_stays_active(cloud: OpenStackStandIn,
                                                   creds: Creds) -> None:
    """The stand-in is not lenient: a VM whose boot script just ends keeps running (so the
    CE's own user data must power off), and Keystone/Nova speak their real JSON."""
    import time

    import requests

    auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "pilots", "domain": {"name": "Default"}, "password": "s3cret"}}},
        "scope": {"project": {"name": "pilotproject", "domain": {"name": "Default"}}}}}
    ca = str(creds.ca_dir)
    reply = requests.post(f"{cloud.auth_url}/auth/tokens", json=auth, verify=ca, timeout=10)
    assert reply.status_code == 201
    token = reply.headers["X-Subject-Token"]
    nova = f"{cloud.url}/compute/v2.1"
    data = base64.b64encode(b"#!/bin/sh\necho booted\n").decode()
    reply = requests.post(f"{nova}/servers", verify=ca, timeout=10, headers={
        "X-Auth-Token": token, "OpenStack-API-Version": "compute 2.37"}, json={"server": {
            "name": "x", "imageRef": "img-debian", "flavorRef": "f-small", "user_data": data,
            "networks": "none"}})
    assert reply.status_code == 202
    ident = reply.json()["server"]["id"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        server = cloud.servers[ident]
        if server.payload is not None and server.payload.poll() is not None:
            break
        time.sleep(0.1)
    reply = requests.get(f"{nova}/servers/{ident}", verify=ca, timeout=10,
                         headers={"X-Auth-Token": token})
    assert reply.json()["server"]["status"] == "ACTIVE"
    reply = requests.post(f"{nova}/servers/{ident}/action", verify=ca, timeout=10,
                          headers={"X-Auth-Token": token},
                          json={"os-getConsoleOutput": {"length": 5}})
    assert reply.json() == {"output": "booted\n"}
    reply = requests.get(f"{nova}/servers/{ident}", verify=ca, timeout=10,
                         headers={"X-Auth-Token": "bogus"})
    assert reply.status_code == 401


def test_lifetime_watchdog_powers_off(ce: CloudComputingElement) -> None:
    marker = f"cloud-life-{uuid.uuid4().hex}"
    [ref] = ce.submit(f"#!/bin/sh\nsh -c 'sleep 300; : {marker}'\n", queue="vm",
                      wall_seconds=2)
    assert wait_final(ce, [ref])[ref] == PilotStatus.FAILED
    assert "VM lifetime of 2 s reached" in ce.output(ref)[0]
    assert live_processes_with(marker) == []


def test_overage_vm_is_deleted(ce: CloudComputingElement, cloud: OpenStackStandIn) -> None:
    [ref] = ce.submit("#!/bin/sh\nsleep 300\n", queue="vm")
    assert wait_status(ce, ref, PilotStatus.RUNNING) == PilotStatus.RUNNING
    cloud.servers[ref.rsplit("/", 1)[1]].created = "2020-01-01T00:00:00Z"
    assert ce.status([ref])[ref] == PilotStatus.FAILED
    assert "older than MaxLifetime" in ce.output(ref)[0]
    assert cloud.servers == {}


def test_kill_aborts_and_stops_the_vm(ce: CloudComputingElement,
                                      cloud: OpenStackStandIn) -> None:
    marker = f"cloud-kill-{uuid.uuid4().hex}"
    [ref] = ce.submit(f"#!/bin/sh\nsh -c 'sleep 300; : {marker}' &\nsleep 300\n", queue="vm")
    assert wait_status(ce, ref, PilotStatus.RUNNING) == PilotStatus.RUNNING
    assert wait_live(marker)  # the payload's child has started
    ce.kill([ref])
    assert ce.status([ref])[ref] == PilotStatus.ABORTED
    assert cloud.servers == {} and live_processes_with(marker) == []
    ce.kill([ref])  # gone: a no-op


def test_nova_error_is_failed_with_its_fault(cloud: OpenStackStandIn, creds: Creds) -> None:
    with CloudComputingElement("cloud-ce", settings(cloud, creds, Image="img-broken")) as ce:
        [ref] = ce.submit("#!/bin/sh\ntrue\n", queue="vm")
        assert wait_final(ce, [ref])[ref] == PilotStatus.FAILED
        assert "No valid host" in ce.output(ref)[0]


def test_application_credential_and_token_renewal(cloud: OpenStackStandIn,
                                                  creds: Creds, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("appsecret\n")
    values = settings(cloud, creds, ApplicationCredentialID="appcred-1",
                      ApplicationCredentialSecretFile=str(secret), Flavor="f-small")
    for key in ("Username", "Password", "Project"):
        values.pop(key)
    with CloudComputingElement("cloud-ce", values) as ce:
        [ref] = ce.submit("#!/bin/sh\ntrue\n", queue="vm")
        cloud.expire_tokens()  # a 401 makes the CE log in again, once
        assert wait_final(ce, [ref])[ref] == PilotStatus.DONE
    logins = [u for m, u in cloud.requests if u.endswith("/auth/tokens")]
    assert len(logins) == 2


@pytest.mark.parametrize("override", [{"Password": "wrong"}, {"Project": "other"},
                                      {"Username": "nobody"}])
def test_bad_credentials_are_refused(cloud: OpenStackStandIn, creds: Creds,
                                     override: dict[str, str]) -> None:
    with CloudComputingElement("cloud-ce", settings(cloud, creds, **override)) as ce:
        with pytest.raises(CEError, match="Keystone refused the credentials"):
            ce.submit("#!/bin/sh\ntrue\n", queue="vm")
    assert sent_servers(cloud) == 0


def test_unknown_flavor_image_and_region(cloud: OpenStackStandIn, creds: Creds) -> None:
    with CloudComputingElement("c", settings(cloud, creds, Flavor="m1.huge")) as ce:
        with pytest.raises(CEError, match="flavor 'm1.huge' not found"):
            ce.submit("#!/bin/sh\ntrue\n", queue="vm")
    with CloudComputingElement("c", settings(cloud, creds, Image="img-none")) as ce:
        with pytest.raises(CEError, match="400.*img-none could not be found"):
            ce.submit("#!/bin/sh\ntrue\n", queue="vm")
    with CloudComputingElement("c", settings(cloud, creds, Region="RegionTwo")) as ce:
        with pytest.raises(CEError, match="no public compute endpoint in region RegionTwo"):
            ce.status(["cloud://localhost/0c3e5c3c-0000-4000-8000-000000000000"])


def test_server_errors_and_unknown_servers(ce: CloudComputingElement,
                                          cloud: OpenStackStandIn) -> None:
    unknown = "cloud://localhost/0c3e5c3c-0000-4000-8000-000000000000"
    assert ce.status([unknown, "cloud://elsewhere/0c3e5c3c", "ssh://x/1"]) == {
        unknown: PilotStatus.DELETED, "cloud://elsewhere/0c3e5c3c": PilotStatus.DELETED,
        "ssh://x/1": PilotStatus.DELETED}
    assert ce.output(unknown) == ("", "")
    with pytest.raises(ValueError, match="not a pilot reference"):
        ce.kill(["ssh://x/1"])
    cloud.fail_next = [500]
    with pytest.raises(CEError, match="500"):
        ce.status([unknown])
    cloud.fail_next = [503]
    with pytest.raises(CEError, match="503"):
        ce.submit("#!/bin/sh\ntrue\n", queue="vm")


def test_big_pilot_is_gzipped(ce: CloudComputingElement, cloud: OpenStackStandIn) -> None:
    filler = "# " + "pilot payload line\n# " * 4000  # ~90 KB, compresses well
    script = "#!/bin/sh\n" + filler + "\necho big pilot\n"
    [ref] = ce.submit(script, queue="vm")
    body = [u for m, u in cloud.requests if m == "POST" and u.endswith("/servers")]
    assert body
    assert cloud.last_user_data.startswith(b"#!/bin/sh\n")  # the stand-in gunzipped it
    assert wait_final(ce, [ref])[ref] == PilotStatus.DONE
    assert "big pilot" in ce.output(ref)[0]
    assert base64.b64decode(encode_user_data(user_data(script, 60)))[:2] == b"\x1f\x8b"


def test_too_big_pilot_is_a_clear_error(ce: CloudComputingElement,
                                        cloud: OpenStackStandIn) -> None:
    noise = base64.b64encode(os.urandom(60000)).decode()  # does not compress below 64 KB
    with pytest.raises(CEError, match=f"Nova accepts at most {MAX_USER_DATA}"):
        ce.submit(f"#!/bin/sh\n: '{noise}'\n", queue="vm")
    assert sent_servers(cloud) == 0


def test_user_data_refuses_its_own_tag() -> None:
    with pytest.raises(ValueError, match="PILOTWMS_CLOUD_PILOT"):
        user_data("#!/bin/sh\nPILOTWMS_CLOUD_PILOT\n", 60)


def test_network_key_and_metadata_settings(cloud: OpenStackStandIn, creds: Creds) -> None:
    net = "9d2a7b36-1c1e-4f57-9c3b-6f0e4d1b2a10"
    with CloudComputingElement("cloud-ce", settings(
            cloud, creds, Network=net, KeyName="ops-key", Metadata={"vo": "demo"})) as ce:
        seen: list[dict[str, Any]] = []
        original = ce.session.request

        def spy(method: str, url: str, **kw: Any) -> Any:
            if url.endswith("/servers") and method == "POST":
                seen.append(kw["json"]["server"])
            return original(method, url, **kw)

        ce.session.request = spy  # type: ignore[method-assign]
        [ref] = ce.submit("#!/bin/sh\ntrue\n", queue="vm")
        [server] = seen
        assert server["networks"] == [{"uuid": net}] and server["key_name"] == "ops-key"
        assert server["metadata"] == {"vo": "demo", "pilotwms-ce": "cloud-ce",
                                      "pilotwms-queue": "vm"}
        assert wait_final(ce, [ref])[ref] == PilotStatus.DONE


def test_request_shape(ce: CloudComputingElement, cloud: OpenStackStandIn) -> None:
    """What Nova receives: microversion, networks, flavor id, metadata."""
    seen: list[dict[str, Any]] = []
    original = ce.session.request

    def spy(method: str, url: str, **kw: Any) -> Any:
        if url.endswith("/servers") and method == "POST":
            seen.append({"json": kw["json"], "headers": kw["headers"]})
        return original(method, url, **kw)

    ce.session.request = spy  # type: ignore[method-assign]
    [ref] = ce.submit("#!/bin/sh\ntrue\n", queue="vm")
    [sent] = seen
    server = sent["json"]["server"]
    assert sent["headers"]["OpenStack-API-Version"] == "compute 2.37"
    assert server["networks"] == "auto" and server["flavorRef"] == "f-small"
    assert server["imageRef"] == "img-debian" and server["metadata"]["pilotwms-ce"] == "cloud-ce"
    assert json.dumps(server)  # JSON-serialisable as sent
    assert wait_final(ce, [ref])[ref] == PilotStatus.DONE


@pytest.mark.parametrize(("values", "message"), [
    ({}, "AuthURL is required"),
    ({"AuthURL": "keystone:5000"}, "http\\(s\\) URL"),
    ({"AuthURL": "https://k:5000/v2.0"}, "/v3"),
    ({"AuthURL": "https://k/v3"}, "needs ApplicationCredentialID or Username"),
    ({"AuthURL": "https://k/v3", "Username": "u"}, "Username needs Password"),
    ({"AuthURL": "https://k/v3", "Username": "u", "Password": "p"}, "Project is required"),
    ({"AuthURL": "https://k/v3", "ApplicationCredentialID": "a"}, "needs Application"),
    ({"AuthURL": "https://k/v3", "ApplicationCredentialID": "a",
      "ApplicationCredentialSecret": "s", "ApplicationCredentialSecretFile": "/x"},
     "not both"),
    ({"AuthURL": "https://k/v3", "Username": "u", "PasswordFile": "/nonexistent",
      "Project": "p"}, "PasswordFile"),
    ({"AuthURL": "https://k/v3", "Username": "u", "Password": "p", "Project": "p"},
     "Image is required"),
    ({"AuthURL": "https://k/v3", "Username": "u", "Password": "p", "Project": "p",
      "Image": "i"}, "Flavor is required"),
    ({"AuthURL": "https://k/v3", "Username": "u", "Password": "p", "Project": "p",
      "Image": "i", "Flavor": "f", "MaxLifetime": 10}, "MaxLifetime must be an integer >= 60"),
    ({"AuthURL": "https://k/v3", "Username": "u", "Password": "p", "Project": "p",
      "Image": "i", "Flavor": "f", "Interface": "private"}, "Interface must be"),
    ({"AuthURL": "https://k/v3", "Username": "u", "Password": "p", "Project": "p",
      "Image": "i", "Flavor": "f", "CADir": "/nonexistent"}, "not a directory"),
    ({"AuthURL": "https://k/v3", "Flavour": "f"}, "unknown setting"),
])
def test_bad_settings(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CloudComputingElement("cloud-ce", values)


def test_partial_submission_keeps_the_booting_vms(ce: CloudComputingElement,
                                                  cloud: OpenStackStandIn) -> None:
    first = ce.submit("#!/bin/sh\ntrue\n", queue="vm")  # logged in, flavor looked up
    cloud.fail_next = [None, 500]  # VM 1 created, VM 2 refused
    refs = ce.submit("#!/bin/sh\ntrue\n", 3, queue="vm")
    assert len(refs) == 1
    assert wait_final(ce, first + refs) == {r: PilotStatus.DONE for r in first + refs}


def test_status_of_many_is_one_list_request(ce: CloudComputingElement,
                                            cloud: OpenStackStandIn) -> None:
    refs = ce.submit("#!/bin/sh\nsleep 30\n", 3, queue="vm")
    gone = "cloud://localhost/0c3e5c3c-0000-4000-8000-000000000000"
    cloud.requests.clear()
    assert set(ce.status([*refs, gone]).values()) == {PilotStatus.WAITING,
                                                     PilotStatus.DELETED}
    assert [m for m, _ in cloud.requests] == ["GET"]
    assert "servers/detail?name=" in cloud.requests[0][1]
    # a truncated list: the servers it left out are asked one by one
    ce_list = ce._listed
    ce._listed = lambda: (dict(list(ce_list()[0].items())[:1]), False)  # type: ignore[method-assign]
    cloud.requests.clear()
    assert ce.status([*refs, gone])[gone] == PilotStatus.DELETED
    assert sum(1 for m, u in cloud.requests if "/servers/0" in u or
               any(r.rsplit("/", 1)[1] in u for r in refs)) == 3  # 2 servers + the gone one
    ce.kill(refs)
