"""``dput [-D SE] [-r] local_path... [lfn]``: upload files and register them (COMDIRAC).

One argument: the file goes to the session's working directory under its own name. With a
last argument naming a catalog directory, every local file goes into it; otherwise the last
argument is the LFN of the single local file ("Error: Destination LFN must be a directory when
registering multiple local files"). ``-r`` puts directory trees. The SE is ``-D``, else
``$PILOTWMS_DEFAULT_SE``, else ``DIRAC-USER``. Silent on success (a progress bar on a
terminal); each failure prints ``<lfn>: <reason>`` on stderr and the exit status is 2.

Example::

    dput results.txt                   # -> <cwd>/results.txt on the default SE
    dput -D DEMO-DISK a.dat b.dat data/
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
from dms.cli._transfer import ProgressBar, data_manager, default_se


class _UsageError(Exception):
    """A usage error printed as COMDIRAC prints it (no ``ERROR:`` prefix)."""


def _pairs(args: list[str], is_dir: bool, resolve: object) -> list[tuple[str, str]]:
    assert callable(resolve)  # noqa: S101 - the session's resolver
    if len(args) == 1:
        return [(args[0], resolve(os.path.basename(args[0].rstrip("/"))))]
    target, locals_ = resolve(args[-1]), args[:-1]
    if is_dir or args[-1].endswith("/"):
        return [(lp, posixpath.join(target, os.path.basename(lp.rstrip("/"))))
                for lp in locals_]
    if len(locals_) > 1:
        raise _UsageError("Error: Destination LFN must be a directory when registering "
                     "multiple local files")
    return [(locals_[0], target)]


def _expand(pairs: list[tuple[str, str]], recursive: bool) -> list[tuple[str, str]]:
    out = []
    for local, lfn in pairs:
        if recursive and os.path.isdir(local):
            for path, dirs, files in os.walk(local):
                dirs.sort()
                rel = os.path.relpath(path, local)
                for name in sorted(files):
                    out.append((os.path.join(path, name),
                                posixpath.normpath(posixpath.join(lfn, rel, name))))
        else:
            out.append((local, lfn))
    return out


def _main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="dput", description="Put files in the file catalog "
                                "(and a storage element).")
    p.add_argument("paths", nargs="+", metavar="local_path... [lfn]")
    p.add_argument("-D", "--destination-se", help="Storage Element where to put the file")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="recursively put contents of local_path")
    opts = p.parse_args(argv)
    sess = session()
    dm = data_manager()
    is_dir = False
    if len(opts.paths) > 1:
        target = sess.resolve(opts.paths[-1])
        is_dir = bool(dm.catalog.is_directory(target).successful.get(target))
    try:
        pairs = _expand(_pairs(opts.paths, is_dir, sess.resolve), opts.recursive)
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_ERROR
    se = opts.destination_se or default_se()
    failed = False
    for local, lfn in pairs:
        if not os.path.isfile(local):
            print(f"{lfn}: {local} is not a file" + (" (use -r)" if os.path.isdir(local)
                                                       else ""), file=sys.stderr)
            failed = True
            continue
        bar = ProgressBar(os.path.basename(local), os.path.getsize(local))
        try:
            dm.put_and_register(lfn, local, se, progress=bar)
        except PilotWMSError as exc:
            bar.close()
            print(f"{lfn}: {exc.message}", file=sys.stderr)
            failed = True
        else:
            bar.close()
    return EXIT_ERROR if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
