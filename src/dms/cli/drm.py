"""``drm [-r] [-D SE] [-F file] lfn...``: remove files (all replicas and the catalog entry),
or with ``-D`` only their replicas on that SE; ``-r`` removes directories with everything in
them (COMDIRAC).

Output as COMDIRAC's: ``Removing N objects`` first when there are several, ``<lfn>: no such
file`` for missing ones, ``ERROR <lfn>: <reason>`` for failures (stderr, exit status 2), and
at the end a blank line and ``N object(s) removed in total``.

Example::

    drm old.txt
    drm -D DEMO-XRD big.root          # drop the xrootd replica only
    drm -r run41
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core.cli.common import EXIT_ERROR, run
from core.exceptions import PilotWMSError
from dms.cli._common import session
from dms.cli._transfer import data_manager
from dms.logic.data_manager import DataManager

NO_SUCH = "no such file or directory"


def _remove_tree(dm: DataManager, top: str) -> str | None:
    """Every file under ``top`` (storage and catalog), then the directories, deepest first;
    the first failure's reason, or None."""
    files = sorted(dm.catalog_files(top))
    result = dm.remove_file(files) if files else None
    if result is not None and result.failed:
        lfn, reason = next(iter(result.failed.items()))
        return f"{lfn}: {reason}"
    dirs, todo = [], [top]
    while todo:
        path = todo.pop()
        dirs.append(path)
        listing = dm.catalog.list_directory(path)
        for value in listing.successful.values():
            todo.extend(value.get("SubDirs") or {})
    for path in sorted(dirs, key=lambda d: d.count("/"), reverse=True):
        removed = dm.catalog.remove_directory(path)
        if path in removed.failed:
            return f"{path}: {removed.failed[path]}"
    return None


def _main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="drm", description="Remove files and replicas.")
    p.add_argument("lfns", nargs="*", metavar="lfn")
    p.add_argument("-F", "--lfnFile", dest="lfn_file", help="file containing a list of LFNs")
    p.add_argument("-D", "--destination-se", help="Storage Element from where to remove "
                   "replica")
    p.add_argument("-r", dest="recursive", action="store_true",
                   help="remove directory recursively")
    opts = p.parse_args(argv)
    sess = session()
    names = list(opts.lfns)
    if opts.lfn_file:
        try:
            with open(opts.lfn_file) as stream:
                names += [line.strip() for line in stream if line.strip()]
        except OSError:
            raise PilotWMSError(f"Error: non-existent file {opts.lfn_file}:") from None
    if not names:
        p.error("no LFN given")
    lfns = list(dict.fromkeys(sess.resolve(n) for n in names))
    dm = data_manager()
    if len(lfns) > 1:
        print(f"Removing {len(lfns)} objects")
    good = 0
    failed = False
    for lfn in lfns:
        if opts.recursive and dm.catalog.is_directory(lfn).successful.get(lfn):
            reason = _remove_tree(dm, lfn)
        else:
            if opts.destination_se:
                result = dm.remove_replica([lfn], opts.destination_se)
            else:
                result = dm.remove_file([lfn])
            reason = result.failed.get(lfn)
            if reason is not None and reason.lower() == NO_SUCH:
                print(f"{lfn}: no such file")
                continue
        if reason is None:
            good += 1
        else:
            print(f"ERROR {lfn}: {reason}", file=sys.stderr)
            failed = True
    print(f"\n{good} object(s) removed in total")
    return EXIT_ERROR if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
