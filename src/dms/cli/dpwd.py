"""``dpwd``: print the session's working directory in the catalog (COMDIRAC).

Example::

    dpwd        # /demo/user/a/alice
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core.cli.common import run
from dms.cli._common import session


def _main(argv: Sequence[str]) -> int:
    argparse.ArgumentParser(prog="dpwd", description="Print the catalog working directory."
                            ).parse_args(argv)
    print(session().cwd)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
