"""``doutput``: fetch the output sandboxes of jobs, as COMDIRAC's ``doutput``.

Each job's sandbox is unpacked into ``<dir>/<JobID>/`` (``-D dir``, default the current
directory; ``-n`` unpacks straight into ``dir``). A job whose directory exists is skipped with
"Output for job N already retrieved, remove the output directory to redownload". ``-g GROUP``
adds your Done and Failed jobs of that job group of the last 30 days. Failures print
``ERROR: <message>`` and the exit status is 2; a directory made for a failed download is
removed again so that a retry is not skipped.

Example::

    doutput 12 13
    doutput -D results -g analysis
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

from core.cli.common import EXIT_ERROR, run
from core.exceptions import NotFoundError, PilotWMSError
from wms.cli._common import print_error, progress_for, split_ids
from wms.client import WMSClient

GROUP_DAYS = 30


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="doutput", description="Retrieve output sandboxes.")
    p.add_argument("jobs", nargs="*", metavar="JobID", help="job IDs (comma-separated too)")
    p.add_argument("-D", "--OutputDir", dest="output_dir", help="destination directory")
    p.add_argument("--Data", dest="data", action="store_true",
                   help="download the output data (the job's UploadedOutputData) instead of "
                        "the output sandbox")
    p.add_argument("--Sandbox", dest="sandbox", action="store_true",
                   help="download the output sandbox, even with --Data")
    p.add_argument("-v", "--verbose", action="store_true", help="verbose output")
    p.add_argument("-n", "--NoJobDir", dest="no_job_dir", action="store_true",
                   help="do not create a directory per job")
    p.add_argument("-g", "--JobGroup", dest="job_groups", action="append", default=[],
                   help="get the output of the jobs of this group (repeatable)")
    p.add_argument("-i", "--input-file", dest="input_file", help="read job IDs from a file")
    return p


def fetch(wms: WMSClient, job: int, sb_type: str, dest: Path) -> None:
    """Download a job's sandboxes into ``dest``; a directory made here is removed on error."""
    made = not dest.exists()
    try:
        wms.download_job_sandbox(job, sb_type, dest,
                                 progress=progress_for(f"{sb_type} sandbox of job {job}"))
    except BaseException:
        if made and dest.is_dir() and not any(dest.iterdir()):
            dest.rmdir()
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """The ``doutput`` command (console script); returns the exit status."""
    return run(_main, argv)


def _main(argv: Sequence[str]) -> int:
    opts = parser().parse_args(argv)
    jobs = split_ids(opts.jobs, opts.input_file)
    errors: list[str] = []
    out_dir = Path(opts.output_dir or ".")
    with WMSClient() as wms:
        cut = datetime.now(timezone.utc).date() - timedelta(days=GROUP_DAYS)
        for group in opts.job_groups:
            found = wms.select(job_group=group, status=["Done", "Failed"], cut_date=cut)
            jobs += [job for job in found if job not in jobs]
        todo = []
        for job in jobs:
            if (out_dir / str(job)).is_dir() and not opts.no_job_dir:
                print(f"Output for job {job} already retrieved, remove the output directory "
                      "to redownload")
            else:
                todo.append(job)
        done: dict[int, list[str]] = {}
        for job in todo:
            dest = out_dir if opts.no_job_dir else out_dir / str(job)
            if opts.sandbox or not opts.data:
                try:
                    fetch(wms, job, "Output", dest)
                    done.setdefault(job, []).append(f"{job}: OutputSandbox {dest}")
                except PilotWMSError as exc:
                    errors.append(exc.message)
            if opts.data:
                try:
                    for lfn in fetch_data(wms, job, dest):
                        done.setdefault(job, []).append(f"{job}: OutputData {lfn}")
                except PilotWMSError as exc:
                    errors.append(exc.message)
    for message in errors:
        print_error(message)
    if opts.verbose:
        for lines in done.values():
            for line in lines:
                print(line)
    return EXIT_ERROR if errors else 0


def fetch_data(wms: WMSClient, job: int, dest: Path) -> list[str]:
    """Download the job's output data (its ``UploadedOutputData`` parameter, set by the job
    wrapper) into ``dest`` through the data manager, checksums verified; the LFNs fetched."""
    params = wms.parameters([job], ["UploadedOutputData"]).get(job, {})
    lfns = [x.strip() for x in str(params.get("UploadedOutputData") or "").split(",")
            if x.strip()]
    if not lfns:
        raise NotFoundError(f"No output data found for job {job}")
    from dms.cli._transfer import data_manager  # the data system only when asked for

    manager = data_manager()
    dest.mkdir(parents=True, exist_ok=True)
    for lfn in lfns:
        manager.get(lfn, dest)
    return lfns


if __name__ == "__main__":
    sys.exit(main())
