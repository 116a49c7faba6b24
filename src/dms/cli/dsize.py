"""``dsize [-l] [path...]``: sizes in the catalog, as COMDIRAC's ``dsize``.

A file prints ``lfn: <path>`` and ``Size: <bytes>``; a directory (its whole subtree)
``directory: <path>`` and ``Logical Size: 1,234 Files: 3 Directories: 1``; with ``-l`` also
the usage per storage element in DIRAC's table (StorageElement, Size, Replicas, and a Total).

Example::

    dsize -l /demo/user/a/alice
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core.cli.common import EXIT_ERROR, run
from dms.cli._common import catalog, int_with_commas, print_table, session


def _main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="dsize", description="Catalog sizes.")
    p.add_argument("-l", "--long", action="store_true", help="per storage element")
    p.add_argument("-f", "--raw-files", action="store_true",
                   help="accepted for COMDIRAC compatibility (sizes are always exact)")
    p.add_argument("paths", nargs="*", metavar="path")
    opts = p.parse_args(argv)
    ok = True
    with catalog() as fc:
        for path in session().resolve_all(opts.paths):
            probe = fc.is_file(path)
            if path in probe.failed:
                print("Error:", probe.failed[path])
                ok = False
            elif probe.successful[path]:
                print("lfn:", path)
                meta = fc.get_file_metadata(path)
                if path in meta.successful:
                    print("Size:", meta.successful[path]["Size"])
                else:
                    print("File size failed:", meta.failed[path])
                    ok = False
            else:
                print("directory:", path)
                sizes = fc.get_directory_size(path, long_output=opts.long)
                if path not in sizes.successful:
                    print("Directory size failed:", sizes.failed[path])
                    ok = False
                    continue
                size = sizes.successful[path]
                print("Logical Size:", int_with_commas(size["LogicalSize"]),
                      "Files:", size["LogicalFiles"], "Directories:", size["LogicalDirectories"])
                if opts.long:
                    physical = size["PhysicalSize"]
                    rows = [(se, int_with_commas(v["Size"]), str(v["Files"]))
                            for se, v in physical.items() if not se.startswith("Total")]
                    rows.append(("Total", int_with_commas(physical["TotalSize"]),
                                 str(physical["TotalFiles"])))
                    print()
                    print_table(["StorageElement", "Size", "Replicas"], rows)
    return 0 if ok else EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
