"""``dls [-l] [-L] [-t] [-r] [-n] [-S] [-H] [path...]``: list catalog directories, as COMDIRAC.

Each path is printed as ``<path>:`` then its listing. Without ``-l``: the names of its files
and subdirectories, sorted, one per line. With ``-l`` (DIRAC's ``DirectoryListing``)::

    drwxr-xr-x 0 alice demo_user    0 2026-11-22 07:10:00 data
    -rw-r--r-- 2 alice demo_user 1234 2026-11-22 07:10:02 f1

mode, number of replicas (subdirectories: 0), owner, group, size, modification date (UTC),
name; datasets show as ``s<mode>`` with their number of files and total size. Sorted by
name, or by date (``-t``) or size (``-S``) newest/largest first; ``-r`` reverses; ``-n``
prints numeric ids (always 0 here: the catalog keeps names); ``-H`` sizes in powers of 2
(``1.2KiB``); ``-L`` adds each replica (``   <SE padded to 15> <PFN>``). A file path lists
that file (long form). A missing path prints ``Error: "<path>" doesn't exist``; the exit
status is then 2. Unlike DIRAC, which prints 0, the replica count is the real one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from core.cli.common import EXIT_ERROR, run
from dms.catalog_client import FileCatalogClient
from dms.cli._common import catalog, date_text, human_size, mode_string, session

Entry = tuple[str, int, str, str, int, Any, str, list[str]]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dls", description="List catalog directories.")
    p.add_argument("paths", nargs="*", metavar="path")
    p.add_argument("-l", "--long", action="store_true", help="detailed listing")
    p.add_argument("-L", "--list-replicas", action="store_true",
                   help="detailed listing with replicas")
    p.add_argument("-t", "--time", action="store_true", help="time based order")
    p.add_argument("-r", "--reverse", action="store_true", help="reverse sort order")
    p.add_argument("-n", "--numericid", action="store_true", help="numeric UID and GID")
    p.add_argument("-S", "--size", action="store_true", help="size based order")
    p.add_argument("-H", "--human-readable", action="store_true", help="human readable sizes")
    return p


def _entry(kind: str, name: str, meta: dict[str, Any], nrep: int, numeric: bool,
           replicas: dict[str, str] | None) -> Entry:
    owner = "0" if numeric else str(meta.get("Owner", "unknown"))
    group = "0" if numeric else str(meta.get("OwnerGroup", "unknown"))
    lines = [f"{se.ljust(15)} {pfn}" for se, pfn in (replicas or {}).items()]
    return (kind + mode_string(int(meta["Mode"])), nrep, owner, group,
            int(meta.get("Size", 0)), meta["ModificationDate"], name, lines)


def print_listing(entries: list[Entry], opts: argparse.Namespace) -> None:
    if opts.time:
        entries.sort(key=lambda e: e[5], reverse=not opts.reverse)
    elif opts.size:
        entries.sort(key=lambda e: e[4], reverse=not opts.reverse)
    else:
        entries.sort(key=lambda e: e[6], reverse=opts.reverse)
    shown = [(e[0], str(e[1]), e[2], e[3], human_size(e[4]) if opts.human_readable
              else str(e[4]), date_text(e[5]), e[6]) for e in entries]
    widths = [max((len(row[i]) for row in shown), default=0) for i in range(7)]
    for row, entry in zip(shown, entries, strict=True):
        print(row[0], row[1].rjust(widths[1]), row[2].ljust(widths[2]),
              row[3].ljust(widths[3]), row[4].rjust(widths[4]), row[5].rjust(widths[5]),
              row[6])
        for line in entry[7]:
            print("  ", line)


def list_path(fc: FileCatalogClient, path: str, opts: argparse.Namespace) -> bool:
    long = opts.long or opts.list_replicas
    probe = fc.is_file(path)
    if probe.successful.get(path):
        meta = fc.get_file_metadata(path).successful[path]
        reps = fc.get_replicas(path).successful.get(path, {})
        print_listing([_entry("-", path.rsplit("/", 1)[-1], meta, len(reps), opts.numericid,
                              reps if opts.list_replicas else None)], opts)
        return True
    if probe.failed.get(path) == "Permission denied":
        print(f'Error: "{path}": Permission denied')
        return False
    listing = fc.list_directory(path, verbose=long)
    if path not in listing.successful:
        reason = listing.failed.get(path, "")
        if reason in ("Permission denied",):
            print(f'Error: "{path}": {reason}')
        else:
            print(f'Error: "{path}" doesn\'t exist')
        return False
    content = listing.successful[path]
    if not long:
        names = [p.rsplit("/", 1)[-1] for p in list(content["Files"]) + list(content["SubDirs"])
                 + list(content.get("Datasets", {}))]
        for name in sorted(names):
            print(name)
        return True
    entries = []
    for lfn, info in content["Files"].items():
        reps = info.get("Replicas", {})
        entries.append(_entry("-", lfn.rsplit("/", 1)[-1], info["MetaData"], len(reps),
                              opts.numericid, reps if opts.list_replicas else None))
    for sub, meta in content["SubDirs"].items():
        entries.append(_entry("d", sub.rsplit("/", 1)[-1], meta, 0, opts.numericid, None))
    for name, info in content.get("Datasets", {}).items():  # DIRAC: "s", files, total size
        meta = dict(info, Size=info["TotalSize"])
        entries.append(_entry("s", name.rsplit("/", 1)[-1], meta, int(info["NumberOfFiles"]),
                              opts.numericid, None))
    print_listing(entries, opts)
    return True


def _main(argv: Sequence[str]) -> int:
    opts = parser().parse_args(argv)
    ok = True
    with catalog() as fc:
        for path in session().resolve_all(opts.paths):
            print(f"{path}:")
            ok = list_path(fc, path, opts) and ok
    return 0 if ok else EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
