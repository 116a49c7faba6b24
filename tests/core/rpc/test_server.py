"""The HTTPS server end to end: identities, the rights matrix, the envelope and its statuses.

Requests are made with plain ``requests.post`` as DIRAC users' scripts do.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import requests

from core.config.schema import Config
from tests.core.rpc.conftest import Creds, ProbeService
from tests.support.servers import ThreadedServer

Cert = tuple[Path, Path] | Path | None


def post(server: ThreadedServer, creds: Creds, method: str | None, *, cert: Cert = None,
         token: str | None = None, path: str = "Test/Probe", **form: Any) -> requests.Response:
    data = dict(form)
    if method is not None:
        data["method"] = method
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    cert_arg = (str(cert[0]), str(cert[1])) if isinstance(cert, tuple) else (
        str(cert) if cert else None)
    return requests.post(f"{server.url}/{path}", data=data, cert=cert_arg,
                         verify=str(creds.ca_dir), headers=headers, timeout=30)


# -- identities (the "done when") ----------------------------------------------------


def test_whoami_with_a_user_certificate(probe_server: ThreadedServer, creds: Creds) -> None:
    reply = post(probe_server, creds, "whoami", cert=creds.alice)
    assert reply.status_code == 200
    body = reply.json()
    assert body["OK"] is True
    who = body["Value"]
    assert who["DN"] == "/O=pilotwms/OU=Users/CN=alice"
    assert who["identity"] == who["DN"] == who["subject"]
    assert who["issuer"] == "/O=pilotwms/CN=pilotwms demo CA"
    assert (who["username"], who["group"], who["VO"]) == ("alice", "demo_user", "demo")
    assert who["properties"] == ["NormalUser"]
    assert who["isProxy"] is False and who["validDN"] and who["validGroup"]
    assert 0 < who["secondsLeft"] <= 366 * 86400


def test_whoami_with_a_proxy_carrying_a_group(probe_server: ThreadedServer,
                                               creds: Creds) -> None:
    proxy = creds.proxy(creds.admin, group="demo_admin")
    who = post(probe_server, creds, "whoami", cert=proxy).json()["Value"]
    assert who["DN"] == who["identity"] == "/O=pilotwms/OU=Users/CN=admin"
    assert who["subject"].startswith("/O=pilotwms/OU=Users/CN=admin/CN=")
    assert who["issuer"] == "/O=pilotwms/OU=Users/CN=admin"
    assert who["group"] == "demo_admin"
    assert who["properties"] == ["JobAdministrator", "NormalUser", "Operator"]
    assert who["isProxy"] is True and who["isLimitedProxy"] is False
    assert 0 < who["secondsLeft"] <= 24 * 3600


def test_proxy_without_group_gets_the_default_group(probe_server: ThreadedServer,
                                                    creds: Creds) -> None:
    who = post(probe_server, creds, "whoami", cert=creds.proxy(creds.admin)).json()["Value"]
    assert who["group"] == "demo_user"


def test_whoami_with_a_bearer_token(probe_server: ThreadedServer, creds: Creds) -> None:
    who = post(probe_server, creds, "whoami",
               token=creds.token("alice", "demo_user")).json()["Value"]
    assert (who["username"], who["group"], who["VO"]) == ("alice", "demo_user", "demo")
    assert who["DN"] == "/O=pilotwms/OU=Users/CN=alice"
    assert who["issuer"] == "https://127.0.0.1:8443"
    assert who["properties"] == ["NormalUser"]
    assert 3500 < who["secondsLeft"] <= 3600


def test_no_credentials_is_401(probe_server: ThreadedServer, creds: Creds) -> None:
    reply = post(probe_server, creds, "whoami")
    assert reply.status_code == 401
    assert reply.json()["OK"] is False


def test_certificate_of_another_ca_fails_the_handshake(probe_server: ThreadedServer,
                                                       creds: Creds) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        post(probe_server, creds, "ping", cert=creds.foreign)


def test_token_wins_over_certificate(probe_server: ThreadedServer, creds: Creds) -> None:
    who = post(probe_server, creds, "whoami", cert=creds.alice,
               token=creds.token("admin", "demo_admin")).json()["Value"]
    assert who["username"] == "admin" and who["authMethod"] == "token"


# -- the rights matrix -------------------------------------------------------------------------

METHODS = ["open", "users", "admins", "pilots", "userGroup", "demoVO", "hosts"]


def _identities(creds: Creds) -> dict[str, dict[str, Any]]:
    return {
        "anonymous": {},
        "alice-cert": {"cert": creds.alice},
        "alice-proxy-admin-group": {"cert": creds.proxy(creds.alice, group="demo_admin")},
        "alice-limited": {"cert": creds.proxy(creds.alice, limited=True)},
        "admin-proxy": {"cert": creds.proxy(creds.admin, group="demo_admin")},
        "unknown-dn": {"cert": creds.stranger},
        "host": {"cert": creds.host},
        "pilot-token": {"token": creds.token("pilot", "demo_pilot")},
        "alice-token": {"token": creds.token("alice", "demo_user")},
        "alice-token-wrong-group": {"token": creds.token("alice", "demo_pilot")},
        "expired-token": {"token": creds.token("alice", "demo_user", lifetime=1,
                                               extra_claims={"exp": int(time.time()) - 120})},
        "tampered-token": {"token": _tamper(creds.token("alice", "demo_user"))},
        "wrong-audience": {"token": creds.token("alice", "demo_user",
                                                extra_claims={"aud": "someone-else"})},
    }


def _tamper(token: str) -> str:
    """Change a claim (alice -> admin) and keep the original signature."""
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return ".".join([head, forged, sig])


# who may call what: ("identity", {allowed methods})
EXPECTED = {
    "anonymous": {"open"},
    "alice-cert": {"open", "users", "userGroup", "demoVO"},
    "alice-proxy-admin-group": {"open"},  # not a member: invalid group
    "alice-limited": {"open", "users", "userGroup", "demoVO"},
    "admin-proxy": {"open", "users", "admins", "demoVO"},
    "unknown-dn": {"open"},
    "host": {"open", "users", "hosts"},  # hosts are authenticated, as in DIRAC
    "pilot-token": {"open", "users", "pilots", "demoVO"},
    "alice-token": {"open", "users", "userGroup", "demoVO"},
    "alice-token-wrong-group": {"open"},
    "expired-token": set(),
    "tampered-token": set(),
    "wrong-audience": set(),
}


def test_rights_matrix(probe_server: ThreadedServer, creds: Creds) -> None:
    identities = _identities(creds)
    assert set(identities) == set(EXPECTED)
    problems = []
    for who, kwargs in identities.items():
        for method in METHODS:
            reply = post(probe_server, creds, method, **kwargs)
            ok = reply.status_code == 200 and reply.json()["OK"]
            if ok != (method in EXPECTED[who]):
                problems.append(f"{who} {method}: HTTP {reply.status_code} {reply.text[:120]}")
            if not ok:
                assert reply.status_code == 401, (who, method, reply.text)
    assert not problems, "\n".join(problems)


def test_refused_tokens_say_why(probe_server: ThreadedServer, creds: Creds) -> None:
    ids = _identities(creds)
    for who, reason in [("expired-token", "expired"), ("tampered-token", "signature"),
                        ("wrong-audience", "aud")]:
        reply = post(probe_server, creds, "open", **ids[who])
        assert reply.status_code == 401
        assert reason in reply.json()["Message"], reply.text


def test_limited_proxy_is_flagged(probe_server: ThreadedServer, creds: Creds) -> None:
    who = post(probe_server, creds, "whoami",
               cert=creds.proxy(creds.alice, limited=True)).json()["Value"]
    assert who["isLimitedProxy"] is True and who["isProxy"] is True


def test_rights_from_config_override_code(config: Config, creds: Creds) -> None:
    systems = {"Test": {"Services": {"Probe": {"Authorization": {
        "Default": "JobAdministrator", "open": "authenticated", "admins": ["vo:demo"]}}}}}
    cfg = config.model_validate({**config.model_dump(by_alias=True), "Systems": systems})
    with ThreadedServer(cfg, [ProbeService]) as server:
        assert post(server, creds, "open").status_code == 401
        assert post(server, creds, "open", cert=creds.alice).json()["OK"]
        assert post(server, creds, "admins", cert=creds.alice).json()["OK"]
        assert post(server, creds, "users", cert=creds.alice).status_code == 401
        # ping and echo stay open to all whatever the Default says
        assert post(server, creds, "ping").json()["OK"]


# -- the envelope ------------------------------------------------------------------------------


def test_ping_and_echo(probe_server: ThreadedServer, creds: Creds) -> None:
    ping = post(probe_server, creds, "ping").json()["Value"]
    for key in ("version", "time", "host uptime", "service uptime", "load", "name",
                "cpu times", "service start time"):
        assert key in ping
    assert ping["time"]["__dCls"] == "dt"
    assert ping["name"] == "Test/Probe"
    echo = post(probe_server, creds, "echo", args='[{"__dCls": "b64", "obj": "AAE="}]').json()
    assert echo == {"OK": True, "Value": {"__dCls": "b64", "obj": "AAE="}}


def test_http_statuses(probe_server: ThreadedServer, creds: Creds) -> None:
    assert post(probe_server, creds, None).status_code == 400
    unknown = post(probe_server, creds, "noSuchMethod")
    assert unknown.status_code == 501
    assert "noSuchMethod is not implemented" in unknown.json()["Message"]
    assert post(probe_server, creds, "open", path="Test/Nothing").status_code == 404
    get = requests.get(f"{probe_server.url}/Test/Probe", verify=str(creds.ca_dir), timeout=10)
    assert get.status_code == 405
    bad_args = post(probe_server, creds, "open", args="{not json")
    assert bad_args.status_code == 400
    not_list = post(probe_server, creds, "open", args='{"a": 1}')
    assert not_list.status_code == 400


def test_rolled_back_transaction_is_a_database_error(probe_server: ThreadedServer,
                                                    creds: Creds) -> None:
    """A conflict the method did not (or could no longer) retry: a clear error, not a bug."""
    for code in (1213, 1047, 1180):
        reply = post(probe_server, creds, "conflict", args=json.dumps([code]))
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["OK"] is False and body["ExceptionClass"] == "DatabaseError"
        assert "rolled this change back" in body["Message"]
    lost = post(probe_server, creds, "conflict", args="[2013]")  # the connection was lost
    assert lost.status_code == 503 and lost.headers["Retry-After"] == "2"
    assert lost.json()["ExceptionClass"] == "DatabaseUnavailableError"


def test_bug_is_500_with_request_id_and_no_stack(probe_server: ThreadedServer, creds: Creds,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    reply = post(probe_server, creds, "bug")
    assert reply.status_code == 500
    body = reply.json()
    assert body["OK"] is False and body["RequestID"] in body["Message"]
    assert "Traceback" not in reply.text and "this is a bug" not in reply.text
    assert any(body["RequestID"] in rec.getMessage() for rec in caplog.records)


def test_errors_carry_errno_and_extra_keys(probe_server: ThreadedServer, creds: Creds) -> None:
    body = post(probe_server, creds, "missing", args="[7]").json()
    assert body["OK"] is False and body["Errno"] == 2
    assert body["Message"] == "No such file or directory ( 2 : Job 7 not found)"
    assert body["InvalidJobIDs"] == [7]


def test_argument_checks(probe_server: ThreadedServer, creds: Creds) -> None:
    good = post(probe_server, creds, "typed", args='[5, ["a", "b"]]').json()
    assert good == {"OK": True, "Value": {"job_id": 5, "names": ["a", "b"], "note": None},
                    "JobID": 5}
    for args, text in [("[]", "takes 2 to 3 argument(s), 0 given"),
                       ('["5", []]', "argument 1 ('job_id') must be int, not str"),
                       ("[true, []]", "argument 1 ('job_id') must be int, not bool"),
                       ("[5, 5]", "argument 2 ('names') must be list or tuple, not int"),
                       ('[5, [], "n", 4]', "takes 2 to 3 argument(s), 4 given")]:
        body = post(probe_server, creds, "typed", args=args)
        assert body.status_code == 200
        assert body.json()["OK"] is False and text in body.json()["Message"], body.text
        assert body.json()["Errno"] == 22


def test_raw_content(probe_server: ThreadedServer, creds: Creds) -> None:
    reply = post(probe_server, creds, "download", args="[1000]", rawContent="true")
    assert reply.headers["Content-Type"] == "application/octet-stream"
    assert reply.content == b"\x01" * 1000
    enveloped = post(probe_server, creds, "download", args="[3]").json()
    assert enveloped["Value"] == {"__dCls": "b64", "obj": "AQEB"}


def test_blocking_methods_do_not_block_the_ioloop(probe_server: ThreadedServer,
                                                   creds: Creds) -> None:
    # a blocking method that cannot finish until the test lets it: any other call answered
    # meanwhile proves the IOLoop was free (no time bound that a loaded machine could miss)
    ProbeService.ENTERED.clear()
    ProbeService.RELEASE.clear()
    replies: list[Any] = []
    held = threading.Thread(target=lambda: replies.append(post(probe_server, creds, "hold")))
    held.start()
    try:
        assert ProbeService.ENTERED.wait(30), "hold never started"
        assert post(probe_server, creds, "open").json()["OK"]
        assert held.is_alive() and not replies  # still held while the other call was served
    finally:
        ProbeService.RELEASE.set()
        held.join(60)
    assert replies and replies[0].json()["Value"] is True


# -- clientVO, extraCredentials, balancers -----------------------------------------------------


def test_client_vo_must_match(probe_server: ThreadedServer, creds: Creds) -> None:
    assert post(probe_server, creds, "users", cert=creds.alice, clientVO="demo").json()["OK"]
    assert post(probe_server, creds, "users", cert=creds.alice,
                clientVO="other").status_code == 401


def test_extra_credentials_only_from_trusted_hosts(probe_server: ThreadedServer,
                                                   creds: Creds) -> None:
    extra = '["/O=pilotwms/OU=Users/CN=alice", "demo_user"]'
    who = post(probe_server, creds, "whoami", cert=creds.host,
               extraCredentials=extra).json()["Value"]
    assert (who["username"], who["group"]) == ("alice", "demo_user")
    assert who["extraCredentials"] == ["/O=pilotwms/OU=Users/CN=alice", "demo_user"]
    assert post(probe_server, creds, "whoami", cert=creds.admin,
                extraCredentials=extra).status_code == 401
    hosts = post(probe_server, creds, "hosts", cert=creds.host,
                 extraCredentials='"hosts"').json()["Value"]
    assert hosts["username"] == "localhost" and hosts["hostname"] == "localhost"


def _balancer_config(config: Config, trusted: list[str]) -> Config:
    server = config.server.model_copy(update={"trusted_balancers": trusted})
    return config.model_copy(update={"server": server})


def test_balancer_header_trusted_only_from_listed_balancers(config: Config,
                                                            creds: Creds) -> None:
    chain = creds.proxy(creds.admin, group="demo_admin").read_text()
    headers = {"X-SSL-CERT": urllib.parse.quote(chain), "X-Ssl_client_verify": "SUCCESS"}
    data = {"method": "whoami"}
    with ThreadedServer(_balancer_config(config, ["127.0.0.0/8"]), [ProbeService],
                        tls=False) as server:
        reply = requests.post(f"{server.url}/Test/Probe", data=data, headers=headers,
                              timeout=10)
        assert reply.json()["Value"]["group"] == "demo_admin"
        foreign = urllib.parse.quote(creds.foreign[0].read_text())
        refused = requests.post(f"{server.url}/Test/Probe", data=data, timeout=10,
                                headers={"X-SSL-CERT": foreign})
        assert refused.status_code == 401
    with ThreadedServer(_balancer_config(config, ["10.1.2.3"]), [ProbeService],
                        tls=False) as server:
        reply = requests.post(f"{server.url}/Test/Probe", data=data, headers=headers,
                              timeout=10)
        assert reply.status_code == 401  # header ignored: not from a trusted balancer
