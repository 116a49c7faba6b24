"""``dcron``: jobs submitted at regular intervals (ESCAPE R13).

    dcron add --every 1h job.jdl                           # also 30s, 5m, 1d, 2w
    dcron add --cron "0 6 * * MON-FRI" --tz Europe/Rome job.jdl
          [--name N] [--overlap skip|queue|parallel] [--catch-up none|all]
          [--max-runs N] [--until 2026-12-31] [--start ISO-DATETIME]
    dcron list [-a] [-f pretty|csv|json]
    dcron show NAME|ID [-n 20]                             # the runs: slot, state, job, status
    dcron pause NAME|ID;  dcron resume NAME|ID;  dcron rm NAME|ID

Runs are jobs whose ``JobGroup`` is the schedule's name (``dstat -g NAME``); their outputs
come with ``doutput JOBID``. Errors print ``ERROR: <message>`` and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from core.cli.common import run
from core.exceptions import InvalidArgumentError
from wms.cli._common import FORMATS, format_table
from wms.client import WMSClient
from wms.scheduling_client import ScheduleClient


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dcron", description="Periodic job schedules.")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("add", help="add a schedule")
    when = a.add_mutually_exclusive_group(required=True)
    when.add_argument("--every", help="interval: 30s, 5m, 1h, 1d, 2w (seconds without unit)")
    when.add_argument("--cron", help='5-field cron expression, e.g. "0 6 * * MON-FRI"')
    a.add_argument("--tz", default="UTC", help="time zone of --cron/--until (e.g. Europe/Rome)")
    a.add_argument("--name", help="schedule name (default: the JDL file's name)")
    a.add_argument("--overlap", default="skip", choices=("skip", "queue", "parallel"))
    a.add_argument("--catch-up", default="none", choices=("none", "all"))
    a.add_argument("--max-runs", type=int)
    a.add_argument("--until", help="last date (YYYY-mm-dd) or ISO datetime")
    a.add_argument("--start", help="ISO datetime of the first --every run (default: now)")
    a.add_argument("jdl", help="JDL file (or inline JDL)")
    ls = sub.add_parser("list", help="your schedules")
    ls.add_argument("-a", "--all", action="store_true", help="everyone's (administrators)")
    ls.add_argument("-f", "--Fmt", dest="fmt", default="pretty", choices=FORMATS)
    s = sub.add_parser("show", help="a schedule and its runs")
    s.add_argument("ref", metavar="NAME|ID")
    s.add_argument("-n", "--limit", type=int, default=20)
    s.add_argument("-f", "--Fmt", dest="fmt", default="pretty", choices=FORMATS)
    for name, text in (("pause", "pause a schedule"), ("resume", "resume a schedule"),
                       ("rm", "remove a schedule (its jobs stay)")):
        sub.add_parser(name, help=text).add_argument("ref", metavar="NAME|ID")
    return p


def _ref(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _jdl(arg: str) -> tuple[str, str]:
    """(JDL text, default schedule name)."""
    if os.path.isfile(arg):
        name = Path(arg).stem.replace(" ", "_")[:32] or "schedule"
        return Path(arg).read_text(), name
    if arg.strip().startswith("["):
        return arg, "schedule"
    raise InvalidArgumentError(f"{arg}: no such JDL file")


def _main(argv: Sequence[str]) -> int:
    opts = parser().parse_args(argv)
    with WMSClient() as wms:
        schedules = ScheduleClient(wms)
        if opts.command == "add":
            text, default = _jdl(opts.jdl)
            desc = wms.with_sandbox(text, None)  # local files go up once, for every run
            sid = schedules.add(opts.name or default, desc.to_text(), every=opts.every,
                                cron=opts.cron, timezone=opts.tz, overlap=opts.overlap,
                                catch_up=opts.catch_up, max_runs=opts.max_runs,
                                until=opts.until, start=opts.start)
            print(sid)
        elif opts.command == "list":
            rows = [[s["ScheduleID"], s["Name"], s["Timing"], s["Overlap"], s["Status"],
                     s["Runs"], s["NextRun"] or "-"] for s in schedules.all(opts.all)]
            print(format_table(rows, ["ID", "Name", "Timing", "Overlap", "Status", "Runs",
                                      "NextRun"], opts.fmt, sort="ID"))
        elif opts.command == "show":
            info = schedules.show(_ref(opts.ref), opts.limit)
            if opts.fmt == "pretty":
                for key in ("ScheduleID", "Name", "Owner", "Timing", "Overlap", "CatchUp",
                            "MaxRuns", "Until", "Status", "Runs", "NextRun"):
                    print(f"{key:>10}: {'-' if info[key] is None else info[key]}")
                print()
            rows = [[r["Slot"], r["State"], r["JobID"] or "-", r["JobStatus"] or "-",
                     f"doutput {r['JobID']}" if r["JobStatus"] in ("Done", "Failed") else "-",
                     r["Note"] or "-"] for r in info["History"]]
            print(format_table(rows, ["Slot", "State", "JobID", "JobStatus", "Output", "Note"],
                               opts.fmt))
        elif opts.command == "pause":
            print(schedules.pause(_ref(opts.ref)))
        elif opts.command == "resume":
            print(schedules.resume(_ref(opts.ref)))
        elif opts.command == "rm":
            print(schedules.remove(_ref(opts.ref)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
