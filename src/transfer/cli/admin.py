"""Operator subcommands added to ``pilotwms`` (entry point ``pilotwms.commands``)::

    pilotwms mover --config mover.yaml [--log-level INFO]
    pilotwms transfer rotate-key [--config F]     # new secret key, secrets re-encrypted
    pilotwms transfer keys [--config F]           # how many keys the key file holds

Example::

    >>> import argparse
    >>> sub = argparse.ArgumentParser().add_subparsers()
    >>> sorted(register(sub))
    ['mover', 'transfer']
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any


def register(sub: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
    p = sub.add_parser("mover", help="run a data mover (transfer system)")
    p.add_argument("--config", type=Path, required=True, help="the mover's YAML file")
    p.add_argument("--log-level", default="INFO")
    p = sub.add_parser("transfer", help="transfer system administration")
    p.add_argument("action", choices=["rotate-key", "keys"])
    p.add_argument("--config", type=Path)
    return {"mover": cmd_mover, "transfer": cmd_transfer}


def cmd_mover(ns: argparse.Namespace) -> int:
    from transfer.mover.config import load_mover_config
    from transfer.mover.process import Mover

    logging.basicConfig(level=ns.log_level.upper(),
                        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    Mover(load_mover_config(ns.config)).run()
    return 0


def cmd_transfer(ns: argparse.Namespace) -> int:
    from core.config.loader import load_config
    from core.db import init_schema, make_engine
    from transfer.db.tables import TRANSFER_SCHEMA
    from transfer.logic.associations import rotate_key
    from transfer.logic.secret_box import SecretBox
    from transfer.settings import SYSTEM, TransferSettings

    config = load_config(ns.config)
    box = SecretBox(TransferSettings.from_config(config).manager.key_file())
    if ns.action == "keys":
        print(f"{box.key_file}: {len(box.keys())} key(s)")
        return 0
    engine = make_engine(config.database_url(SYSTEM))
    try:
        init_schema(engine, TRANSFER_SCHEMA)
        count = rotate_key(engine, box)
    finally:
        engine.dispose()
    print(f"secret key rotated ({box.key_file}); {count} secret(s) re-encrypted")
    return 0
