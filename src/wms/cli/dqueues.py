"""``dqueues``: the sites, CEs and queues, their capacity and how busy they are (ECaccess's
``ecaccess-queue-list``): what a user needs to choose where a job can run.

    dqueues [--site S] [--tag GPU] [-f pretty|csv|json]

Columns: Site, CE, Queue, Mask (site mask status), Procs (processors per pilot, ``+WN`` for
whole nodes), RAM (MB, 0 = not declared), GPUs (count and model), CPUTime and WallTime (s, 0 =
unlimited), Platform, Tags, Waiting (waiting jobs its pilots could take), Running (jobs at the
site), Pilots (waiting/running pilots of the queue). ``-f json`` gives every field.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from core.cli.common import run
from wms.cli._common import FORMATS, format_table
from wms.client import WMSClient
from wms.scheduling_client import QueueClient

HEADERS = ["Site", "CE", "Queue", "Mask", "Procs", "RAM", "GPUs", "CPUTime", "WallTime",
           "Platform", "Tags", "Waiting", "Running", "Pilots"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dqueues", description=__doc__.split("\n\n")[0])
    p.add_argument("--site", help="only this site")
    p.add_argument("--tag", help="only queues offering this tag (GPU, WholeNode, 8Processors)")
    p.add_argument("-f", "--Fmt", dest="fmt", default="pretty", choices=FORMATS)
    return p


def row(q: dict[str, Any]) -> list[Any]:
    pilots = q.get("Pilots") or {}
    assert isinstance(pilots, dict)  # noqa: S101 - the service's shape
    waiting = int(pilots.get("Submitted", 0)) + int(pilots.get("Waiting", 0))
    gpus = f"{q['NumberOfGPUs']} {q['GPUModel']}".strip() if q["NumberOfGPUs"] else "0"
    tags = list(q.get("Tags") or []) + [f"{t}(required)" for t in q.get("RequiredTags") or []]
    return [q["Site"], q["CE"], q["Queue"], q["SiteMask"],
            f"{q['NumberOfProcessors']}" + ("+WN" if q["WholeNode"] else ""), q["MaxRAM"],
            gpus, q["MaxCPUTime"], q["MaxWallTime"], q["Platform"] or "-",
            ",".join(tags) or "-", q["WaitingJobs"], q["RunningJobs"],
            f"{waiting}/{int(pilots.get('Running', 0))}"]


def _main(argv: Sequence[str]) -> int:
    opts = parser().parse_args(argv)
    with WMSClient() as wms:
        queues = QueueClient(wms).all(site=opts.site, tag=opts.tag)
    if opts.fmt == "json":
        print(json.dumps(queues, default=str))
    else:
        print(format_table([row(q) for q in queues], HEADERS, opts.fmt))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
