"""The portal's HTTP surface without a browser: the shell and its caching, sign-in with a
certificate, sessions, CSRF, the RPC gateway's envelopes, token refresh under concurrency."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
import sqlalchemy as sa

from core.auth.tables import refresh_tokens, secret_hash
from core.db import make_engine
from portal.db import sessions
from portal.logic import sessions as sess
from tests.portal.browser import new_page, sign_in
from tests.portal.env import PortalEnv

GATEWAY = "/portal/api/rpc"


def cert_session(env: PortalEnv) -> tuple[requests.Session, dict[str, Any]]:
    """A requests session signed in with alice's certificate, and the session info."""
    http = requests.Session()
    http.trust_env = False  # $REQUESTS_CA_BUNDLE would win over http.verify
    http.verify = env.ca
    http.cert = tuple(str(p) for p in env.instance.user_cert("alice"))  # type: ignore[assignment]
    reply = http.get(f"{env.url}/portal/login/certificate?next=%23/launch",
                     allow_redirects=False, timeout=30)
    assert reply.status_code == 302 and reply.headers["Location"] == "/portal/#/launch"
    flags = reply.headers["Set-Cookie"]
    assert "__Host-pwms_session=" in flags
    for flag in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
        assert flag in flags, flags
    info = http.get(f"{env.url}/portal/api/session", timeout=30).json()["Value"]
    assert info["signedIn"] and info["user"] == "alice" and info["kind"] == "x509"
    http.headers.update({"X-CSRF-Token": info["csrf"], "Origin": env.url})
    return http, info


def test_shell_and_assets_are_cached_by_content(portal_env: PortalEnv) -> None:
    env = portal_env
    shell = requests.get(env.portal, verify=env.ca, timeout=30)
    assert shell.status_code == 200 and shell.headers["Cache-Control"] == "no-cache"
    assert "frame-ancestors 'none'" in shell.headers["Content-Security-Policy"]
    assets = re.findall(r'(/portal/static/[^"?]+)\?v=([0-9a-f]{16})', shell.text)
    assert any(p.endswith("/app.js") for p, _ in assets)
    assert any(p.endswith("/vendor/uPlot.esm.js") for p, _ in assets)  # in the import map
    path, version = next((p, v) for p, v in assets if p.endswith("/jobs.js"))
    hashed = requests.get(f"{env.url}{path}?v={version}", verify=env.ca, timeout=30)
    assert hashed.status_code == 200
    assert "immutable" in hashed.headers["Cache-Control"]
    assert hashed.headers["Content-Type"].startswith(("application/javascript", "text/javascript"))
    plain = requests.get(f"{env.url}{path}", verify=env.ca, timeout=30)
    assert plain.headers["Cache-Control"] == "no-cache" and plain.headers.get("Etag")
    again = requests.get(f"{env.url}{path}", verify=env.ca, timeout=30,
                         headers={"If-None-Match": plain.headers["Etag"]})
    assert again.status_code == 304
    stale = requests.get(f"{env.url}{path}?v=0000000000000000", verify=env.ca, timeout=30)
    assert stale.headers["Cache-Control"] == "no-cache"


def test_without_a_session(portal_env: PortalEnv) -> None:
    env = portal_env
    info = requests.get(f"{env.url}/portal/api/session", verify=env.ca, timeout=30).json()
    assert info["OK"] and info["Value"]["signedIn"] is False
    assert info["Value"]["tokenLogin"] and info["Value"]["certificateLogin"]
    refused = requests.post(f"{env.url}{GATEWAY}/WorkloadManagement/JobMonitoring",
                            data={"method": "getJobs", "args": "[]"}, verify=env.ca, timeout=30)
    body = refused.json()
    assert refused.status_code == 401 and body["ExceptionClass"] == "NotAuthenticatedError"
    assert "Traceback" not in refused.text
    # a certificate the registry does not know signs nobody in
    none = requests.get(f"{env.url}/portal/login/certificate", verify=env.ca, timeout=30,
                        allow_redirects=False)
    assert none.status_code == 302 and "error=" in none.headers["Location"]


