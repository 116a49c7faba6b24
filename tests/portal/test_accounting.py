"""The Accounting view in headless Chromium, on records made the real way: jobs of alice and
bob run by a local pilot to Done/Failed, the WMS's accounting outbox shipped by the real
AccountingAgent (one cycle at a time, in this process) into the monitoring tables, read back
by ``Accounting/ReportGenerator``. The view draws jobs by site and by group, failure reasons,
efficiency and CPU by user with the series and totals the service computes, shows each
series' own value on hover, keeps users to their own records unless their group may see all,
and shows a hostile job group as text."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from monitoring.agents.accounting import AccountingAgent
from tests.portal.browser import new_page, shot, sign_in, through_idp, watch
from tests.portal.env import SITE, PortalEnv, wait_for

RG = "Accounting/ReportGenerator"
HOSTILE = "<svg onload=window.__xss=1>&"  # a JobGroup is at most 32 characters
BUSY = "-c 'i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done'"
FINAL = {"Done", "Failed"}


def submit(env: PortalEnv, user: str, executable: str, group: str, args: str = "") -> int:
    jdl = (f'[ Executable = "{executable}"; Arguments = "{args}"; '
           f'JobName = "acct-{user}"; JobGroup = "{group}"; ]')
    return int(env.call(user, "demo_user", "WorkloadManagement/JobManager", "submitJob", jdl))


def statuses(env: PortalEnv, jobs: list[int]) -> dict[int, dict[str, str]]:
    found = env.call("alice", "demo_admin", "WorkloadManagement/JobMonitoring",
                     "getJobsStatus", jobs)
    return {int(k): v for k, v in found.items()}


def report(env: PortalEnv, user: str, group: str, name: str, grouping: str,
           cond: dict[str, list[str]] | None = None, days: int = 7) -> dict[str, Any]:
    end = datetime.now(timezone.utc).replace(microsecond=0)
    return dict(env.call(user, group, RG, "getReport", {
        "typeName": "Job", "reportName": name,
        "startTime": (end - timedelta(days=days)).timestamp(), "endTime": end.timestamp(),
        "condDict": cond or {}, "grouping": grouping}))


@pytest.fixture(scope="module")
def finished(portal_env: PortalEnv) -> dict[str, int]:
    """Four jobs run to their end by a pilot and accounted: alice's busy and failing jobs
    (group acct-ok), alice's job of a hostile group, bob's busy job."""
    env = portal_env
    jobs = {"busy": submit(env, "alice", "/bin/sh", "acct-ok", BUSY),
            "fail": submit(env, "alice", "/bin/false", "acct-ok"),
            "hostile": submit(env, "alice", "/bin/true", HOSTILE),
            "bob": submit(env, "bob", "/bin/sh", "acct-bob", BUSY)}
    env.pilot("accounting")
    wait_for(lambda: {s["Status"] for s in statuses(env, list(jobs.values())).values()} <= FINAL,
             timeout=150, what="the jobs to end")
    env.stop_pilots()
    mine = {"JobGroup": ["acct-ok", "acct-bob", HOSTILE]}
    wait_for(lambda: env.run_agent(AccountingAgent) and sum(report(
        env, "alice", "demo_admin", "TotalNumberOfJobs", "JobGroup", mine)["totals"].values())
        == len(jobs), timeout=60, what="the jobs' accounting records")
    return jobs


def drawn(page: Any, what: str) -> None:
    page.wait_for_selector(f'#acc-chart[data-report="Job/{what}"] .uplot')
    page.wait_for_selector("#acc-draw:enabled")


def legend(page: Any) -> list[str]:
    """The series' labels in the chart's legend (the x series first is left out)."""
    return [t.strip() for t in page.locator(
        "#acc-chart .u-legend .u-series:not(:first-child) .u-label").all_inner_texts()]


def totals(page: Any) -> dict[str, str]:
    rows = page.locator("#acc-table tbody tr").evaluate_all(
        "rs => rs.map(r => [r.dataset.group, r.cells[1].textContent])")
    return dict(rows)


def hover_last(page: Any) -> list[str]:
    """Hover the last interval of the chart; the legend's values then."""
    box = page.locator("#acc-chart .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2)
    return [t.strip() for t in page.locator(
        "#acc-chart .u-legend .u-series:not(:first-child) .u-value").all_inner_texts()]


def fmt(value: float) -> str:
    return f"{round(value, 2):,}".removesuffix(".0")


def test_accounting_view(portal_env: PortalEnv, finished: dict[str, int], browser: Any,
                         artifacts: Path) -> None:
    env = portal_env
    failed_minor = env.call("alice", "demo_user", "WorkloadManagement/JobMonitoring",
                            "getJobsMinorStatus", [finished["fail"]])[
                                str(finished["fail"])]["MinorStatus"]
    page = new_page(browser)
    problems = watch(page)
    sign_in(page, env, "alice", "#/accounting")
    assert page.locator("#nav a", has_text="Accounting").count() == 1

    # the default: jobs by site over the last 7 days, stacked bars, values on hover
    drawn(page, "NumberOfJobs/Site")
    expected = report(env, "alice", "demo_user", "NumberOfJobs", "Site")
    assert legend(page) == sorted(expected["data"]) and SITE in legend(page)
    assert totals(page) == {g: fmt(v) for g, v in expected["totals"].items()}
    last = max(expected["data"][SITE], key=int)
    assert hover_last(page) == [fmt(expected["data"][g][last]) for g in sorted(expected["data"])]
    shot(page, artifacts, "accounting")

    # grouping and period chosen in the form: alice's groups, hostile text as text
    page.select_option("#acc-grouping", "JobGroup")
    page.select_option("#acc-period", "24h")
    page.click("#acc-draw")
    drawn(page, "NumberOfJobs/JobGroup")
    assert HOSTILE in legend(page) and "acct-ok" in legend(page)
    assert "acct-bob" not in legend(page)  # bob's records are not alice's to see
    assert totals(page)["acct-ok"] == "2" and totals(page)[HOSTILE] == "1"
    assert hover_last(page)[legend(page).index("acct-ok")] == "2"

    # a period of its own, long before any record
    page.select_option("#acc-period", "custom")
    page.fill("#acc-from", "2001-01-01")
    page.fill("#acc-to", "2001-01-03")
    page.click("#acc-draw")
    page.wait_for_selector("#acc-empty")
    assert page.locator("#acc-chart .uplot").count() == 0
    page.select_option("#acc-period", "24h")

    # the presets: failure reasons (a pie: bars per reason), efficiency, CPU by user
    page.click("#acc-presets button:has-text('Failure reasons')")
    drawn(page, "TotalNumberOfJobs/FinalMinorStatus")
    expected = report(env, "alice", "demo_user", "TotalNumberOfJobs", "FinalMinorStatus",
                      {"FinalMajorStatus": ["Failed"]}, days=1)
    assert failed_minor in totals(page)
    assert page.input_value("#acc-filter-key") == "FinalMajorStatus"  # the form says it
    assert page.locator("#acc-filter-value option:checked").all_inner_texts() == ["Failed"]
    assert "Failure reasons" in page.inner_text("#acc-chart .u-title")
    box = page.locator("#acc-chart .u-over").bounding_box()  # bars per reason: hover one
    reasons = sorted(expected["totals"])
    slot = box["width"] / len(reasons)
    page.mouse.move(box["x"] + slot * (reasons.index(failed_minor) + 0.5),
                    box["y"] + box["height"] / 2)
    assert page.inner_text("#acc-chart .u-legend .u-series:nth-child(2) .u-value").strip() \
        == fmt(expected["totals"][failed_minor])
    assert totals(page) == {g: fmt(v) for g, v in expected["totals"].items()}
    shot(page, artifacts, "accounting-failures")
    page.click("#acc-presets button:has-text('Efficiency by site')")
    drawn(page, "CPUEfficiency/Site")
    expected = report(env, "alice", "demo_user", "CPUEfficiency", "Site", days=1)
    assert totals(page) == {g: fmt(v) for g, v in expected["totals"].items()}
    page.click("#acc-presets button:has-text('CPU by user')")
    drawn(page, "CPUUsage/User")
    assert legend(page) == ["alice"]
    # the monitoring records (WMS history snapshots) through the same form
    page.select_option("#acc-type", "Monitoring/Monitoring|WMSHistory")
    page.wait_for_selector("#acc-report option[value=NumberOfJobs]", state="attached")
    page.wait_for_selector("#acc-draw:enabled")
    page.click("#acc-draw")
    page.wait_for_selector('#acc-chart[data-report^="WMSHistory/NumberOfJobs/"], '
                           "#messages .msg.error", timeout=60_000)
    assert page.locator("#messages .msg.error").all_inner_texts() == []
    assert not problems, problems
    assert page.evaluate("window.__xss") is None

    # in a group that sees every record, bob's CPU is there too
    with page.expect_navigation():
        page.select_option("#group-select", "demo_admin")
    through_idp(page, "alice")
    page.goto(env.portal + "#/accounting")
    drawn(page, "NumberOfJobs/Site")
    page.click("#acc-presets button:has-text('CPU by user')")
    drawn(page, "CPUUsage/User")
    assert {"alice", "bob"} <= set(legend(page))
    expected = report(env, "alice", "demo_admin", "CPUUsage", "User")
    assert totals(page) == {g: fmt(v) for g, v in expected["totals"].items()}
    assert float(expected["totals"]["bob"]) >= 0
    shot(page, artifacts, "accounting-cpu-by-user")
    assert not problems, problems
