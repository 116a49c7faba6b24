"""``dchmod``, ``dchown``, ``dchgrp``: change modes, owners and groups in the catalog.

Usage (COMDIRAC)::

    dchmod [-R] <octal mode> path...       # e.g. dchmod 750 data
    dchown [-R] <owner>[:<group>] path...  # administrators only
    dchgrp [-R] <group> path...            # owners, to one of their groups

``-R`` applies the change to everything below a directory that the caller owns (all of it
for administrators). Each failure prints ``Error: <path>: <reason>`` on stderr; the exit
status is then 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core.cli.common import EXIT_ERROR, run
from dms.bulk import BulkResult
from dms.cli._common import catalog, session


def _parse(prog: str, value_name: str, argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=f"Change {value_name} in the catalog.")
    p.add_argument("-R", "--recursive", action="store_true", help="recursive")
    p.add_argument("value", metavar=value_name)
    p.add_argument("paths", nargs="+", metavar="path")
    return p.parse_args(argv)


def _report(results: Sequence[BulkResult]) -> int:
    failed = False
    for result in results:
        for path, reason in result.failed.items():
            print(f"Error: {path}: {reason}", file=sys.stderr)
            failed = True
    return EXIT_ERROR if failed else 0


def _chmod(argv: Sequence[str]) -> int:
    opts = _parse("dchmod", "mode", argv)
    try:
        mode = int(opts.value, 8)
    except ValueError:
        print(f"Error: {opts.value!r} is not an octal mode", file=sys.stderr)
        return EXIT_ERROR
    paths = session().resolve_all(opts.paths)
    with catalog() as fc:
        return _report([fc.change_path_mode(dict.fromkeys(paths, mode), opts.recursive)])


def _chown(argv: Sequence[str]) -> int:
    opts = _parse("dchown", "owner[:group]", argv)
    owner, _, group = opts.value.partition(":")
    paths = session().resolve_all(opts.paths)
    results = []
    with catalog() as fc:
        if owner:
            results.append(fc.change_path_owner(dict.fromkeys(paths, owner), opts.recursive))
        if group:
            results.append(fc.change_path_group(dict.fromkeys(paths, group), opts.recursive))
    return _report(results)


def _chgrp(argv: Sequence[str]) -> int:
    opts = _parse("dchgrp", "group", argv)
    paths = session().resolve_all(opts.paths)
    with catalog() as fc:
        return _report([fc.change_path_group(dict.fromkeys(paths, opts.value),
                                             opts.recursive)])


def main(argv: Sequence[str] | None = None) -> int:
    return run(_chmod, argv)


def main_chown(argv: Sequence[str] | None = None) -> int:
    return run(_chown, argv)


def main_chgrp(argv: Sequence[str] | None = None) -> int:
    return run(_chgrp, argv)


if __name__ == "__main__":
    sys.exit(main())
