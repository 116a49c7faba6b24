"""``dprod``: productions from the command line.

Sub-commands::

    dprod create FILE.yaml     # prints the new production's ID (steps checked first)
    dprod list                 # ProductionID Name Status Steps
    dprod show ID [--wait S]   # per step: files by status, tasks, % done (--wait: until 100%)
    dprod start|stop|clean ID

``-f pretty|csv|json``; errors: ``ERROR: <message>``, exit 2.

Example::

    $ dprod create prod.yaml
    3
    $ dprod show 3
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from core.cli.common import run
from transformation.cli._common import FORMATS, format_table, read_yaml, wait_percent
from transformation.client import ProductionClient

HEADERS = ["Step", "TransformationID", "Type", "Status", "Files", "Unused", "Assigned",
           "Processed", "Problematic", "MaxReset", "Tasks", "Done(%)"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dprod", description="Manage productions.")
    p.add_argument("-f", "--Fmt", dest="fmt", default="pretty", choices=FORMATS,
                   help="output format")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("create", help="create a production from a YAML file").add_argument("file")
    sub.add_parser("list", help="list productions")
    show = sub.add_parser("show", help="per-step summary of a production")
    show.add_argument("prod")
    show.add_argument("--wait", type=float, default=0,
                      help="wait up to this many seconds for every step at 100%%")
    for name in ("start", "stop", "clean"):
        sub.add_parser(name, help=f"{name} a production").add_argument("prod")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The ``dprod`` command (console script); returns the exit status."""
    return run(_main, argv)


def _prod(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _main(argv: Sequence[str]) -> int:
    opts = parser().parse_args(argv)
    with ProductionClient.from_config() as pc:
        if opts.command == "create":
            print(pc.create(read_yaml(opts.file)))
        elif opts.command == "list":
            rows = pc.productions()
            print(format_table([[p["ProductionID"], p["ProductionName"], p["Status"],
                                 ",".join(s["Name"] for s in p["Steps"])] for p in rows],
                               ["ProductionID", "Name", "Status", "Steps"], opts.fmt,
                               sort="ProductionID"))
        elif opts.command == "show":
            prod = _prod(opts.prod)
            code = 0
            if opts.wait:
                percent = wait_percent(lambda: min(s["PercentDone"] for s in pc.summary(prod)),
                                       timeout=opts.wait, label=f"production {prod}")
                code = 0 if percent >= 100 else 1
            steps = pc.summary(prod)
            print(format_table([[s["Step"], s["TransformationID"], s["Type"], s["Status"],
                                 s["Files_Total"], s["Files_Unused"], s["Files_Assigned"],
                                 s["Files_Processed"], s["Files_Problematic"],
                                 s["Files_MaxReset"],
                                 json.dumps(s["Tasks"], sort_keys=True) if opts.fmt != "json"
                                 else s["Tasks"], s["PercentDone"]] for s in steps],
                               HEADERS, opts.fmt))
            return code
        else:
            getattr(pc, opts.command)(_prod(opts.prod))
    return 0


if __name__ == "__main__":
    sys.exit(main())
