"""``drmdir path...``: remove empty catalog directories.

Failures print ``ERROR - "<path>": <reason>`` (exit status 2), as ``dmkdir`` does.

Example::

    drmdir data/run2
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core.cli.common import EXIT_ERROR, run
from dms.cli._common import catalog, session


def _main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="drmdir", description="Remove empty catalog directories.")
    p.add_argument("paths", nargs="+", metavar="path")
    opts = p.parse_args(argv)
    paths = session().resolve_all(opts.paths)
    errors = {}
    with catalog() as fc:
        probe = fc.is_directory(paths)
        errors.update(probe.failed)
        for path, is_dir in probe.successful.items():
            if not is_dir:
                errors[path] = "Not a directory"
        todo = [p for p in paths if p not in errors]
        if todo:
            errors.update(fc.remove_directory(todo).failed)
    for path in paths:
        if path in errors:
            print(f'ERROR - "{path}": {errors[path]}')
    return EXIT_ERROR if errors else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
