"""``pilotwms auth ...``: operator commands of the login server.

* ``rotate-key``: a new signing key; the old public key stays in the JWKS and trusted by every
  verifier for ``--keep`` seconds (default: the longest token lifetime of the configuration
  plus the clock leeway), so tokens already issued keep working until they expire.
* ``keys``: the kids of the current and retired keys.
* ``housekeeping``: purge expired codes/sessions/tokens and renew delegations now.
* ``delegations [--user U]``: stored delegated credentials.

Example::

    pilotwms auth rotate-key --config /srv/pilotwms/config.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from core.config.schema import Config
from core.exceptions import ConfigError
from core.security.tokens import LEEWAY, public_signing_keys, rotate_signing_key


def add_parser(sub: Any) -> None:
    p = sub.add_parser("auth", help="login server: signing keys, housekeeping, delegations")
    p.add_argument("action", choices=["rotate-key", "keys", "housekeeping", "delegations"])
    p.add_argument("--config", type=Path)
    p.add_argument("--keep", type=int, help="seconds the old key stays trusted (rotate-key)")
    p.add_argument("--user", help="only this user's delegations")


def longest_token_lifetime(config: Config) -> int:
    """Seconds: the longest lifetime of any token this configuration signs."""
    assert config.auth.signing is not None  # noqa: S101 - checked by the caller
    lifetimes = [config.auth.signing.lifetime, config.operations.pilot.token_lifetime]
    if config.auth.server is not None:
        lifetimes += [config.auth.server.access_token_lifetime,
                      config.auth.server.delegated_token_lifetime]
    return max(lifetimes) + LEEWAY


def run_auth(config: Config, ns: argparse.Namespace) -> int:
    signing = config.auth.signing
    if signing is None:
        raise ConfigError("Auth.Signing is not configured")
    if ns.action == "rotate-key":
        keep = ns.keep if ns.keep is not None else longest_token_lifetime(config)
        old, new = rotate_signing_key(signing.key_file, keep)
        print(f"new signing key {new}; {old} stays trusted for {keep} s")
        return 0
    if ns.action == "keys":
        for index, key in enumerate(public_signing_keys(signing.key_file)):
            print(f"{key.kid}  {'current' if index == 0 else 'retired'}")
        return 0
    from core.auth.delegation import list_delegations, renew_delegations
    from core.auth.tables import SYSTEM, purge_expired
    from core.db import make_engine, utcnow, write_transaction

    engine = make_engine(config.database_url(SYSTEM))
    try:
        if ns.action == "housekeeping":
            with write_transaction(engine) as conn:
                purged = purge_expired(conn, utcnow())
            report = renew_delegations(engine, config)
            print(f"purged {purged} rows; delegations: {report}")
            return 0
        for row in list_delegations(engine, ns.user):
            print(f"{row['username']:16s} {row['group_name']:20s} {row['status']:8s} "
                  f"expires {row['expires']:%Y-%m-%d %H:%M} (at most {row['max_until']:%Y-%m-%d})")
        return 0
    finally:
        engine.dispose()
