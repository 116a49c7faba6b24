"""``dmeta``: metadata in the catalog, as COMDIRAC's ``dmeta``.

Usage::

    dmeta -I                                  # list the declared fields: "<name> : <TYPE>"
    dmeta -i f|d run=int kind=string ...      # declare fields (administrators)
    dmeta -i r run ...                        # delete fields (administrators)
    dmeta add <lfn> run=3 kind=raw            # set values on a directory or a file
    dmeta rm <lfn> run ...                    # remove values
    dmeta ls <lfn> [run ...]                  # show values (inherited ones too): name=value

Types: int, float, string (or varchar...), date. Errors print ``Error: <message>`` and exit
with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core.cli.common import EXIT_ERROR, run
from core.exceptions import PilotWMSError
from dms.cli._common import catalog, date_text, session

TYPES = {"int": "INT", "float": "FLOAT", "string": "VARCHAR(128)", "date": "DATETIME"}


def _type(text: str) -> str | None:
    low = text.lower()
    if low[:3] == "int":
        return "INT"
    if low[:7] == "varchar":
        return text
    return TYPES.get(low)


def _main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="dmeta", description="Manipulate catalog metadata.")
    p.add_argument("-i", "--index", choices=["f", "d", "r"],
                   help="add (f|d) or remove (r) metadata fields")
    p.add_argument("-I", "--list-index", action="store_true", help="list metadata fields")
    p.add_argument("args", nargs="*")
    opts = p.parse_args(argv)
    with catalog() as fc:
        if opts.list_index:
            fields = fc.get_metadata_fields()
            if not fields:
                print("No entries found")
            for name, kind in sorted(fields.items()):
                print(name.rjust(20), ":", kind)
            return 0
        if opts.index == "r":
            for name in opts.args:
                fc.delete_metadata_field(name)
            return 0
        if opts.index:
            for arg in opts.args:
                name, _, kind = arg.partition("=")
                rtype = _type(kind)
                if not name or rtype is None:
                    print(f"Error: illegal metadata type {kind}")
                    return EXIT_ERROR
                fc.add_metadata_field(name, rtype)
            return 0
        if len(opts.args) < 2:
            print("Error: Not enough arguments provided")
            return EXIT_ERROR
        command, target, metas = opts.args[0], opts.args[1], opts.args[2:]
        lfn = session().resolve(target)
        if command == "add":
            values = {}
            for meta in metas:
                name, sep, value = meta.partition("=")
                if not sep:
                    print(f"Error: {meta}: expected meta=value")
                    return EXIT_ERROR
                values[name] = value.strip("\"'")
            result = fc.set_metadata_bulk({lfn: values})
            if result.failed:
                print("Error:", result.failed[lfn])
                return EXIT_ERROR
        elif command == "rm":
            result = fc.remove_metadata({lfn: metas})
            if result.failed:
                print("Error:", result.failed[lfn])
                return EXIT_ERROR
        elif command == "ls":
            try:
                values = fc.get_user_metadata(lfn)
            except PilotWMSError as exc:
                print("Error:", exc.message)
                return EXIT_ERROR
            for name in metas or list(values):  # the catalog's order, as DIRAC prints it
                if name in values:
                    print(f"{name} = {date_text(values[name])}")
        else:
            print(f"Error: unknown command {command!r} (add, rm, ls)")
            return EXIT_ERROR
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
