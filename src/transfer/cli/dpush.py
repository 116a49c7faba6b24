"""``dpush``: push data files through the data movers (ECPDS-style).

    dpush FILE --dest DEST [--group G]               # synchronous: prints the data file ID
                                                     # once the file is stored and registered
    dpush --async --source-host HOST --user U --path /data/f.grib --size N
          [--checksum adler32:...] --group G [--dest DEST]   # metadata only: ID at once
    dpush --async --list FILES.txt --group G [--dest DEST]   # one "HOST USER PATH SIZE
                                                     # [CHECKSUM]" per line: IDs, one a line
    dpush --wait-group G [--timeout S]               # until every file of G is final;
                                                     # lists the failed ones (exit 2)
    dpush status ID... [-f json]
    dpush status --group G [-f json]

``DEST`` is ``SE:/directory`` (the file keeps its name) or ``assoc:NAME`` (forwarded to an
association by an unattended transfer). Errors exit with status 2.

Example::

    dpush --async --source-host src-a --user ops --path /data/f.grib --size 1234 --group 00z
    dpush --wait-group 00z
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.cli.common import EXIT_ERROR, run
from core.exceptions import InvalidArgumentError
from transfer.cli._common import output, print_rows
from transfer.client import DataPushClient

FIELDS = ["FileID", "Status", "Group", "SourceHost", "Path", "Size", "Location", "Attempts",
          "Error"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dpush", description="Push data files through the "
                                "data movers.")
    p.add_argument("args", nargs="*", help="FILE (sync) | status ID...")
    p.add_argument("--dest", help="SE:/directory or assoc:NAME")
    p.add_argument("--group", default="", help="the data file group")
    p.add_argument("--async", dest="asynchronous", action="store_true",
                   help="metadata only: movers pull the file from its source host")
    p.add_argument("--source-host")
    p.add_argument("--user", default="")
    p.add_argument("--path")
    p.add_argument("--size", type=int)
    p.add_argument("--checksum")
    p.add_argument("--list", type=Path, help="many async files, one per line")
    p.add_argument("--wait-group", metavar="G")
    p.add_argument("--timeout", type=float, default=0, help="--wait-group: seconds (0: none)")
    p.add_argument("--poll", type=float, default=2.0, help=argparse.SUPPRESS)
    p.add_argument("-f", "--format", choices=["text", "json"], default="text")
    return p


def read_list(path: Path, group: str, dest: str | None) -> list[dict[str, Any]]:
    files = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) not in (4, 5) or not words[3].isdigit():
            raise InvalidArgumentError(f"{path}:{number}: HOST USER PATH SIZE [CHECKSUM]")
        item = {"SourceHost": words[0], "User": words[1], "Path": words[2],
                "Size": int(words[3]), "Group": group}
        if len(words) == 5:
            item["Checksum"] = words[4]
        if dest:
            item["Destination"] = dest
        files.append(item)
    return files


def wait_group(client: DataPushClient, group: str, timeout: float, poll: float
               ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout if timeout else None
    while True:
        found = client.get_group(group, files=False)  # counts only while waiting
        if not found["Counts"]:
            raise InvalidArgumentError(f"no data files in group {group!r}")
        if found["Complete"] or (deadline and time.monotonic() > deadline):
            return client.get_group(group)
        time.sleep(poll)


def _main(argv: Sequence[str]) -> int:
    p = _parser()
    ns = p.parse_args(argv)
    client = DataPushClient.from_config()
    if ns.wait_group:
        found = wait_group(client, ns.wait_group, ns.timeout, ns.poll)
        if output(found, ns.format):
            return 0 if found["Complete"] and "Failed" not in found["Counts"] else EXIT_ERROR
        counts = ", ".join(f"{n} {s}" for s, n in sorted(found["Counts"].items()))
        print(f"group {ns.wait_group}: {counts}")
        failed = [f for f in found["Files"] if f["Status"] == "Failed"]
        for f in failed:
            print(f"FAILED {f['FileID']} {f['SourceHost']}:{f['Path']}: {f['Error']}")
        if not found["Complete"]:
            print(f"timed out after {ns.timeout:g} s", file=sys.stderr)
            return EXIT_ERROR
        return EXIT_ERROR if failed else 0
    if ns.args and ns.args[0] == "status":
        if ns.group:
            found = client.get_group(ns.group)
            rows = found["Files"]
            if output(found, ns.format):
                return 0
        else:
            wanted = ns.args[1:]
            if not wanted or not all(i.isdigit() for i in wanted):
                p.error("status ID... or status --group G")
            rows = client.get_data_files([int(i) for i in wanted])
            if output(rows, ns.format):
                return 0
        print_rows(FIELDS, rows)
        return 0
    if ns.asynchronous:
        if ns.list:
            files = read_list(ns.list, ns.group, ns.dest)
        else:
            if not (ns.source_host and ns.path and ns.size is not None):
                p.error("--async needs --source-host, --path and --size (or --list)")
            files = [{"SourceHost": ns.source_host, "User": ns.user, "Path": ns.path,
                      "Size": ns.size, "Checksum": ns.checksum, "Group": ns.group,
                      "Destination": ns.dest}]
            files = [{k: v for k, v in f.items() if v not in (None, "")} for f in files]
        ids: list[int] = []
        for start in range(0, len(files), 5000):
            ids += client.push_async(files[start:start + 5000])
        if not output(ids, ns.format):
            print("\n".join(map(str, ids)))
        return 0
    if len(ns.args) != 1:
        p.error("give one FILE to push (or --async, --wait-group, status)")
    local = Path(ns.args[0])
    if not local.is_file():
        raise InvalidArgumentError(f"{local}: no such file")
    if not ns.dest:
        p.error("--dest is required")
    file_id = client.push_sync(local, ns.dest, group=ns.group)
    if not output({"FileID": file_id}, ns.format):
        print(file_id)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
