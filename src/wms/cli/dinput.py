"""``dinput``: fetch the input sandboxes of jobs into ``<dir>/<JobID>/``, like ``doutput``.

A job whose directory exists is skipped with "Input for job N already retrieved, remove the
input directory to redownload". Failures print ``ERROR: <message>``; exit status 2.

Example::

    dinput 12                  # ./12/job.sh ...
    dinput -D inputs 12 13
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from core.cli.common import EXIT_ERROR, run
from core.exceptions import PilotWMSError
from wms.cli._common import print_error, split_ids
from wms.cli.doutput import fetch
from wms.client import WMSClient


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dinput", description="Retrieve input sandboxes.")
    p.add_argument("jobs", nargs="+", metavar="JobID", help="job IDs (comma-separated too)")
    p.add_argument("-D", "--OutputDir", dest="output_dir", help="destination directory")
    p.add_argument("-n", "--NoJobDir", dest="no_job_dir", action="store_true",
                   help="do not create a directory per job")
    p.add_argument("-v", "--verbose", action="store_true", help="verbose output")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The ``dinput`` command (console script); returns the exit status."""
    return run(_main, argv)


def _main(argv: Sequence[str]) -> int:
    opts = parser().parse_args(argv)
    out_dir = Path(opts.output_dir or ".")
    errors: list[str] = []
    with WMSClient() as wms:
        for job in split_ids(opts.jobs):
            dest = out_dir if opts.no_job_dir else out_dir / str(job)
            if dest.is_dir() and not opts.no_job_dir:
                print(f"Input for job {job} already retrieved, remove the input directory "
                      "to redownload")
                continue
            try:
                fetch(wms, job, "Input", dest)
            except PilotWMSError as exc:
                errors.append(exc.message)
                continue
            if opts.verbose:
                print(f"{job}: InputSandbox {dest}")
    for message in errors:
        print_error(message)
    return EXIT_ERROR if errors else 0


if __name__ == "__main__":
    sys.exit(main())
