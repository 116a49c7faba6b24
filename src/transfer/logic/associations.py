"""Associations: a user's named remote destinations (ectrans's "associations").

Wire/YAML form (``dassoc put NAME FILE.yaml`` sends it)::

    protocol: sftp            # sftp | ftp | ftps | https | se
    host: data.example.org    # for "se": the storage element's name
    port: 22                  # optional (the protocol's default)
    user: ops
    directory: /incoming      # for "se": an LFN directory
    password: ...             # or private_key: "-----BEGIN OPENSSH PRIVATE KEY-----..."
    passphrase: ...           # of the private key, optional
    options:
      passive: true           # ftp/ftps
      umask: "022"            # permissions of the files made (0666 & ~umask)
      overwrite: false        # default of -overwrite for this association
      mkdir: true             # make the remote directory when missing
      host_key: "ssh-ed25519 AAAA..."   # sftp: pinned host key (else kept on first use)
      rename: true            # https: PUT to a temp name then MOVE (false: PUT in place)

Secrets (``password``, ``private_key``, ``passphrase``) are encrypted together with the
server's key (:mod:`transfer.logic.secret_box`) and never returned: :func:`to_wire` says only
which kinds are set.

Example::

    >>> row, secret = parse("ftp1", {"protocol": "ftp", "host": "h", "user": "u",
    ...                              "password": "pw", "options": {"passive": False}}, "alice")
    >>> row.port, row.options["passive"], secret
    (21, False, {'password': 'pw'})
    >>> to_wire(row)["Secrets"]
    ['password']
"""

from __future__ import annotations

import json
import re
from typing import Any

from core.security.identity import Identity
from dms.logic import se_store
from transfer.db import associations as db
from transfer.errors import BadAssociationError
from transfer.logic.protocols import PROTOCOLS
from transfer.logic.protocols.base import Endpoint
from transfer.logic.secret_box import SecretBox

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SECRET_KEYS = ("password", "private_key", "passphrase")
KNOWN_KEYS = frozenset({"protocol", "host", "port", "user", "directory", "options",
                        "storage_element", *SECRET_KEYS})
OPTIONS: dict[str, type | tuple[type, ...]] = {
    "passive": bool, "umask": (str, int), "overwrite": bool, "mkdir": bool,
    "host_key": str, "rename": bool, "timeout": (int, float)}


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise BadAssociationError(
            f"association name {name!r}: letters, digits, '.', '_', '-' (at most 128)")
    return name


