"""``devent``: events that release subscribed jobs (ECaccess's time-critical option 1).

    devent create an00h000 -d "the analysis at 00UTC is complete" [--group-owned]
                  [--subscribers grp1,grp2]          # EventManager property needed
    devent list [-f pretty|csv|json]                 # id, name, description, last notified,
                                                     # subscribers (jobs in Standby)
    devent notify an00h000 --env RUN_DATE=20261203 --env STEP=240   # owner only
    devent history an00h000 [-n 20]                  # who, when, variables, jobs released
    devent subscriptions an00h000
    devent unsubscribe JOBID                         # ends that job's chain
    devent delete an00h000                           # kills the standby jobs too

Subscribe with ``dsub --event an00h000 job.jdl`` (or ``Event = "an00h000";`` in the JDL).
Errors print ``ERROR: <message>`` and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core.cli.common import run
from core.exceptions import InvalidArgumentError
from wms.cli._common import FORMATS, format_table
from wms.client import WMSClient
from wms.scheduling_client import EventClient


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="devent", description="Manage and notify events.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("create", help="create an event (EventManager)")
    c.add_argument("name")
    c.add_argument("-d", "--description", default="")
    c.add_argument("--group-owned", action="store_true",
                   help="every EventManager of your group may notify it")
    c.add_argument("--subscribers", default="",
                   help="comma-separated groups that may subscribe (default: any of the VO)")
    ls = sub.add_parser("list", help="list the events")
    ls.add_argument("-f", "--Fmt", dest="fmt", default="pretty", choices=FORMATS)
    n = sub.add_parser("notify", help="release the jobs waiting for an event (owner only)")
    n.add_argument("name")
    n.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="a variable for the released jobs (repeat)")
    h = sub.add_parser("history", help="notifications of an event, newest first")
    h.add_argument("name")
    h.add_argument("-n", "--limit", type=int, default=20)
    h.add_argument("-f", "--Fmt", dest="fmt", default="pretty", choices=FORMATS)
    s = sub.add_parser("subscriptions", help="the subscriptions of an event")
    s.add_argument("name")
    s.add_argument("-f", "--Fmt", dest="fmt", default="pretty", choices=FORMATS)
    u = sub.add_parser("unsubscribe", help="end a job's subscription chain")
    u.add_argument("job_id")
    d = sub.add_parser("delete", help="delete an event and kill its standby jobs")
    d.add_argument("name")
    return p


def parse_env(items: Sequence[str]) -> dict[str, str]:
    """``NAME=VALUE`` items as a dict (a missing ``=`` is an error).

    >>> parse_env(["RUN_DATE=20261203", "MSG=a=b"])
    {'RUN_DATE': '20261203', 'MSG': 'a=b'}
    """
    env: dict[str, str] = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise InvalidArgumentError(f"--env: expected NAME=VALUE, got {item!r}")
        env[name] = value
    return env


def _main(argv: Sequence[str]) -> int:
    opts = parser().parse_args(argv)
    with WMSClient() as wms:
        events = EventClient(wms)
        if opts.command == "create":
            groups = [g.strip() for g in opts.subscribers.split(",") if g.strip()]
            print(events.create(opts.name, opts.description, group_owned=opts.group_owned,
                                subscriber_groups=groups))
        elif opts.command == "list":
            rows = [[e["EventID"], e["Name"], e["Description"], e["LastNotified"] or "-",
                     e["Subscribers"], e["Owner"] + ("@" + e["OwnerGroup"]
                                                     if e["GroupOwned"] else "")]
                    for e in events.all()]
            print(format_table(rows, ["ID", "Name", "Description", "LastNotified",
                                      "Subscribers", "Owner"], opts.fmt, sort="ID"))
        elif opts.command == "notify":
            done = events.notify(opts.name, parse_env(opts.env))
            print(f"notification {done['NotificationID']}: {done['Released']} job(s) released")
        elif opts.command == "history":
            rows = [[h["NotificationID"], h["Time"], f"{h['Sender']}@{h['SenderGroup']}",
                     " ".join(f"{k}={v}" for k, v in sorted(h["Environment"].items())) or "-",
                     h["Released"], ",".join(map(str, h["JobIDs"])) or "-", h["Status"]]
                    for h in events.history(opts.name, opts.limit)]
            print(format_table(rows, ["ID", "Time", "Sender", "Variables", "Released", "Jobs",
                                      "Status"], opts.fmt))
        elif opts.command == "subscriptions":
            rows = [[s["SubscriptionID"], s["JobID"], s["JobStatus"] or "-", s["Owner"],
                     "yes" if s["Active"] else f"no ({s['EndReason']})", s["Releases"]]
                    for s in events.subscriptions(opts.name)]
            print(format_table(rows, ["ID", "JobID", "JobStatus", "Owner", "Active",
                                      "Releases"], opts.fmt, sort="ID"))
        elif opts.command == "unsubscribe":
            if not opts.job_id.isdigit():
                raise InvalidArgumentError("Expected integer for jobID")
            done = events.unsubscribe(int(opts.job_id))
            print(f"job {done['StandbyJob']} no longer waits for event {done['Event']}")
        elif opts.command == "delete":
            killed = events.delete(opts.name)
            print(f"event {opts.name} deleted" + (
                f"; standby jobs killed: {','.join(map(str, killed))}" if killed else ""))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