def test_certificate_session_calls_services_as_the_user(portal_env: PortalEnv) -> None:
    env = portal_env
    http, info = cert_session(env)
    assert "WorkloadManagement/JobManager" in info["services"]
    assert info["groups"] == ["demo_admin", "demo_user"]
    jdl = '[\n Executable = "x";\n CPUTime = "soon";\n]'
    checked = http.post(f"{env.url}{GATEWAY}/Web/Portal", timeout=30,
                        data={"method": "checkJDL", "args": json.dumps([jdl])})
    [error] = checked.json()["Value"]["Errors"]
    assert error["line"] == 3 and error["column"] == 2 and "CPUTime" in error["message"]
    who = http.post(f"{env.url}{GATEWAY}/Framework/Registry", data={"method": "whoami"},
                    timeout=30).json()["Value"]
    assert who["username"] == "alice" and who["group"] == "demo_user"
    missing = http.post(f"{env.url}{GATEWAY}/Nowhere/Service", data={"method": "ping"},
                        timeout=30)
    assert missing.json()["OK"] is False and "not served" in missing.json()["Message"]
    # a group of hers, then one that is not
    switched = http.post(f"{env.url}/portal/api/group", data={"group": "demo_admin"}, timeout=30)
    assert switched.json()["Value"] == {"group": "demo_admin"}
    who = http.post(f"{env.url}{GATEWAY}/Framework/Registry", data={"method": "whoami"},
                    timeout=30).json()["Value"]
    assert who["group"] == "demo_admin" and "JobAdministrator" in who["properties"]
    refused = http.post(f"{env.url}/portal/api/group", data={"group": "demo_pilot"}, timeout=30)
    assert refused.json()["OK"] is False and "not a member" in refused.json()["Message"]
    # input sandbox from files, then signing out ends the session
    sandbox = http.post(f"{env.url}/portal/api/sandbox", timeout=30,
                        files=[("file", ("a.txt", b"A")), ("file", ("../b.txt", b"B"))])
    assert sandbox.json()["Value"].startswith("SB:"), sandbox.text
    out = http.post(f"{env.url}/portal/api/logout", timeout=30)
    assert out.json()["OK"]
    http.cookies.clear()
    after = http.get(f"{env.url}/portal/api/session", timeout=30).json()["Value"]
    assert after["signedIn"] is False


def test_token_refresh_happens_once_under_concurrent_requests(portal_env: PortalEnv,
                                                              browser: Any) -> None:
    env = portal_env
    page = new_page(browser)
    sign_in(page, env, "alice")
    [cookie] = [c for c in page.context.cookies() if c["name"] == "__Host-pwms_session"]
    secret = cookie["value"]
    page.close()
    engine = make_engine(env.config.database_url("Web"))
    auth = make_engine(env.config.database_url("Auth"))
    try:
        found = sess.load_session(engine, secret, idle_seconds=3600)
        assert found is not None and found.tokens is not None and found.kind == "token"
        first = dict(found.tokens)

        def expire_in(seconds: int) -> None:
            tokens = {**first, "expires": int(time.time()) + seconds}
            with engine.begin() as conn:
                conn.execute(sa.update(sessions).where(sessions.c.session_hash == found.key)
                             .values(tokens=sess.seal(secret, tokens)))

        def ask(_: int) -> dict[str, Any]:
            return requests.get(f"{env.url}/portal/api/session", verify=env.ca, timeout=60,
                                cookies={"__Host-pwms_session": secret}).json()["Value"]

        expire_in(30)  # in its last quarter: refreshed by one request, the others go on
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, range(8)))
        assert all(a["signedIn"] and a["user"] == "alice" for a in answers)
        with auth.connect() as conn:
            family = conn.execute(sa.select(refresh_tokens.c.family).where(
                refresh_tokens.c.token_hash == secret_hash(first["refresh"]))).scalar_one()
            statuses = sorted(conn.execute(sa.select(refresh_tokens.c.status).where(
                refresh_tokens.c.family == family)).scalars())
        assert statuses == ["active", "rotated"]  # refreshed once, the sign-in intact
        now = sess.load_session(engine, secret, idle_seconds=3600)
        assert now is not None and now.tokens is not None
        assert now.tokens["refresh"] != first["refresh"]

        # an expired access token whose sign-in was revoked: the session is over
        first = dict(now.tokens)
        requests.post(f"{env.url}/auth/revoke", verify=env.ca, timeout=30, data={
            "token": first["refresh"], "client_id": "pilotwms-portal"})
        expire_in(-5)
        answer = ask(0)
        assert answer["signedIn"] is False and "sign in again" in answer["reason"]
    finally:
        engine.dispose()
        auth.dispose()


def test_a_signed_in_user_lacking_rights_gets_403(portal_env: PortalEnv) -> None:
    """401 is for no (or an expired) session; a signed-in user refused a call is 403, the
    envelope as the RPC wire gives it (the RPC wire itself keeps DIRAC's 401)."""
    env = portal_env
    http, info = cert_session(env)
    assert info["group"] == "demo_user"
    refused = http.post(f"{env.url}{GATEWAY}/WorkloadManagement/WMSAdministrator",
                        data={"method": "banSite", "args": '["LCG.Alice.test", "x"]'},
                        timeout=30)
    body = refused.json()
    assert refused.status_code == 403, refused.text
    assert body["OK"] is False and body["ExceptionClass"] == "NotAuthorizedError"
    assert "may not call banSite" in body["Message"]
    # the same call over the RPC wire (a certificate, no portal): DIRAC's 401
    wire = requests.post(f"{env.url}/WorkloadManagement/WMSAdministrator",
                         data={"method": "banSite", "args": '["LCG.Alice.test", "x"]'},
                         verify=env.ca, cert=http.cert, timeout=30)
    assert wire.status_code == 401 and wire.json()["ExceptionClass"] == "NotAuthorizedError"
    # no session at all: still 401
    http.cookies.clear()
    gone = http.post(f"{env.url}{GATEWAY}/WorkloadManagement/WMSAdministrator",
                     data={"method": "banSite", "args": '["LCG.Alice.test", "x"]'}, timeout=30)
    assert gone.status_code == 401 and gone.json()["ExceptionClass"] == "NotAuthenticatedError"
