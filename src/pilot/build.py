"""Build the pilot as ONE file, a zipapp that runs with any Python 3.9+ and nothing else.

``compact=True`` (what the site director ships) drops comments and docstrings (the code is
re-written from its syntax tree): a third smaller, so that the pilot fits in a cloud VM's user
data (Nova's 64 KiB); line numbers in its tracebacks are then those of the compact text.

Example::

    python -m pilot.build pilot.pyz && python3 -S pilot.pyz --help
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import sys
import tempfile
import zipapp
from pathlib import Path

MODULES = ("__init__.py", "__main__.py", "agent.py", "archive.py", "benchmark.py", "data.py",
           "dirac_workflow.py", "heartbeats.py", "jdl.py", "jobexec.py", "node.py", "payload.py",
           "rpc.py", "watchdog.py", "wrapper.py")
ENTRY = "import sys\nfrom pilot.__main__ import main\nsys.exit(main())\n"


def compact_source(text: str) -> str:
    r'''``text`` without comments and with empty docstrings (same behaviour otherwise).

    >>> print(compact_source("def f():\n    'Doc.'\n    return 1  # one\n"), end="")
    def f():
        """"""
        return 1
    '''
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) \
                and node.body and isinstance(node.body[0], ast.Expr) \
                and isinstance(node.body[0].value, ast.Constant) \
                and isinstance(node.body[0].value.value, str):
            node.body[0].value.value = ""
    return ast.unparse(tree) + "\n"


def build(out: str | os.PathLike[str], interpreter: str = "/usr/bin/env python3", *,
          compact: bool = False) -> Path:
    """Write the zipapp to ``out`` (:func:`compact_source` applied with ``compact``);
    returns its path."""
    source = Path(__file__).resolve().parent
    target = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp, "pilot")
        package.mkdir()
        for name in MODULES:
            if compact:
                text = (source / name).read_text(encoding="utf-8")
                (package / name).write_text(compact_source(text), encoding="utf-8")
            else:
                shutil.copy2(source / name, package / name)
        Path(tmp, "__main__.py").write_text(ENTRY, encoding="ascii")
        zipapp.create_archive(tmp, target, interpreter=interpreter, compressed=True)
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pilot.build", description=__doc__)
    p.add_argument("out", help="the .pyz to write")
    p.add_argument("--interpreter", default="/usr/bin/env python3")
    args = p.parse_args(argv)
    path = build(args.out, args.interpreter)
    print(f"{path}: {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
