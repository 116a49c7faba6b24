"""``dkill``: kill (or with ``-D`` delete) jobs, as COMDIRAC's ``dkill``.

Silent on success (``-v`` prints ``killed job N`` / ``deleted job N``); each failure prints
``ERROR: <message>`` on stderr and the exit status is 2. ``-a`` acts on all your jobs that the
action applies to (not yet final ones for a kill, all but deleted ones for a delete).

Example::

    dkill 12 13          # kill two jobs
    dkill -D -v 12       # deleted job 12
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core.cli.common import EXIT_ERROR, run
from core.exceptions import PilotWMSError
from wms.cli._common import print_error, split_ids
from wms.client import WMSClient
from wms.logic.states import ACTIVE, FINAL, JOB_STATUSES


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dkill", description="Kill or delete jobs (COMDIRAC).")
    p.add_argument("jobs", nargs="*", metavar="JobID", help="job IDs (comma-separated too)")
    p.add_argument("-D", "--delete", action="store_true", help="delete the jobs")
    p.add_argument("-a", "--all", dest="select_all", action="store_true",
                   help="all my jobs")
    p.add_argument("-v", "--verbose", action="store_true", help="verbose output")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The ``dkill`` command (console script); returns the exit status."""
    return run(_main, argv)


def _main(argv: Sequence[str]) -> int:
    opts = parser().parse_args(argv)
    jobs = split_ids(opts.jobs)
    errors: list[str] = []
    with WMSClient() as wms:
        if opts.select_all:
            owner = str(wms.whoami().get("username") or "")
            statuses = ACTIVE | FINAL if opts.delete else ACTIVE
            mine = wms.select(owner=owner,
                              status=[str(s) for s in JOB_STATUSES if s in statuses])
            jobs += [job for job in mine if job not in jobs]
        if not jobs:
            parser().error("give job IDs or -a")
        action = wms.delete if opts.delete else wms.kill
        verb = "deleted" if opts.delete else "killed"
        for job in jobs:
            try:
                action([job])
            except PilotWMSError as exc:
                errors.append(exc.message)
                continue
            if opts.verbose:
                print(f"{verb} job {job}")
    for message in errors:
        print_error(message)
    return EXIT_ERROR if errors else 0


if __name__ == "__main__":
    sys.exit(main())
