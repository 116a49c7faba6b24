"""``dcd [path]``: change the session's catalog working directory (home without argument).

As COMDIRAC: a path that is not a directory prints ``Error: "<path>" not a valid directory``
(here on stderr, exit status 2) and leaves the working directory alone.

Example::

    dcd data && dpwd      # /demo/user/a/alice/data
    dcd                   # back home
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core.cli.common import EXIT_ERROR, run
from dms.cli._common import catalog, session


def _main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="dcd", description="Change the catalog directory.")
    p.add_argument("path", nargs="?", help="new working directory (default: home)")
    opts = p.parse_args(argv)
    sess = session()
    target = sess.resolve(opts.path) if opts.path else sess.home
    with catalog() as fc:
        ok = fc.is_directory(target).successful.get(target) is True
    if not ok:
        print(f'Error: "{target}" not a valid directory', file=sys.stderr)
        return EXIT_ERROR
    if sess.cwd != target:
        sess.cwd = target
        sess.save()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
