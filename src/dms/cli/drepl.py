"""``drepl [-D SE[,SE...]] [-S SE] lfn...``: replicate files to other SEs (COMDIRAC).

The destination is ``-D`` (a comma-separated list), else ``$PILOTWMS_DEFAULT_SE``, else
``DIRAC-USER``; ``-S`` forces the source SE (else the closest readable replica). Every copy is
verified (adler32) and registered; a replica already there is left alone. Silent on success;
failures print ``<lfn>-><SE>: <reason>`` on stderr, exit status 2.

Example::

    drepl -D DEMO-XRD,DEMO-DISK2 results.txt
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core.cli.common import EXIT_ERROR, run
from core.exceptions import PilotWMSError
from dms.cli._common import session
from dms.cli._transfer import data_manager, default_se


def _main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="drepl", description="Replicate files to other SEs.")
    p.add_argument("lfns", nargs="*", metavar="lfn")
    p.add_argument("-D", "--destination-se",
                   help="Storage Element where to put replica (or a comma separated list)")
    p.add_argument("-S", "--source-se", help="source Storage Element for replication")
    opts = p.parse_args(argv)
    lfns = session().resolve_all(opts.lfns)
    targets = [s for s in (opts.destination_se or default_se()).split(",") if s]
    dm = data_manager()
    failed = False
    for lfn in lfns:
        for se in targets:
            try:
                dm.replicate_and_register(lfn, se, source_se=opts.source_se)
            except PilotWMSError as exc:
                print(f"{lfn}->{se}: {exc.message}", file=sys.stderr)
                failed = True
    return EXIT_ERROR if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
