"""``dfind [path] meta=value ...``: files matching a metadata query (COMDIRAC's ``dfind``).

Terms as DIRAC's ``find``: ``name=value``, ``name!=value``, ``name<value``, ``name<=value``,
``name>value``, ``name>=value``; ``name=v1,v2`` is "in", ``name!=v1,v2`` "not in"; several
terms on one name make a range (``run>=3 run<7``). Names are declared fields or DIRAC's
standard keys (``Size``, ``CreationDate``, ``SE``, ``User``, ``Group``, ...). A single
argument starting with ``{`` is taken as a JSON query. The matching LFNs are printed one per
line, sorted; nothing when none match. Without a path the search starts at the working
directory.

Example::

    dfind /demo/user/a/alice run>=3 run<7 kind=raw,reco
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from core.cli.common import EXIT_ERROR, run
from dms.cli._common import catalog, session

OPS = (">=", "<=", "!=", ">", "<", "=")
_STANDARD_TYPES = {"Size": "INT", "UID": "INT", "GID": "INT"}


def _typed(kind: str, text: str) -> Any:
    if text in ("Any", "Missing"):
        return text
    if kind[:3].lower() == "int":
        return int(text)
    if kind[:5].lower() == "float":
        return float(text)
    return text


def parse_query(terms: Sequence[str], types: Mapping[str, str]) -> dict[str, Any]:
    """DIRAC's command-line query syntax as a metaQuery dict (ValueError when illegal).

    >>> parse_query(["run>=3", "run<7", "kind=raw,reco", "tag!=x"], {"run": "INT"})
    {'run': {'>=': 3, '<': 7}, 'kind': {'in': ['raw', 'reco']}, 'tag': {'!=': 'x'}}
    """
    query: dict[str, Any] = {}
    for term in terms:
        op = next((o for o in OPS if o in term), None)
        if op is None:
            raise ValueError(f"Illegal query element {term}")
        name, text = term.split(op, 1)
        if not name:
            raise ValueError(f"Illegal query element {term}")
        kind = types.get(name, _STANDARD_TYPES.get(name, "VARCHAR"))
        text = text.replace("'", "").replace('"', "")
        try:
            if "," in text:
                value: Any = {{"=": "in", "!=": "nin"}.get(op, op):
                              [_typed(kind, v) for v in text.split(",")]}
            else:
                value = _typed(kind, text)
                if op != "=":
                    value = {op: value}
        except ValueError:
            raise ValueError(f"Illegal value {text!r} for {name} ({kind})") from None
        if name in query and isinstance(query[name], dict) and isinstance(value, dict):
            query[name].update(value)
        else:
            query[name] = value
    return query


def _main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="dfind", description="Find files by metadata.")
    p.add_argument("-q", action="store_true", help="quiet (the default, as in COMDIRAC)")
    p.add_argument("args", nargs="*", metavar="path|meta=value")
    opts = p.parse_args(argv)
    args = list(opts.args)
    sess = session()
    path = sess.cwd
    if args and not any(o in args[0] for o in OPS) and not args[0].startswith("{"):
        path = sess.resolve(args.pop(0))
    with catalog() as fc:
        try:
            if args and args[0].startswith("{"):
                query = json.loads(" ".join(args))
            else:
                query = parse_query(args, fc.get_metadata_fields())
        except ValueError as exc:
            print(f"Illegal metaQuery: {' '.join(args)} {exc}", file=sys.stderr)
            return EXIT_ERROR
        for lfn in fc.find_files_by_metadata(query, path):
            print(lfn)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
