"""``dget [-r] lfn... [local_dir]``: download files, checksums verified (COMDIRAC).

Files go to the current directory, or to ``local_dir`` (the last argument, which must then be
an existing directory: "Error: Destination local path must be a directory"). ``-r`` fetches
catalog directories recursively, keeping their last component. The replica is chosen closest
first (``$PILOTWMS_SITE``'s SEs); a damaged replica is skipped. Silent on success (a progress
bar on a terminal); failures print ``ERROR: <reason>`` on stderr, exit status 2.

Example::

    dget results.txt /tmp
    dget -r run42 .
"""

from __future__ import annotations

import argparse
import os
import posixpath
import sys
from collections.abc import Sequence

from core.cli.common import EXIT_ERROR, run
from core.exceptions import PilotWMSError
from dms.cli._common import session
from dms.cli._transfer import ProgressBar, data_manager


def _main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="dget", description="Download files from the catalog.")
    p.add_argument("paths", nargs="+", metavar="lfn... [local_dir]")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="recursively get contents of lfn")
    opts = p.parse_args(argv)
    sess = session()
    local_dir = os.getcwd()
    args = list(opts.paths)
    if len(args) > 1:
        local_dir = args.pop()
        if not os.path.isdir(local_dir):
            print("Error: Destination local path must be a directory", file=sys.stderr)
            return EXIT_ERROR
    dm = data_manager()
    failed = False
    wanted: list[tuple[str, str]] = []
    for lfn in sess.resolve_all(args):
        if opts.recursive and dm.catalog.is_directory(lfn).successful.get(lfn):
            top = posixpath.dirname(lfn)
            for found in sorted(dm.catalog_files(lfn)):
                rel = posixpath.relpath(posixpath.dirname(found), top)
                wanted.append((found, os.path.join(local_dir, *rel.split("/"))))
        else:
            wanted.append((lfn, local_dir))
    for lfn, directory in wanted:
        os.makedirs(directory, exist_ok=True)
        size = 0
        bar: ProgressBar | None = None
        try:
            meta = dm.catalog.get_file_metadata([lfn]).successful.get(lfn) or {}
            size = int(meta.get("Size") or 0)
            bar = ProgressBar(posixpath.basename(lfn), size)
            dm.get(lfn, directory, progress=bar)
        except PilotWMSError as exc:
            print(f"ERROR: {exc.message}", file=sys.stderr)
            failed = True
        finally:
            if bar is not None:
                bar.close()
    return EXIT_ERROR if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
