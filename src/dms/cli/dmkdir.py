"""``dmkdir path...``: make catalog directories (parents too), as COMDIRAC.

Failures print ``ERROR - "<path>": <reason>`` (exit status 2).

Example::

    dmkdir data/run1 data/run2
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core.cli.common import EXIT_ERROR, run
from dms.cli._common import catalog, session


def _main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="dmkdir", description="Make catalog directories.")
    p.add_argument("paths", nargs="+", metavar="path")
    opts = p.parse_args(argv)
    with catalog() as fc:
        result = fc.create_directory(session().resolve_all(opts.paths))
    for path, reason in result.failed.items():
        print(f'ERROR - "{path}": {reason}')
    return EXIT_ERROR if result.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
