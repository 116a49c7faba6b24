"""The Transformations view in headless Chromium, against the real transformation services and
agents: a transformation with catalog files becomes tasks (TransformationAgent) and WMS jobs
(WorkflowTaskAgent); the view lists it with its status, shows its files and tasks by status,
and its owner/manager stops, starts and extends it while another user is refused with the
service's message; a production is started and stopped from its tab; a hostile production,
transformation name and group are shown as text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.portal.browser import new_page, shot, sign_in, watch
from tests.portal.env import SE, PortalEnv, wait_for
from transformation.agents.task_agents import WorkflowTaskAgent
from transformation.agents.transformation_agent import TransformationAgent

TS = "Transformation/TransformationManager"
PM = "Production/ProductionManager"
HOSTILE = '<img src=x onerror="window.__xss=1">"\'&<script>window.__xss=2</script>'
HOME = "/demo/user/a/alice"
FILES = 6


def register(env: PortalEnv, names: list[str]) -> list[str]:
    lfns = [f"{HOME}/trans/{n}" for n in names]
    added = env.call("alice", "demo_user", "DataManagement/FileCatalog", "addFile", {
        lfn: {"PFN": f"https://127.0.0.1/{i}", "Size": 10 + i, "SE": SE, "GUID": f"T-{lfn}",
              "Checksum": "00000001", "ChecksumType": "Adler32"}
        for i, lfn in enumerate(lfns)})
    assert set(added["Successful"]) == set(lfns), added
    return lfns


def task_stats(env: PortalEnv, tid: int) -> dict[str, int]:
    return dict(env.call("alice", "demo_admin", TS, "getTransformationTaskStats", tid))


def trans_status(env: PortalEnv, tid: int) -> str:
    return str(env.call("alice", "demo_admin", TS, "getTransformation", tid)["Status"])


def chips(page: Any, box: str) -> dict[str, int]:
    """The counts of a "by status" box: {status: n}."""
    found = page.locator(f"{box} .chip").evaluate_all(
        "cs => cs.map(c => [c.dataset.status, c.querySelector('b').textContent])")
    return {k: int(v) for k, v in found}


def close_messages(page: Any) -> None:
    page.locator("#messages .msg button").evaluate_all("bs => bs.forEach(b => b.click())")


def click_confirm(page: Any, button: str, label: str) -> None:
    close_messages(page)
    page.click(button)
    page.click(f"dialog .buttons button:has-text('{label}')")


def last_message(page: Any, kind: str) -> str:
    page.wait_for_selector(f"#messages .msg.{kind}")
    text = str(page.locator(f"#messages .msg.{kind} span").last.inner_text())
    close_messages(page)
    return text


@pytest.fixture(scope="module")
def transformation(portal_env: PortalEnv) -> Iterator[int]:
    """An Active Processing transformation of alice (made in demo_user, which holds
    ProductionUser) with six catalog files grouped in tasks of two and submitted as WMS
    jobs."""
    env = portal_env
    lfns = register(env, [f"raw_{i}.dat" for i in range(FILES)])
    tid = int(env.call("alice", "demo_user", TS, "createTransformation", {
        "Name": "reco-run2", "Description": "reconstruction of run 2", "Type": "Processing",
        "Plugin": "Standard", "GroupSize": 2, "TransformationGroup": "physics",
        "Body": '[Executable = "/bin/true";]'}))
    added = env.call("alice", "demo_user", TS, "addFilesToTransformation", tid, lfns)
    assert len(added["Successful"]) == FILES, added
    env.call("alice", "demo_user", TS, "setTransformationParameter", tid, "Status", "Active")
    wait_for(lambda: env.run_agent(TransformationAgent) and
             task_stats(env, tid).get("TotalCreated", 0) == FILES // 2,
             timeout=60, what="tasks of the transformation")
    wait_for(lambda: env.run_agent(WorkflowTaskAgent) and
             task_stats(env, tid).get("Submitted", 0) == FILES // 2,
             timeout=60, what="tasks submitted as jobs")
    yield tid
    # its WMS jobs must not wait for the pilots of other tests
    jobs = [int(t["ExternalID"]) for t in env.call(
        "alice", "demo_user", TS, "getTransformationTasks", {"TransformationID": tid})
        if str(t["ExternalID"]).isdigit() and int(t["ExternalID"]) > 0]
    env.call("alice", "demo_user", "WorkloadManagement/JobManager", "killJob", jobs)


def test_transformation_view(portal_env: PortalEnv, transformation: int, browser: Any,
                             artifacts: Path) -> None:
    env, tid = portal_env, transformation
    page = new_page(browser)
    problems = watch(page)
    sign_in(page, env, "alice", "#/transformations")
    assert page.locator("#nav a", has_text="Transformations").count() == 1
    row = page.locator(f'#transformations-table tr[data-id="{tid}"]')
    row.wait_for()
    text = row.inner_text()
    assert "Active" in text and "Processing" in text and "Standard" in text
    row.locator("button").click()
    page.wait_for_selector("#t-file-stats .chip")
    assert "reco-run2" in page.inner_text("#t-title")
    assert chips(page, "#t-file-stats") == {"Assigned": FILES, "Total": FILES}
    assert chips(page, "#t-task-stats") == {"Submitted": FILES // 2, "Total": FILES // 2}
    assert page.locator("#t-files tbody tr").count() == FILES
    assert f"{HOME}/trans/raw_0.dat" in page.inner_text("#t-files")
    assert page.locator("#t-tasks tbody tr a[href^='#/job/']").count() == FILES // 2
    shot(page, artifacts, "transformation")

    click_confirm(page, "#t-stop", "Stop")
    assert "Stop" in last_message(page, "ok")
    wait_for(lambda: trans_status(env, tid) == "Stopped", 30, "the transformation stopped")
    page.wait_for_selector("#transformation-details .toolbar .status.Stopped")
    click_confirm(page, "#t-start", "Start")
    wait_for(lambda: trans_status(env, tid) == "Active", 30, "the transformation active")
    page.wait_for_selector("#transformation-details .toolbar .status.Active")
    close_messages(page)
    page.click("#t-extend")
    page.fill("#dlg-input", "2")
    page.click("dialog button[type=submit]")
    assert "2 task(s) added" in last_message(page, "ok")
    wait_for(lambda: task_stats(env, tid)["TotalCreated"] == FILES // 2 + 2, 30, "extension")
    page.wait_for_selector("#t-task-stats .chip[data-status=Created]")
    assert chips(page, "#t-task-stats") == {"Created": 2, "Submitted": FILES // 2,
                                            "Total": FILES // 2 + 2}
    assert not problems, problems
    assert page.evaluate("window.__xss") is None


def test_others_are_refused(portal_env: PortalEnv, transformation: int, browser: Any,
                            artifacts: Path) -> None:
    env, tid = portal_env, transformation
    page = new_page(browser)
    sign_in(page, env, "bob", "#/transformations")
    page.locator(f'#transformations-table tr[data-id="{tid}"] button').click()
    page.wait_for_selector("#t-file-stats .chip")
    click_confirm(page, "#t-stop", "Stop")
    refused = last_message(page, "error")
    assert refused.startswith("Stop refused:"), refused
    assert f"You do not have permissions for transformation {tid}" in refused, refused
    close_messages(page)
    page.click("#t-extend")
    page.fill("#dlg-input", "1")
    page.click("dialog button[type=submit]")
    page.wait_for_selector("#messages .msg.error")
    shot(page, artifacts, "transformation-refused")
    refused = last_message(page, "error")
    assert refused.startswith("Extend refused:") and "do not have permissions" in refused
    assert trans_status(env, tid) == "Active"
    assert task_stats(env, tid)["TotalCreated"] == FILES // 2 + 2
    # a manager (another group's property) may change it
    env.call("alice", "demo_admin", TS, "setTransformationParameter", tid, "Status", "Stopped")
    env.call("alice", "demo_admin", TS, "setTransformationParameter", tid, "Status", "Active")


def test_productions_tab(portal_env: PortalEnv, browser: Any, artifacts: Path) -> None:
    env = portal_env
    pid = int(env.call("alice", "demo_admin", PM, "addProduction", {
        "Name": f"prod-{HOSTILE}", "Description": "portal production", "Steps": [
            {"Name": "sim", "Transformation": {"Type": "MCSimulation",
                                               "TransformationGroup": f"g-{HOSTILE}",
                                               "Body": '[Executable = "/bin/true";]'}}]}))
    [step] = env.call("alice", "demo_user", PM, "getProduction", pid)["Steps"]
    page = new_page(browser)
    page.on("dialog", lambda d: pytest.fail(f"a script ran: {d.message}"))
    sign_in(page, env, "alice", "#/transformations")
    # the step's transformation: a hostile name and group, shown as text
    trow = page.locator(f'#transformations-table tr[data-id="{step["TransformationID"]}"]')
    assert trow.inner_text().count(HOSTILE) == 2
    trow.locator("button").click()
    page.wait_for_selector("#t-file-stats")
    assert HOSTILE in page.inner_text("#t-title")
    assert f"g-{HOSTILE}" in page.inner_text("#transformation-details dl")
    page.click("#tab-productions")
    row = page.locator(f'#productions-table tr[data-id="{pid}"]')
    row.wait_for()
    assert HOSTILE in row.inner_text() and "sim (New)" in row.inner_text()
    state = lambda: str(env.call("alice", "demo_admin", PM, "getProduction", pid)["Status"])  # noqa: E731
    row.locator("button", has_text="Start").click()
    page.click("dialog .buttons button:has-text('Start')")
    wait_for(lambda: state() == "Active", 30, "the production active")
    page.wait_for_selector(f'#productions-table tr[data-id="{pid}"] .status.Active')
    shot(page, artifacts, "productions")
    page.locator(f'#productions-table tr[data-id="{pid}"] button', has_text="Stop").click()
    page.click("dialog .buttons button:has-text('Stop')")
    wait_for(lambda: state() == "Stopped", 30, "the production stopped")
    page.wait_for_selector(f'#productions-table tr[data-id="{pid}"] .status.Stopped')
    assert page.evaluate("window.__xss") is None
