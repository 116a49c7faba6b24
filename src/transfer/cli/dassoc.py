"""``dassoc``: a user's associations (named remote destinations for ``dtransfer``).

    dassoc put NAME FILE.yaml        # create or replace (secrets are sent, never shown)
    dassoc get NAME [-f json]
    dassoc list [-f json]
    dassoc delete NAME
    dassoc protocols [-f json]

The YAML file is the association (docs/transfers.md); two keys are read on this side and
replaced by their content: ``private_key_file`` (-> ``private_key``) and ``password_file``
(-> ``password``), so secrets need not be written into the description itself.

Example::

    dassoc put ftp1 ftp1.yaml && dassoc get ftp1
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from core.cli.common import run
from core.exceptions import InvalidArgumentError
from transfer.cli._common import output, print_record, print_rows
from transfer.client import TransferClient


def read_description(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise InvalidArgumentError(f"{path}: not valid YAML ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise InvalidArgumentError(f"{path}: an association is a mapping")
    for key, target in (("private_key_file", "private_key"), ("password_file", "password")):
        if key in data:
            secret_path = Path(str(data.pop(key))).expanduser()
            if not secret_path.is_absolute():
                secret_path = path.parent / secret_path
            try:
                content = secret_path.read_text()
            except OSError as exc:
                raise InvalidArgumentError(f"cannot read {secret_path}: {exc.strerror}") \
                    from None
            data[target] = content if target == "private_key" else content.strip()
    return data


def _main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="dassoc", description="Manage your associations "
                                "(remote destinations of dtransfer).")
    p.add_argument("action", choices=["put", "get", "list", "delete", "protocols"])
    p.add_argument("args", nargs="*")
    p.add_argument("-f", "--format", choices=["text", "json"], default="text")
    ns = p.parse_args(argv)
    want = {"put": 2, "get": 1, "delete": 1, "list": 0, "protocols": 0}[ns.action]
    if len(ns.args) != want:
        p.error(f"{ns.action} takes {want} argument(s)")
    client = TransferClient.from_config()
    if ns.action == "put":
        created = client.put_association(ns.args[0], read_description(Path(ns.args[1])))
        print(f"association {ns.args[0]} {'created' if created else 'replaced'}")
    elif ns.action == "get":
        found = client.get_association(ns.args[0])
        if not output(found, ns.format):
            print_record(found)
    elif ns.action == "list":
        rows = client.list_associations()
        if not output(rows, ns.format):
            print_rows(["Name", "Protocol", "Host", "Port", "User", "Directory"], rows)
    elif ns.action == "delete":
        client.delete_association(ns.args[0])
        print(f"association {ns.args[0]} deleted")
    else:
        protocols = client.protocols()
        if not output(protocols, ns.format):
            print_rows(["Protocol", "DefaultPort", "Secrets", "Resumable", "Verification",
                        "Description"],
                       [{"Protocol": k, **v} for k, v in sorted(protocols.items())])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
