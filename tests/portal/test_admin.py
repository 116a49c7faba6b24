"""What administrators do in the portal: switch to their administrator group (a token session
signs in again for it), read a pilot's output, ban and allow a site with a comment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.portal.browser import new_page, shot, sign_in, through_idp
from tests.portal.env import PortalEnv

PILOTS = "WorkloadManagement/PilotManager"


def test_group_switch_pilot_output_and_site_mask(portal_env: PortalEnv, browser: Any,
                                                 artifacts: Path) -> None:
    env = portal_env
    ref = "local://portal-admin-test/1"
    env.call("admin", "demo_admin", PILOTS, "addPilotReferences", [ref], "demo_pilot", "Local",
             {}, "LCG.Admin.test", "ce.admin.test", "long")
    env.call("admin", "demo_admin", PILOTS, "storePilotOutput", ref,
             "pilot said <b>hello</b>", "no errors")
    page = new_page(browser)
    sign_in(page, env, "alice")
    session = "async () => (await (await fetch('/portal/api/session')).json()).Value"
    assert page.evaluate(session)["group"] == "demo_user"
    with page.expect_navigation():
        page.select_option("#group-select", "demo_admin")
    # a token names its group: the browser goes through the login server again
    through_idp(page, "alice")
    page.wait_for_selector("#group-select")
    assert "JobAdministrator" in page.evaluate(session)["properties"]

    page.goto(env.portal + "#/pilots")
    page.wait_for_selector("#pilot-counts")
    page.click("#tab-list")
    page.select_option("#p-site", "LCG.Admin.test")
    page.wait_for_selector("#pilots-body td:has-text('portal-admin-test')")
    page.click("#pilots-body button:has-text('Output')")
    page.wait_for_selector("#pilot-stdout")
    assert page.inner_text("#pilot-stdout") == "pilot said <b>hello</b>"

    page.click("#tab-mask")
    page.wait_for_selector("#mask-add")
    page.click("#mask-add")
    page.fill("#dlg-input", "LCG.Banned.test")
    page.keyboard.press("Enter")
    page.wait_for_selector("dialog[open] #dlg-input")
    page.fill("#dlg-input", "downtime <i>until</i> Monday")
    page.keyboard.press("Enter")
    page.click("dialog[open] button.danger")
    page.wait_for_selector("#mask-table tr:has-text('LCG.Banned.test') .status.Banned")
    mask = env.call("alice", "demo_user", "WorkloadManagement/WMSAdministrator",
                    "getSiteMaskStatus", "LCG.Banned.test")
    assert mask == "Banned"
    shot(page, artifacts, "site-mask")
    page.click("#mask-table button[data-site='LCG.Banned.test']")
    page.fill("#dlg-input", "back")
    page.keyboard.press("Enter")
    page.wait_for_selector("#mask-table tr:has-text('LCG.Banned.test') .status.Active")
    log = env.call("alice", "demo_user", "WorkloadManagement/WMSAdministrator",
                   "getSiteMaskLogging", ["LCG.Banned.test"])["LCG.Banned.test"]
    assert [entry[0] for entry in log] == ["Banned", "Active"]
    assert log[0][2] == "alice" and log[0][3] == "downtime <i>until</i> Monday"
    page.close()


def test_a_plain_user_cannot_change_the_site_mask(portal_env: PortalEnv, browser: Any) -> None:
    page = new_page(browser)
    sign_in(page, portal_env, "bob")
    page.goto(portal_env.portal + "#/pilots")
    page.wait_for_selector("#pilot-counts, #pilot-summary p.muted")
    page.click("#tab-mask")
    page.wait_for_selector("#site-mask p.muted")
    assert page.locator("#mask-add").count() == 0
    reply = page.evaluate("""async () => {
        const s = (await (await fetch('/portal/api/session')).json()).Value;
        const r = await fetch('/portal/api/rpc/WorkloadManagement/WMSAdministrator', {
          method: 'POST', headers: {'X-CSRF-Token': s.csrf},
          body: new URLSearchParams({method: 'banSite', args: '["LCG.Bob.test", "x"]'})});
        return [r.status, await r.json()]; }""")
    assert reply[0] == 403 and reply[1]["ExceptionClass"] == "NotAuthorizedError"
    # signing out ends the session on the server, not only in this browser
    [cookie] = [c for c in page.context.cookies() if c["name"] == "__Host-pwms_session"]
    page.click("#sign-out")
    page.wait_for_selector("#login-title")
    assert not [c for c in page.context.cookies() if c["name"] == "__Host-pwms_session"]
    replay = new_page(browser)
    replay.context.add_cookies([cookie])
    replay.goto(portal_env.portal)
    replay.wait_for_selector("#login-title")
    replay.close()
    page.close()