def parse(name: str, data: Any, owner: str) -> tuple[db.AssociationRow, dict[str, str]]:
    """The row (without its encrypted secret) and the secrets of an association description."""
    check_name(name)
    if not isinstance(data, dict):
        raise BadAssociationError("an association is a mapping (protocol, host, ...)")
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        raise BadAssociationError(f"unknown key(s) {', '.join(unknown)}; known: "
                                  f"{', '.join(sorted(KNOWN_KEYS))}")
    protocol = data.get("protocol")
    if protocol not in PROTOCOLS:
        raise BadAssociationError(f"protocol must be one of {', '.join(sorted(PROTOCOLS))}")
    info = PROTOCOLS[protocol]
    host = data.get("host") or data.get("storage_element") or ""
    if not isinstance(host, str) or not host or any(c in host for c in " /\0\n"):
        raise BadAssociationError("host is required (for 'se': the storage element name)")
    port = data.get("port", info.default_port)
    if port is not None and (not isinstance(port, int) or isinstance(port, bool)
                             or not 0 < port < 65536):
        raise BadAssociationError(f"port must be a number from 1 to 65535, not {port!r}")
    user = data.get("user") or ""
    directory = data.get("directory") or ""
    for key, value in (("user", user), ("directory", directory)):
        if not isinstance(value, str) or "\0" in value or "\n" in value:
            raise BadAssociationError(f"{key} must be a string")
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise BadAssociationError("options must be a mapping")
    for key, value in options.items():
        if key not in OPTIONS:
            raise BadAssociationError(f"unknown option {key!r}; known: "
                                      f"{', '.join(sorted(OPTIONS))}")
        if not isinstance(value, OPTIONS[key]):
            raise BadAssociationError(f"option {key}: wrong type {type(value).__name__}")
    if "umask" in options:
        try:
            umask = int(str(options["umask"]), 8)
        except ValueError:
            raise BadAssociationError("umask is octal, e.g. '022'") from None
        if not 0 <= umask <= 0o777:
            raise BadAssociationError("umask must be between 000 and 777")
    secrets: dict[str, str] = {}
    for key in SECRET_KEYS:
        value = data.get(key)
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            raise BadAssociationError(f"{key} must be a string")
        if key not in info.secrets:
            raise BadAssociationError(f"protocol {protocol} takes no {key}")
        secrets[key] = value
    if protocol == "se":
        if not directory.startswith("/"):
            raise BadAssociationError("an 'se' association needs an absolute LFN directory")
    elif protocol != "ftp" or user:
        if not user:
            raise BadAssociationError(f"protocol {protocol} needs a user")
        if protocol == "sftp" and not (secrets.get("password") or secrets.get("private_key")):
            raise BadAssociationError("sftp needs a password or a private_key")
    if "private_key" in secrets:
        from transfer.logic.protocols.sftp import load_private_key

        try:
            load_private_key(secrets["private_key"], secrets.get("passphrase"))
        except Exception:  # noqa: BLE001 - any failure means "not a usable key"
            raise BadAssociationError("private_key is not a readable OpenSSH/PEM private key "
                                      "(or its passphrase is wrong)") from None
    row = db.AssociationRow(0, owner, name, protocol, host, port, user, directory,
                            dict(options), None, ",".join(sorted(secrets)))
    return row, secrets


def check_rights(row: db.AssociationRow, ident: Identity) -> None:
    """An ``se`` association may only point where its owner may write."""
    if row.protocol == "se":
        probe = row.directory.rstrip("/") + "/x"
        if not se_store.may_write(ident, probe):
            raise BadAssociationError(
                f"{ident.username}@{ident.group} may not write under {row.directory}")


def store(engine: Any, box: SecretBox, name: str, data: Any, ident: Identity) -> bool:
    """Validate and store (create or replace) an association; True when created."""
    if not ident.username:
        raise BadAssociationError("associations belong to users")
    row, secrets = parse(name, data, ident.username)
    check_rights(row, ident)
    if secrets:
        row.secret = box.encrypt(json.dumps(secrets))
    return db.put(engine, row)


def to_wire(row: db.AssociationRow) -> dict[str, Any]:
    """What users see of an association: everything but the secrets."""
    return {"Name": row.name, "Protocol": row.protocol, "Host": row.host, "Port": row.port,
            "User": row.username, "Directory": row.directory, "Options": dict(row.options),
            "Secrets": [k for k in row.secret_kinds.split(",") if k]}


def endpoint(row: db.AssociationRow, box: SecretBox) -> Endpoint:
    """The association with its secrets decrypted, for a transfer (memory only)."""
    secrets: dict[str, str] = json.loads(box.decrypt(row.secret)) if row.secret else {}
    return Endpoint(row.protocol, row.host, row.port, row.username, row.directory,
                    dict(row.options), secrets.get("password"), secrets.get("private_key"),
                    secrets.get("passphrase"), row.name)


def rotate_key(engine: Any, box: SecretBox) -> int:
    """Rotate the server's secret key: new key first, every secret re-encrypted, old keys
    dropped. Returns the number of secrets re-encrypted. Safe to run again after a crash."""
    box.add_new_key()
    newest = box.keys()[0]
    count = 0
    # two passes: the second catches secrets written by a process that still held the old
    # key while the first ran (processes re-read the key file when it changes)
    for _ in range(2):
        for batch in db.secrets(engine):
            stale = [(aid, tok) for aid, tok in batch if not box.is_current(tok, newest)]
            count += db.replace_secrets(engine, [(aid, tok, box.reencrypt(tok))
                                                 for aid, tok in stale])
    box.drop_old_keys()
    return count
