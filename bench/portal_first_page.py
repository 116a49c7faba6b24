"""The portal's job monitor over 100,000 jobs, measured in headless Chromium.

    python bench/portal_first_page.py [--jobs 100000] [--runs 5]

Fills the SQLite database of a fresh ``pilotwms init`` instance with ``--jobs`` jobs of the
demo user (bulk inserts; 1,000 Waiting, the rest Done), starts ``pilotwms serve`` (one
process) and opens the portal in Debian's Chromium (playwright, no browser download) with a
browser session of the user (made directly in the portal's table: the benchmark measures the
monitor, not the sign-in). Reported, as the median of ``--runs``, from the navigation's start
(``performance.now()`` in the page) to the first page of 50 rows in the table:

* cold: a new browser context, nothing cached (the shell, the modules, then the calls);
* warm: the same page loaded again (assets from the cache, as they are content-hashed);
* and, once loaded: the next page, the last page (offset paging), a sort on Status, a filter.

Target (issue 12): the first page in < 1 s end to end on this machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.machine import machine_line
from core.config.loader import load_config
from core.db import init_schema, make_engine, utcnow, write_transaction
from core.security.tokens import TokenIssuer
from portal.db import PORTAL_SCHEMA
from portal.logic import sessions
from wms.db import jobs as jobs_db

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]
ROWS = "document.querySelectorAll('#jobs-body tr[data-job]').length"


def until(page: Any, condition: str, timeout: float = 60_000) -> None:
    """Wait for a JavaScript condition (a function: the page's CSP allows no eval)."""
    page.wait_for_function(f"() => ({condition})", polling="raf", timeout=timeout)


def fill(url: str, total: int, active: int) -> None:
    engine = make_engine(url)
    now = utcnow()
    batch = 5000
    for start in range(0, total, batch):
        rows = [jobs_db.NewJob(owner="alice", owner_group="demo_user", vo="demo",
                               status="Waiting" if start + i < active else "Done",
                               minor_status="Pilot Agent Submission" if start + i < active
                               else "Execution Complete", original_jdl='[Executable="x";]',
                               job_name=f"job{start + i}", site=f"LCG.Site{(start + i) % 20}.org",
                               job_group=f"group{(start + i) % 50}")
                for i in range(min(batch, total - start))]
        with write_transaction(engine) as conn:
            jobs_db.insert_jobs(conn, rows, now=now, source="bench")
    engine.dispose()


def session_cookie(config_path: Path) -> str:
    config = load_config(config_path)
    assert config.auth.signing is not None
    token = TokenIssuer(config.auth.signing).issue("alice", group="demo_user", vo="demo",
                                                   lifetime=3600)
    engine = make_engine(config.database_url("Web"))
    init_schema(engine, PORTAL_SCHEMA)
    secret, _ = sessions.create_session(
        engine, 3600, kind="token", username="alice", group="demo_user",
        tokens={"access": token, "refresh": None, "expires": int(time.time()) + 3600,
                "lifetime": 3600})
    engine.dispose()
    return secret


def first_page(page: Any, url: str) -> float:
    page.goto(url)
    until(page, f"{ROWS} === 50")
    return float(page.evaluate("performance.now()")) / 1000


def action(page: Any, click: str, changed: str) -> float:
    started = time.perf_counter()
    page.click(click)
    until(page, changed)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--active", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(machine_line(), flush=True)
    from playwright.sync_api import sync_playwright

    pilotwms = [sys.executable, "-m", "core.cli.admin"]
    with tempfile.TemporaryDirectory() as tmp:
        inst = Path(tmp) / "inst"
        subprocess.run([*pilotwms, "init", str(inst), "--port", "0"], check=True,
                       capture_output=True)
        config = yaml.safe_load((inst / "config.yaml").read_text())
        started = time.perf_counter()
        fill(config["Database"], args.jobs, args.active)
        print(f"filled {args.jobs} jobs in {time.perf_counter() - started:.1f} s")
        secret = session_cookie(inst / "config.yaml")
        server = subprocess.Popen([*pilotwms, "serve", "--config", str(inst / "config.yaml"),
                                   "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            base = server.stdout.readline().split(" at ")[1].split()[0]
            time.sleep(3)  # the first fold of the job counters
            url = f"{base}/portal/#/jobs"
            cookie = {"name": "__Host-pwms_session", "value": secret, "url": base,
                      "secure": True, "httpOnly": True, "sameSite": "Strict"}
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                cold, warm = [], []
                for _ in range(args.runs):
                    context = browser.new_context(ignore_https_errors=True,
                                                  viewport={"width": 1280, "height": 900})
                    context.add_cookies([cookie])
                    page = context.new_page()
                    cold.append(first_page(page, url))
                    page.goto("about:blank")
                    warm.append(first_page(page, url))
                    context.close()
                context = browser.new_context(ignore_https_errors=True,
                                              viewport={"width": 1280, "height": 900})
                context.add_cookies([cookie])
                page = context.new_page()
                first_page(page, url)
                total = page.inner_text("#jobs-total")
                top = page.locator("#jobs-body tr[data-job]").first.get_attribute("data-job")
                following = action(page, "#page-next", f"document.querySelector('#jobs-body "
                                   f"tr[data-job]')?.dataset.job !== '{top}'")
                page.goto(f"{base}/portal/#/jobs?page={-(-args.jobs // 50)}")
                page.reload()
                until(page, f"{ROWS} > 0")
                last = float(page.evaluate("performance.now()")) / 1000
                page.goto(url)
                until(page, f"{ROWS} === 50")
                by_status = action(page, "#jobs-table th button[data-column=Status]",
                                   "location.hash.includes('sort=Status')"
                                   " && document.querySelector('#jobs-table')"
                                   ".getAttribute('aria-busy') === 'false'")
                chip = action(page, "#status-counts button[data-status=Waiting]",
                              "document.querySelector('#jobs-total').textContent"
                              ".startsWith('1000 ')")
                browser.close()
            load = os.getloadavg()
            print(f"jobs in the table: {total}")
            print(f"first page, cold cache   median {statistics.median(cold):.3f} s  "
                  f"(min {min(cold):.3f}, max {max(cold):.3f}, {args.runs} runs)")
            print(f"first page, warm cache   median {statistics.median(warm):.3f} s  "
                  f"(min {min(warm):.3f}, max {max(warm):.3f})")
            print(f"next page (click)        {following:.3f} s")
            print(f"last page (fresh load)   {last:.3f} s")
            print(f"sort by Status (click)   {by_status:.3f} s")
            print(f"filter Waiting (chip)    {chip:.3f} s")
            print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
                  f"on {os.cpu_count()} CPUs")
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
