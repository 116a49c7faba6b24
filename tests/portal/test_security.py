"""The portal under attack, in headless Chromium: cookies out of JavaScript's reach, CSRF from
a page of another origin (another loopback port), hostile job names, JDL and metadata shown
as text everywhere, users who never see each other's jobs, certificate sessions bound to the
certificate."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.portal.browser import new_page, shot, sign_in
from tests.portal.env import SE, PortalEnv, wait_for

HOSTILE = '<img src=x onerror="window.__xss=1">"\'&<script>window.__xss=2</script>'
MONITORING = "WorkloadManagement/JobMonitoring"


def submit(env: PortalEnv, user: str, name: str, extra: str = "") -> int:
    jdl = f'[ Executable = "/bin/true"; JobName = "{name}"; {extra} ]'
    return int(env.call(user, "demo_user", "WorkloadManagement/JobManager", "submitJob", jdl))


def status(env: PortalEnv, job: int) -> str:
    return str(env.call("alice", "demo_user", MONITORING, "getJobsStatus", [job])
               [str(job)]["Status"])


@pytest.fixture
def attacker() -> Iterator[dict[str, Any]]:
    """A page on another origin (127.0.0.1, another port) whose HTML the test sets."""
    state: dict[str, Any] = {"html": "<p>nothing</p>"}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = state["html"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_cookies_are_out_of_reach_of_scripts(portal_env: PortalEnv, browser: Any) -> None:
    page = new_page(browser)
    sign_in(page, portal_env, "alice")
    assert page.evaluate("document.cookie") == ""
    [cookie] = [c for c in page.context.cookies() if c["name"] == "__Host-pwms_session"]
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/"
    page.close()


def test_csrf_from_another_origin_is_refused(portal_env: PortalEnv, browser: Any,
                                            attacker: dict[str, Any]) -> None:
    env = portal_env
    job = submit(env, "alice", "csrf-target")
    page = new_page(browser)
    sign_in(page, env, "alice")
    target = f"{env.url}/portal/api/rpc/WorkloadManagement/JobManager"
    # a form posted to the portal, and a fetch with credentials, from the attacker's page
    attacker["html"] = f"""<!doctype html><html><body>
<form id="f" method="POST" action="{target}" target="sink">
<input name="method" value="killJob"><input name="args" value="[{job}]"></form>
<iframe name="sink"></iframe>
<script>
fetch("{target}", {{method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"Content-Type": "application/x-www-form-urlencoded"}},
  body: "method=deleteJob&args=[{job}]"}}).catch(() => null).then(() => {{
    document.getElementById("f").submit();
    return fetch("{env.url}/portal/api/session", {{credentials: "include"}})
      .then(r => r.text()).then(t => {{ document.title = "read:" + t.length; }},
                                 () => {{ document.title = "blocked"; }});
  }});
