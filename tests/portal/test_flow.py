"""The portal end to end in headless Chromium, as the issue's "Done when" says: sign in, submit
a job with an uploaded input file from the launchpad, watch it reach Done through a local
pilot in the monitor (peeking at its output while it runs), open its page, download its
output sandbox, kill another job, browse the catalog and download a file; a screenshot of
each view is saved (test-artifacts/portal) and checked for what a user sees."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

from tests.portal.browser import new_page, shot, sign_in
from tests.portal.env import SE, PortalEnv, wait_for

RUN_SH = b"""#!/bin/sh
echo "answer $1"
cat input.txt
echo "result of $1" > result.txt
i=0
while [ $i -lt 8 ]; do i=$((i+1)); echo "tick $i"; sleep 1; done
"""


def job_status(env: PortalEnv, job: int) -> str:
    states = env.call("alice", "demo_user", "WorkloadManagement/JobMonitoring",
                      "getJobsStatus", [job])
    return str(states[str(job)]["Status"])


def monitor_row_status(page: Any, job: int) -> str:
    page.click("#refresh")
    page.wait_for_selector("#jobs-table[aria-busy=false]")
    row = page.locator(f'#jobs-body tr[data-job="{job}"] .status')
    return row.inner_text() if row.count() else ""


def test_done_when_flow(portal_env: PortalEnv, browser: Any, artifacts: Path) -> None:
    env = portal_env
    page = new_page(browser)
    problems: list[str] = []  # script errors, CSP refusals, failed loads of the portal
    page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    page.on("console", lambda m: m.type == "error" and m.location.get("url", "").startswith(
        env.url) and problems.append(m.text))
    sign_in(page, env, "alice")
    assert page.locator("#nav a", has_text="Job monitor").count() == 1
    assert page.inner_text(".who .user") == "alice"

    # -- a job to kill later, from the JDL editor (inline validation first) ----------------
    page.goto(env.portal + "#/launch")
    page.wait_for_selector("#jdl-editor")
    page.fill("#jdl-editor", '[\n  Executable = "/bin/sleep";\n  Arguments = "600" "x";\n]')
    page.wait_for_selector("#jdl-errors li")
    assert "line 3, column 21" in page.inner_text("#jdl-errors")
    assert page.inner_text(".editor .gutter .bad") == "3"
    shot(page, artifacts, "launchpad-jdl-error")
    page.fill("#jdl-editor", '[\n  JobName = "to-kill";\n  Executable = "/bin/sleep";\n'
                             '  Arguments = "600";\n]')
    page.wait_for_selector("#jdl-summary:has-text('Valid: 1 job')")
    assert page.locator(".editor .gutter .bad").count() == 0
    page.click("#submit-job")
    victim = int(page.locator("#new-jobs a.new-job").first.inner_text().split()[-1])

    # -- the job of the flow, from the form, with two input files ---------------------------
    page.click("#tab-form")
    page.fill("#f-executable", "run.sh")
    page.fill("#f-arguments", "42")
    page.fill("#f-name", "portal-flow")
    page.fill("#f-outputs", "")
    page.fill("#f-output-data", "result.txt")
    page.fill("#f-output-se", SE)
    page.set_input_files("#input-files", files=[
        {"name": "run.sh", "mimeType": "text/x-sh", "buffer": RUN_SH},
        {"name": "input.txt", "mimeType": "text/plain", "buffer": b"from the input sandbox\n"}])
    page.wait_for_selector("#form-jdl:has-text('portal-flow')")
    shot(page, artifacts, "launchpad")
    page.click("#submit-job")
    page.wait_for_selector("#new-jobs a.new-job")
    links = page.locator("#new-jobs a.new-job")
    job = int(links.last.inner_text().split()[-1])
    assert job != victim

    # -- kill the other job from the monitor (selection + confirmation) --------------------
    page.goto(env.portal + "#/jobs")
    page.wait_for_selector(f'#jobs-body tr[data-job="{victim}"]')
    page.check(f'#jobs-body tr[data-job="{victim}"] input[type=checkbox]')
    assert page.inner_text("#selection-info") == "1 selected"
    page.click("#action-kill")
    page.wait_for_selector("dialog[open]")
    assert f"Jobs {victim}." in page.inner_text("dialog[open]")
    page.click("dialog[open] button.danger")
    wait_for(lambda: job_status(env, victim) == "Killed", 30, "the job to be killed")

    # -- a local pilot runs the job; the monitor shows it Running then Done -----------------
    env.pilot("flow")
    wait_for(lambda: monitor_row_status(page, job) == "Running", 90, "Running in the monitor")
    page.click(f'#jobs-body a[href="#/job/{job}"]')
    page.wait_for_selector("#job-title:has-text('portal-flow')")
    page.click("#tab-output")
    wait_for(lambda: (page.click("#tab-output") or True)
             and "answer 42" in (page.locator("#job-peek").inner_text()), 60,
             "the last lines of the output while Running")
    shot(page, artifacts, "job-output-running")
    assert job_status(env, job) in ("Running", "Completing", "Done")
    page.goto(env.portal + "#/jobs")
    page.wait_for_selector("#jobs-table[aria-busy=false]")
    wait_for(lambda: monitor_row_status(page, job) == "Done", 90, "Done in the monitor")
    counts = page.inner_text("#status-counts")
    assert "Done" in counts and "Killed" in counts
    shot(page, artifacts, "job-monitor")

    # -- the job page: attributes, logging, JDL, output sandbox -----------------------------
    page.goto(env.portal + f"#/job/{job}")
    page.wait_for_selector("#job-attributes")
    assert "portal-flow" in page.inner_text("#job-attributes")
    assert "Done" in page.inner_text("#job-status")
    page.click("#tab-logging")
    page.wait_for_selector("#job-logging")
    assert "Running" in page.inner_text("#job-logging")
    page.click("#tab-jdl")
    page.wait_for_selector("#job-jdl")
    assert "SB:" in page.inner_text("#job-jdl")
    page.click("#tab-heartbeats")
    page.wait_for_selector("#job-heartbeats")
    page.click("#tab-data")
    page.wait_for_selector("#job-output-data")
    output_lfn = page.locator("#job-output-data td a").first.inner_text()
    assert output_lfn.endswith("/result.txt") and SE in page.inner_text("#job-output-data")
    page.click("#tab-summary")
    shot(page, artifacts, "job-page")
    with page.expect_download() as info:
        page.click("#download-output")
    archive = Path(info.value.path()).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        out = tar.extractfile("std.out")
        assert out is not None
        text = out.read().decode()
    assert "answer 42" in text and "from the input sandbox" in text and "tick 8" in text

    # -- data: upload through the SE (streamed, with progress), browse, download ------------
    page.goto(env.portal + "#/data")
    page.wait_for_selector("#catalog-listing")
    page.click("#tab-upload")
    page.select_option("#upload-se", SE)
    content = b"portal data file\n" * 1000
    page.set_input_files("#upload-file", files=[{"name": "results.txt",
                                                 "mimeType": "text/plain", "buffer": content}])
    page.click("#upload-start")
    page.wait_for_selector("#upload-info:has-text('registered')")
    page.click("#tab-browse")
    page.wait_for_selector("#catalog-table button.file:has-text('results.txt')")
    page.click("#catalog-table button.file:has-text('results.txt')")
    page.wait_for_selector("#file-replicas a.download")
    assert SE in page.inner_text("#file-replicas")
    shot(page, artifacts, "data")
    with page.expect_download() as info:
        page.click("#file-replicas a.download")
    assert Path(info.value.path()).read_bytes() == content

    # -- pilots and sites -------------------------------------------------------------------
    # the job's output data, found in the catalog and downloaded from its replica
    page.goto(env.portal + "#/data?path=" + output_lfn.rsplit("/", 1)[0])
    page.click("#catalog-table button.file:has-text('result.txt')")
    page.wait_for_selector("#file-replicas a.download")
    with page.expect_download() as info:
        page.click("#file-replicas a.download")
    assert Path(info.value.path()).read_bytes() == b"result of 42\n"

    page.goto(env.portal + "#/pilots")
    page.wait_for_selector("#pilot-counts")
    assert "LCG.Portal.test" in page.inner_text("#pilot-counts")
    shot(page, artifacts, "pilots")
    assert problems == []
    page.close()
