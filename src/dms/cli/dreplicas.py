"""``dreplicas lfn...``: the replicas of files, as COMDIRAC prints them::

    /demo/user/a/alice/f1:
       DISK-SE https://se.example.org/...

Errors print ``ERROR: <lfn>: <reason>`` on stderr; the exit status is then 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core.cli.common import EXIT_ERROR, run
from dms.cli._common import catalog, session


def _main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="dreplicas", description="Replicas of catalog files.")
    p.add_argument("lfns", nargs="+", metavar="lfn")
    opts = p.parse_args(argv)
    lfns = session().resolve_all(opts.lfns)
    with catalog() as fc:
        result = fc.get_replicas(lfns)
    for lfn in lfns:
        if lfn in result.successful:
            print(lfn + ":")
            for se, pfn in result.successful[lfn].items():
                print("  ", se, pfn)
        else:
            print(f"ERROR: {lfn}: {result.failed.get(lfn, 'unknown')}", file=sys.stderr)
    return EXIT_ERROR if result.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