</script></body></html>"""
    page.goto(attacker["url"])
    page.wait_for_function("document.title === 'blocked' || document.title.startsWith('read')")
    assert page.title() == "blocked"  # the session (and its CSRF token) cannot be read
    page.wait_for_timeout(1000)
    assert status(env, job) not in ("Killed", "Deleted")

    # each defence alone: the cookie without the CSRF token, and a foreign Origin
    [cookie] = [c for c in page.context.cookies() if c["name"] == "__Host-pwms_session"]
    jar = {cookie["name"]: cookie["value"]}
    session = requests.get(f"{env.url}/portal/api/session", cookies=jar, verify=env.ca,
                           timeout=30).json()["Value"]
    form = {"method": "killJob", "args": f"[{job}]"}
    no_token = requests.post(target, data=form, cookies=jar, verify=env.ca, timeout=30)
    assert no_token.status_code == 403 and no_token.json()["ExceptionClass"] == "CSRFError"
    foreign = requests.post(target, data=form, cookies=jar, verify=env.ca, timeout=30,
                            headers={"X-CSRF-Token": session["csrf"],
                                     "Origin": attacker["url"].rstrip("/")})
    assert foreign.status_code == 403
    assert status(env, job) not in ("Killed", "Deleted")
    allowed = requests.post(target, data=form, cookies=jar, verify=env.ca, timeout=30,
                            headers={"X-CSRF-Token": session["csrf"], "Origin": env.url})
    assert allowed.json()["OK"], allowed.text
    assert status(env, job) == "Killed"
    page.close()


def test_hostile_text_is_shown_as_text(portal_env: PortalEnv, browser: Any,
                                       artifacts: Path) -> None:
    env = portal_env
    jdl_name = HOSTILE.replace('"', '\\"')
    job = submit(env, "alice", jdl_name,
                 'JobGroup = "<b onclick=x>g</b>"; '
                 'Arguments = "</pre><script>window.__xss=3</script>";')
    env.call("alice", "demo_admin", "DataManagement/FileCatalog", "addMetadataField",
             "comment", "VARCHAR(128)")
    home = "/demo/user/a/alice"
    lfn = f"{home}/xss-<svg onload=window.__xss=4>.txt"
    added = env.call("alice", "demo_user", "DataManagement/FileCatalog", "addFile", {lfn: {
        "PFN": "https://127.0.0.1/x", "Size": 1, "SE": SE, "GUID": "G-1",
        "Checksum": "00000001", "ChecksumType": "Adler32"}})
    assert lfn in added["Successful"], added
    env.call("alice", "demo_user", "DataManagement/FileCatalog", "setMetadata", lfn,
             {"comment": HOSTILE})
    dataset = f"{home}/ds-<i onclick=x>"
    made = env.call("alice", "demo_user", "DataManagement/FileCatalog", "addDataset",
                    {dataset: {"comment": HOSTILE}})
    assert dataset in made["Successful"], made

    page = new_page(browser)
    page.on("dialog", lambda d: pytest.fail(f"a script ran: {d.message}"))
    sign_in(page, env, "alice")
    page.wait_for_selector(f'#jobs-body tr[data-job="{job}"]')
    row = page.inner_text(f'#jobs-body tr[data-job="{job}"]')
    assert "<img src=x" in row and "<script>" in row
    page.goto(env.portal + f"#/job/{job}")
    page.wait_for_selector("#job-attributes")
    assert HOSTILE in page.inner_text("#job-attributes")
    assert "<img src=x" in page.inner_text("#job-title")
    page.click("#tab-jdl")
    page.wait_for_selector("#job-jdl")
    assert "</pre><script>" in page.inner_text("#job-jdl")
    for tab in ("#tab-params", "#tab-logging", "#tab-output", "#tab-data"):
        page.click(tab)
        page.wait_for_timeout(200)
    page.goto(env.portal + f"#/data?path={home}")
    page.wait_for_selector("#catalog-table button.file:has-text('xss-')")
    page.click("#catalog-table button.file:has-text('xss-')")
    page.wait_for_selector("#file-user-metadata")
    assert HOSTILE in page.inner_text("#file-user-metadata")
    assert "<svg onload" in page.inner_text("#file-title")
    page.click("#tab-datasets")
    page.click("#dataset-table button:has-text('ds-<i onclick=x>')")
    page.wait_for_selector("#dataset-file-list li")
    assert page.inner_text("#dataset-file-list") == lfn
    page.click("#tab-search")
    page.fill("#meta-query", "comment=x")
    page.click("#meta-search")
    page.wait_for_selector("#meta-results p")
    shot(page, artifacts, "hostile-input")
    assert page.evaluate("window.__xss") is None
    # the shell's policy would stop an injected script anyway: no inline script but the map
    shell = requests.get(env.portal, verify=env.ca, timeout=30)
    csp = shell.headers["Content-Security-Policy"]
    assert "script-src 'self' 'sha256-" in csp and "unsafe-inline" not in csp
    page.close()


def test_users_never_see_each_others_jobs(portal_env: PortalEnv, browser: Any) -> None:
    env = portal_env
    alices = submit(env, "alice", "alice-private")
    bobs = submit(env, "bob", "bob-own")
    page = new_page(browser)
    sign_in(page, env, "bob")
    page.wait_for_selector(f'#jobs-body tr[data-job="{bobs}"]')
    assert page.locator(f'#jobs-body tr[data-job="{alices}"]').count() == 0
    assert "alice-private" not in page.inner_text("#jobs-table")
    owners = page.evaluate("""async () => {
        const r = await fetch('/portal/api/session'); return (await r.json()).Value.user; }""")
    assert owners == "bob"
    page.goto(env.portal + f"#/job/{alices}")
    page.wait_for_selector("#job-panel .error")
    assert "not found" in page.inner_text("#job-panel").lower()
    # and bob's browser cannot act on alice's job either
    reply = page.evaluate(f"""async () => {{
        const s = (await (await fetch('/portal/api/session')).json()).Value;
        const r = await fetch('/portal/api/rpc/WorkloadManagement/JobManager', {{
          method: 'POST', headers: {{'X-CSRF-Token': s.csrf}},
          body: new URLSearchParams({{method: 'killJob', args: '[{alices}]'}})}});
        return await r.json(); }}""")
    assert reply["OK"] is False and reply["NonauthorizedJobIDs"] == [alices]
    assert status(env, alices) != "Killed"
    page.close()


def test_certificate_sign_in_is_bound_to_the_certificate(portal_env: PortalEnv,
                                                          browser: Any) -> None:
    env = portal_env
    cert, key = env.instance.user_cert("alice")
    page = new_page(browser, client_certificates=[
        {"origin": env.url, "certPath": str(cert), "keyPath": str(key)}])
    page.goto(env.portal)
    page.wait_for_selector("#login-certificate")
    assert "CN=alice" in page.inner_text("main")
    page.click("#login-certificate")
    page.wait_for_selector("#group-select")
    assert page.input_value("#group-select") == "demo_user"
    page.select_option("#group-select", "demo_admin")
    wait_for(lambda: page.evaluate("""async () => (await (await fetch('/portal/api/session'))
        .json()).Value.group""") == "demo_admin", 30, "the group switch")
    assert "JobAdministrator" in page.evaluate(
        "async () => (await (await fetch('/portal/api/session')).json()).Value.properties")
    # the session cookie without the certificate is worth nothing
    [cookie] = [c for c in page.context.cookies() if c["name"] == "__Host-pwms_session"]
    other = new_page(browser)
    other.context.add_cookies([cookie])
    other.goto(env.portal)
    other.wait_for_selector("#login-title")
    assert other.locator("#group-select").count() == 0
    other.close()
    page.close()
