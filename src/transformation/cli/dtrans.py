"""``dtrans``: transformations from the command line (COMDIRAC style).

Sub-commands::

    dtrans create FILE.yaml            # prints the new transformation's ID
    dtrans list [-S STATUS] [-t TYPE]   # TransformationID Name Type Status Files Processed(%)
    dtrans show ID [--wait SECONDS]     # every field; --wait: until 100% processed (bar)
    dtrans start|stop|flush|complete|clean ID
    dtrans extend ID N                  # N more tasks (no input files: MC)
    dtrans files ID [--status S]        # LFN Status ErrorCount TaskID LastUpdate
    dtrans tasks ID [--status S]        # TaskID Status ExternalID TargetSE Site LastUpdate
    dtrans reset-files ID --status Problematic
    dtrans log ID                       # Date Author Message

``-f pretty|csv|json`` (DIRAC's table formats). Errors print ``ERROR: <message>`` on stderr
and exit 2; ``show --wait`` exits 1 when the time is up before 100%.

Example::

    $ dtrans create reco.yaml
    12
    $ dtrans files 12 --status MaxReset
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from core.cli.common import run
from transformation.cli._common import FORMATS, format_table, key_values, read_yaml, wait_percent
from transformation.client import TransformationClient
from transformation.logic.states import FILE_STATUSES

ACTIONS = {"start": "start", "stop": "stop", "flush": "flush", "complete": "complete",
           "clean": "clean"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dtrans", description="Manage transformations.")
    p.add_argument("-f", "--Fmt", dest="fmt", default="pretty", choices=FORMATS,
                   help="output format")
    sub = p.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a transformation from a YAML file")
    create.add_argument("file")
    ls = sub.add_parser("list", help="list transformations")
    ls.add_argument("-S", "--status", action="append", help="only these statuses")
    ls.add_argument("-t", "--type", action="append", help="only these types")
    show = sub.add_parser("show", help="show one transformation")
    show.add_argument("trans")
    show.add_argument("--wait", type=float, default=0,
                      help="wait up to this many seconds for 100%% processed")
    for name in ACTIONS:
        sub.add_parser(name, help=f"{name} a transformation").add_argument("trans")
    extend = sub.add_parser("extend", help="add N tasks (MC)")
    extend.add_argument("trans")
    extend.add_argument("tasks", type=int)
    files = sub.add_parser("files", help="the files of a transformation")
    files.add_argument("trans")
    files.add_argument("--status", action="append", choices=FILE_STATUSES)
    tasks = sub.add_parser("tasks", help="the tasks of a transformation")
    tasks.add_argument("trans")
    tasks.add_argument("--status", action="append")
    reset = sub.add_parser("reset-files", help="files in a status back to Unused")
    reset.add_argument("trans")
    reset.add_argument("--status", required=True, choices=FILE_STATUSES)
    sub.add_parser("log", help="the change log").add_argument("trans")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The ``dtrans`` command (console script); returns the exit status."""
    return run(_main, argv)


def _trans(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _main(argv: Sequence[str]) -> int:
    opts = parser().parse_args(argv)
    fmt = opts.fmt
    with TransformationClient.from_config() as tc:
        command = opts.command
        if command == "create":
            print(tc.create(read_yaml(opts.file)))
        elif command == "list":
            cond: dict[str, Any] = {}
            if opts.status:
                cond["Status"] = opts.status
            if opts.type:
                cond["Type"] = opts.type
            rows = tc.summary(cond)
            print(format_table(
                [[r["TransformationID"], r["TransformationName"], r["Type"], r["Status"],
                  r["Files_Total"], r["Files_PercentProcessed"], r["Jobs_TotalCreated"]]
                 for r in rows],
                ["TransformationID", "Name", "Type", "Status", "Files", "Processed(%)",
                 "Tasks"], fmt, sort="TransformationID"))
        elif command == "show":
            trans = _trans(opts.trans)
            code = 0
            if opts.wait:
                tid = tc.get(trans)["TransformationID"]
                percent = wait_percent(
                    lambda: tc.summary({"TransformationID": tid})[0]["Files_PercentProcessed"],
                    timeout=opts.wait, label=f"transformation {tid}")
                code = 0 if percent >= 100 else 1
            info = tc.get(trans, extra_params=True)
            info.update({f"Files{k}": v for k, v in tc.stats(trans).items()})
            info.update({f"Tasks{k}": v for k, v in tc.task_stats(trans).items()})
            print(key_values(info, fmt))
            return code
        elif command in ACTIONS:
            getattr(tc, ACTIONS[command])(_trans(opts.trans))
        elif command == "extend":
            print(" ".join(str(t) for t in tc.extend(_trans(opts.trans), opts.tasks)))
        elif command == "files":
            rows = tc.files(_trans(opts.trans), status=opts.status)
            print(format_table([[r["LFN"], r["Status"], r["ErrorCount"], r["TaskID"] or "",
                                 r["LastUpdate"]] for r in rows],
                               ["LFN", "Status", "ErrorCount", "TaskID", "LastUpdate"], fmt))
        elif command == "tasks":
            rows = tc.tasks(_trans(opts.trans), status=opts.status)
            print(format_table([[r["TaskID"], r["ExternalStatus"], r["ExternalID"],
                                 r["TargetSE"], r["Site"], r["LastUpdateTime"]] for r in rows],
                               ["TaskID", "Status", "ExternalID", "TargetSE", "Site",
                                "LastUpdate"], fmt, sort="TaskID"))
        elif command == "reset-files":
            count = tc.reset_files(_trans(opts.trans), opts.status)
            print(f"{count} files reset to Unused")
        elif command == "log":
            rows = tc.logging(_trans(opts.trans))
            print(format_table([[r["MessageDate"], r["Author"], r["Message"]] for r in rows],
                               ["Date", "Author", "Message"], fmt))
    return 0


if __name__ == "__main__":
    sys.exit(main())
