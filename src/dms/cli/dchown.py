"""``dchown``: see :mod:`dms.cli.dchmod` (the three commands share one module)."""

from __future__ import annotations

import sys

from dms.cli.dchmod import main_chown as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
