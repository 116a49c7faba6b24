"""``dlogging``: the history of jobs, as COMDIRAC's ``dlogging`` prints it.

One table per job: Status, MinorStatus, ApplicationStatus, Time, Source, sorted by time, as
``pretty`` (default), ``csv`` or ``json`` (``-f``). Failures print ``ERROR: <message>``, exit 2.

Example::

    dlogging 12
    dlogging -f json 12 13
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core.cli.common import EXIT_ERROR, run
from core.exceptions import PilotWMSError
from wms.cli._common import FORMATS, format_table, print_error, split_ids
from wms.client import WMSClient

HEADERS = ["Status", "MinorStatus", "ApplicationStatus", "Time", "Source"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dlogging", description="Job logging info (COMDIRAC).")
    p.add_argument("jobs", nargs="+", metavar="JobID", help="job IDs (comma-separated too)")
    p.add_argument("-f", "--Fmt", dest="fmt", default="pretty",
                   help="display format (" + ", ".join(FORMATS) + ")")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The ``dlogging`` command (console script); returns the exit status."""
    return run(_main, argv)


def _main(argv: Sequence[str]) -> int:
    opts = parser().parse_args(argv)
    fmt = opts.fmt.lower()
    format_table([], HEADERS, fmt)  # refuse a bad format before any call
    errors: list[str] = []
    with WMSClient() as wms:
        for job in split_ids(opts.jobs):
            try:
                records = wms.logging_info(job)
            except PilotWMSError as exc:
                errors.append(exc.message)
                continue
            print(format_table([list(r) for r in records], HEADERS, fmt, sort="Time"))
    for message in errors:
        print_error(message)
    return EXIT_ERROR if errors else 0


if __name__ == "__main__":
    sys.exit(main())
