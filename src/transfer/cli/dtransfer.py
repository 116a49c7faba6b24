"""``dtransfer``: unattended transfers to and from associations (ECaccess's ``ectrans``).

    dtransfer -remote NAME -source FILE [-target NAME] [-put|-get] [-retryCnt N]
              [-retryFrq 10m] [-overwrite] [-sync] [-mailTo addr] [-onSuccess] [-onFailure]
    dtransfer -check ID [-f json]
    dtransfer list [-status S] [-f json]
    dtransfer restart ID
    dtransfer delete ID
    dtransfer -download ID [-target PATH]          # the file a -get transfer fetched

``-source`` (``-put``, the default): a local file (uploaded to the server's spool first),
``lfn:/vo/...`` (a catalog file) or ``job:<ID>:<file>`` (a file of a job's output sandbox).
With ``-get`` it is the remote file; the fetched copy stays in the spool for ``-download``
(``-sync -get`` downloads it to ``-target``, default its own name, at once).
Asynchronous transfers (the default) retry 144 times every 10 minutes, synchronous ones
(``-sync``: wait for the outcome) not at all, as ectrans. Prints the transfer ID; ``-sync``
exits with status 2 when the transfer failed.

Example::

    dtransfer -remote ftp1 -source results.grib -mailTo ops@example.org -onFailure
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from core.cli.common import EXIT_ERROR, run
from core.exceptions import InvalidArgumentError
from transfer.cli._common import output, print_record, print_rows, text
from transfer.client import TransferClient

FINAL = ("Done", "Failed", "Canceled")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dtransfer", description="Unattended file transfers "
                                "to your associations (ectrans-style).")
    p.add_argument("action", nargs="*", help="list | restart ID | delete ID")
    p.add_argument("-remote", help="the association")
    p.add_argument("-source", help="local file, lfn:/..., job:ID:file (-get: remote file)")
    p.add_argument("-target", help="remote name (-put) or local name (-get, -download)")
    way = p.add_mutually_exclusive_group()
    way.add_argument("-put", action="store_true", help="to the remote host (default)")
    way.add_argument("-get", action="store_true", help="from the remote host")
    p.add_argument("-retryCnt", type=int, help="retries (default 144, -sync: 0)")
    p.add_argument("-retryFrq", help="time between retries: 600, 10m, 2h (default 10m)")
    p.add_argument("-overwrite", action="store_true", default=None,
                   help="replace an existing target")
    p.add_argument("-sync", action="store_true", help="wait for the outcome")
    p.add_argument("-mailTo", help="e-mail address(es) to notify")
    p.add_argument("-onSuccess", action="store_true", help="mail when it succeeded")
    p.add_argument("-onFailure", action="store_true", help="mail when it failed")
    p.add_argument("-check", type=int, metavar="ID", help="show a transfer")
    p.add_argument("-download", type=int, metavar="ID", help="fetch a -get result")
    p.add_argument("-status", help="list: only transfers with this status")
    p.add_argument("-f", "--format", choices=["text", "json"], default="text")
    return p


def show(record: dict, fmt: str) -> None:
    if output(record, fmt):
        return
    print_record(record, skip=("AttemptLog",))
    for item in record.get("AttemptLog") or []:
        state = "ok" if item["OK"] else f"failed: {item['Error']}"
        print(f"  attempt {item['Attempt']} {text(item['Started'])} -> "
              f"{text(item['Ended'])} {item['Bytes']} bytes {state}")


def wait(client: TransferClient, tid: int, poll: float = 1.0) -> dict:
    while True:
        record = client.get_transfer(tid)
        if record["Status"] in FINAL:
            return record
        time.sleep(poll)


def _main(argv: Sequence[str]) -> int:
    p = _parser()
    ns = p.parse_args(argv)
    client = TransferClient.from_config()
    if ns.check is not None:
        show(client.get_transfer(ns.check), ns.format)
        return 0
    if ns.download is not None:
        record = client.get_transfer(ns.download)
        dest = Path(ns.target or Path(record["Target"]).name)
        size = client.download_result(ns.download, dest)
        print(f"{dest}: {size} bytes")
        return 0
    if ns.action:
        verb, *rest = ns.action
        if verb == "list" and not rest:
            rows = client.list_transfers(ns.status)
            if not output(rows, ns.format):
                print_rows(["TransferID", "Status", "Remote", "Direction", "Target",
                            "Attempts", "LastUpdate", "Error"], rows)
            return 0
        if verb in ("restart", "delete") and len(rest) == 1 and rest[0].isdigit():
            tid = int(rest[0])
            (client.restart if verb == "restart" else client.delete)(tid)
            print(f"transfer {tid} {'restarted' if verb == 'restart' else 'deleted'}")
            return 0
        p.error("actions: list | restart ID | delete ID")
    if not ns.remote or not ns.source:
        p.error("-remote and -source are required (or -check ID, list, restart, delete)")
    request: dict = {"Remote": ns.remote, "Direction": "get" if ns.get else "put",
                     "Target": ns.target, "RetryCount": ns.retryCnt,
                     "RetryFrequency": ns.retryFrq, "Overwrite": ns.overwrite,
                     "Sync": ns.sync, "MailTo": ns.mailTo, "OnSuccess": ns.onSuccess,
                     "OnFailure": ns.onFailure}
    if ns.get:
        request["Source"] = ns.source
        request["Target"] = None
    elif ns.source.startswith(("lfn:", "job:")):
        request["Source"] = ns.source
    else:
        local = Path(ns.source)
        if not local.is_file():
            raise InvalidArgumentError(f"{ns.source}: no such local file (or use lfn:/... "
                                       "or job:ID:file)")
        request["Source"] = "spool:" + client.upload(local)
        request["Target"] = ns.target or os.path.basename(ns.source)
    tid = client.submit({k: v for k, v in request.items() if v is not None})
    print(tid)
    if not ns.sync:
        return 0
    record = wait(client, tid)
    if record["Status"] != "Done":
        print(f"transfer {tid} {record['Status']}: {record['Error']}", file=sys.stderr)
        return EXIT_ERROR
    if ns.get:
        dest = Path(ns.target or Path(ns.source).name)
        client.download_result(tid, dest)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
