"""Build the pilot as ONE file, a zipapp that runs with any Python 3.9+ and nothing else.

Example::

    python -m pilot.build pilot.pyz && python3 -S pilot.pyz --help
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import zipapp
from pathlib import Path

MODULES = ("__init__.py", "__main__.py", "agent.py", "archive.py", "benchmark.py", "data.py",
           "dirac_workflow.py", "jdl.py", "jobexec.py", "node.py", "rpc.py", "watchdog.py",
           "wrapper.py")
ENTRY = "import sys\nfrom pilot.__main__ import main\nsys.exit(main())\n"


def build(out: str | os.PathLike[str], interpreter: str = "/usr/bin/env python3") -> Path:
    """Write the zipapp to ``out``; returns its path."""
    source = Path(__file__).resolve().parent
    target = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp, "pilot")
        package.mkdir()
        for name in MODULES:
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
