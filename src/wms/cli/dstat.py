"""``dstat``: job status tables, as COMDIRAC's ``dstat`` prints them.

Without job IDs: your jobs of the last 10 days (``-D``) that are not final (``-S`` picks
statuses, ``-S all`` or ``-a`` any status; ``-u USER`` another owner, ``-u '*'`` everyone's you
may see; ``-g`` job group, ``-n`` job name). The status filter applies to listed job IDs too.
Columns ``JobID Owner JobName OwnerGroup JobGroup Site Status MinorStatus SubmissionTime``
(``-F`` picks others), sorted by JobID, as ``pretty``, ``csv`` or ``json`` (``-f``).

Example::

    dstat                         # my active jobs
    dstat -S Done,Failed -f csv   # my finished jobs of the last 10 days, as CSV
    dstat 12,13 -a                # these two jobs, whatever their status
    dstat --summary Site,Status   # live counts from the WMS history (wms.cli._summary)
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from core.cli.common import run
from core.exceptions import InvalidArgumentError
from wms.cli._common import FORMATS, format_table, split_ids
from wms.cli._summary import print_summary
from wms.client import WMSClient
from wms.logic.states import ACTIVE, JOB_STATUSES

DEFAULT_FIELDS = ["Owner", "JobName", "OwnerGroup", "JobGroup", "Site", "Status",
                  "MinorStatus", "SubmissionTime"]
EXTRA_FIELDS = ["JobType", "ApplicationStatus", "StartExecTime", "EndExecTime", "CPUTime"]
#: default status filter: neither final nor deleted, in DIRAC's order
DEFAULT_STATUSES = [str(s) for s in JOB_STATUSES if s in ACTIVE]
CHUNK = 1000


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dstat", description="Job status (COMDIRAC's dstat).")
    p.add_argument("jobs", nargs="*", metavar="JobID", help="job IDs (comma-separated too)")
    p.add_argument("-u", "--User", dest="user",
                   help="job owner ('*' or __all__: every owner you may see)")
    p.add_argument("-S", "--Status", dest="status",
                   help="comma-separated statuses (" + ",".join(map(str, JOB_STATUSES))
                        + "), or 'all'")
    # -a and -S set the same filter: the last one given wins, as DIRAC's switches
    p.add_argument("-a", "--StatusAll", dest="status", action="store_const", const="all",
                   help="jobs of any status")
    p.add_argument("-g", "--JobGroup", dest="job_group", help="select jobs by job group")
    p.add_argument("-n", "--JobName", dest="job_name", help="select jobs by job name")
    p.add_argument("-f", "--Fmt", dest="fmt", default="pretty",
                   help="display format (" + ", ".join(FORMATS) + ")")
    p.add_argument("-D", "--JobDate", dest="days", type=int, default=10,
                   help="age of the jobs to display, in days (default 10)")
    p.add_argument("-F", "--Fields", dest="fields",
                   help="comma-separated job fields, e.g. "
                        + ",".join(DEFAULT_FIELDS + EXTRA_FIELDS))
    p.add_argument("-i", "--input-file", dest="input_file", help="read job IDs from a file")
    p.add_argument("--summary", nargs="?", const="Status", metavar="FIELDS",
                   help="job counts from the latest WMS history snapshot, by FIELDS "
                        "(default Status; e.g. Site,Status)")
    return p


def wanted_statuses(opts: argparse.Namespace) -> list[str] | None:
    """Lower-case statuses to keep, or None for any."""
    if opts.status is None:
        return [s.lower() for s in DEFAULT_STATUSES]
    chosen = [s.strip().lower() for s in opts.status.split(",") if s.strip()]
    return None if "all" in chosen else chosen


def main(argv: Sequence[str] | None = None) -> int:
    """The ``dstat`` command (console script); returns the exit status."""
    return run(_main, argv)


def _main(argv: Sequence[str]) -> int:
    # a listing of 100,000 jobs builds 100,000s of lists and no reference cycle: the cyclic
    # collector's passes over them cost a quarter of the command's CPU time, for nothing
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _dstat(argv)
    finally:
        if enabled:  # as it was (the command may run inside a longer-lived process)
            gc.enable()


def _dstat(argv: Sequence[str]) -> int:
    opts = parser().parse_args(argv)
    if opts.summary:
        return print_summary(opts.summary, opts.fmt.lower())
    fields = opts.fields.split(",") if opts.fields else DEFAULT_FIELDS
    fields = [f.strip() for f in fields if f.strip() and f.strip() != "JobID"]
    headers = ["JobID", *fields]
    format_table([], headers, opts.fmt.lower())  # refuse a bad format before any call
    statuses = wanted_statuses(opts)
    jobs = split_ids(opts.jobs, opts.input_file)
    with WMSClient() as wms:
        if not jobs:
            found = _search(wms, opts, statuses, fields)
            if found is not None:
                print(format_table(found, headers, opts.fmt.lower(), sort="JobID"))
                return 0
            owner = opts.user
            if owner is None:
                owner = str(wms.whoami().get("username") or "")
            elif owner == "*" or owner.lower() == "__all__":
                owner = None
            cut = datetime.now(timezone.utc).date() - timedelta(days=opts.days)
            known = {s.lower(): s for s in map(str, JOB_STATUSES)}
            server_status = None
            if statuses is not None:  # filtered here too; the server only narrows the list
                server_status = [known[s] for s in statuses if s in known]
            jobs = wms.select(cut_date=cut, owner=owner, job_group=opts.job_group,
                              job_name=opts.job_name, status=server_status)
        summaries = {}
        for start in range(0, len(jobs), CHUNK):
            for job, summary in wms.summary(jobs[start:start + CHUNK]).items():
                status = str(summary.get("Status", ""))
                if statuses is None or status.lower() in statuses:
                    summaries[job] = summary
    rows = []
    for job, summary in summaries.items():
        rows.append([job, *(summary.get(f) for f in fields)])
    print(format_table(rows, headers, opts.fmt.lower(), sort="JobID"))
    return 0


def _search(wms: WMSClient, opts: argparse.Namespace, statuses: list[str] | None,
            fields: list[str]) -> list[list[Any]] | None:
    """The listing's rows (JobID, then ``fields``) in as few calls as possible (the paged
    search, only the shown columns); None when a field is not a job attribute the search
    knows (then summaries are used)."""
    owner = opts.user
    if owner is None:
        owner = str(wms.whoami().get("username") or "")
    elif owner == "*" or owner.lower() == "__all__":
        owner = None
    cut = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=opts.days)
    cut = cut.replace(hour=0, minute=0, second=0)
    filters: list[tuple[str, str, Any]] = [("LastUpdateTime", "ge", cut)]
    if owner is not None:
        filters.append(("Owner", "eq", owner))
    if statuses is not None:
        known = {s.lower(): s for s in map(str, JOB_STATUSES)}
        filters.append(("Status", "in", [known[s] for s in statuses if s in known]))
    if opts.job_group:
        filters.append(("JobGroup", "eq", opts.job_group))
    if opts.job_name:
        filters.append(("JobName", "eq", opts.job_name))
    try:
        # datetimes kept as the text they travel as: the text the table shows
        return wms.search_rows(filters, ["JobID", *fields], datetimes_as_text=True)
    except InvalidArgumentError:
        return None


if __name__ == "__main__":
    sys.exit(main())
