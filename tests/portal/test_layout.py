"""The portal on a phone and with the keyboard: no horizontal scrolling of the page, no
layout shift while the job monitor loads (Chromium's layout-shift entries), every view
reachable and the job actions usable without a mouse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.portal.browser import new_page, shot, sign_in
from tests.portal.env import PortalEnv, wait_for

SHIFTS = """() => new Promise((resolve) => {
  let total = 0;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (!e.hadRecentInput) total += e.value;
  }).observe({ type: "layout-shift", buffered: true });
  setTimeout(() => resolve(total), 300);
})"""


def test_phone_width_and_no_layout_shift(portal_env: PortalEnv, browser: Any,
                                         artifacts: Path) -> None:
    env = portal_env
    page = new_page(browser, width=390, height=844, is_mobile=True, has_touch=True)
    sign_in(page, env, "bob", "#/launch")
    # a parametric job from the form, on a phone: three jobs, linked to their pages
    page.click("#tab-form")
    page.fill("#f-executable", "/bin/echo")
    page.fill("#f-arguments", "value %s")
    page.fill("#f-name", "phone")
    page.fill("#f-parametric", "1:5:2")
    page.wait_for_selector("#form-jdl:has-text('ParameterStep = 2')")
    page.click("#submit-job")
    page.wait_for_selector("#new-jobs a.new-job")
    assert page.locator("#new-jobs a.new-job").count() == 3
    page.locator("#new-jobs a.new-job").first.click()
    page.wait_for_selector("#job-attributes")
    assert "value 1" in (page.click("#tab-jdl") or page.wait_for_selector("#job-jdl")
                         and page.inner_text("#job-jdl"))
    page.goto(env.portal + "#/jobs")
    page.wait_for_selector("#jobs-table[aria-busy=false] #jobs-body tr[data-job]")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(page, artifacts, "job-monitor-phone")
    for view, ready in (("#/launch", "#jdl-editor"), ("#/data", "#catalog-listing"),
                        ("#/pilots", "#pilot-summary"),
                        ("#/transformations", "#transformations-table"),
                        ("#/accounting", "#acc-chart[data-report]")):
        page.goto(env.portal + view)
        page.wait_for_selector(ready)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), view
    # a fresh load of the monitor on a laptop: the table does not move when data arrives
    laptop = new_page(browser)
    laptop.context.add_cookies(page.context.cookies())
    laptop.goto(env.portal + "#/jobs")
    laptop.wait_for_selector("#jobs-table[aria-busy=false] #jobs-body tr[data-job]")
    laptop.wait_for_timeout(300)
    assert laptop.evaluate(SHIFTS) < 0.05
    laptop.close()
    page.close()


def test_keyboard_only(portal_env: PortalEnv, browser: Any) -> None:
    env = portal_env
    job = int(env.call("bob", "demo_user", "WorkloadManagement/JobManager", "submitJob",
                       '[ Executable = "/bin/true"; JobName = "keyboard"; ]'))
    page = new_page(browser)
    sign_in(page, env, "bob")
    page.wait_for_selector(f'#jobs-body tr[data-job="{job}"]')
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    focused: list[str] = []
    for _ in range(12):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.textContent.trim()"))
    assert {"Job monitor", "Launchpad", "Data", "Pilots & sites"} <= set(focused)
    # select the job and reschedule it with the keyboard only
    page.focus(f'#jobs-body tr[data-job="{job}"] input[type=checkbox]')
    page.keyboard.press("Space")
    assert page.inner_text("#selection-info") == "1 selected"
    page.focus("#action-delete")
    page.keyboard.press("Enter")
    page.wait_for_selector("dialog[open]")
    assert page.evaluate("document.activeElement.textContent") == "Cancel"
    page.keyboard.press("Escape")
    page.wait_for_selector("dialog[open]", state="detached")
    page.focus("#action-delete")
    page.keyboard.press("Enter")
    page.wait_for_selector("dialog[open]")
    page.keyboard.press("Tab")  # from Cancel to the confirming button
    assert page.evaluate("document.activeElement.textContent") == "Delete"
    page.keyboard.press("Enter")
    wait_for(lambda: env.call("bob", "demo_user", "WorkloadManagement/JobMonitoring",
                              "getJobsStatus", [job])[str(job)]["Status"] == "Deleted",
             30, "the job to be deleted")
    # tabs follow the arrow keys on the job page
    page.goto(env.portal + f"#/job/{job}")
    page.wait_for_selector("#job-attributes")
    page.focus("#tab-summary")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.id") == "tab-params"
    page.wait_for_selector("#job-parameters")
    page.close()
