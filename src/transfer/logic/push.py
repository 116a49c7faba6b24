"""Data push, ECPDS-style: destinations, data file validation, where a file is stored.

Destinations (``--dest``):

* ``SE:/lfn/dir``: stored on the storage element ``SE`` as ``/lfn/dir/<file name>`` (the
  owner must be allowed to write there, as for a ``dput``);
* ``assoc:NAME``: stored first on the staging SE (``DataPush.Options.Staging``), then sent to
  the owner's association ``NAME`` by an unattended transfer (part 1); the data file is Done
  when that transfer is.

Async files (``pushAsync``)::

    {"SourceHost": "src-a", "User": "ops", "Path": "/data/f.grib", "Size": 1234,
     "Checksum": "adler32:0a1b2c3d", "Group": "run-00z", "Destination": "DISK:/demo/push"}

Example::

    >>> parse_destination("DISK:/demo/push/"), parse_destination("assoc:ftp1")
    (('se', 'DISK', '/demo/push'), ('assoc', 'ftp1', ''))
    >>> store_location(("se", "DISK", "/demo/push"), 7, "/data/f.grib", None)
    ('DISK', '/demo/push/f.grib')
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from core.exceptions import InvalidArgumentError
from core.security.identity import Identity
from dms.logic import se_store
from dms.storage.base import normalise_checksum, se_relative
from transfer.db.datafiles import NewDataFile

GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,254}$")
MAX_FILES = 10_000
KNOWN = frozenset({"SourceHost", "User", "Path", "Size", "Checksum", "Group", "Destination",
                   "Name"})


def parse_destination(text: Any) -> tuple[str, str, str]:
    """("se", SE, directory) or ("assoc", name, "")."""
    if not isinstance(text, str) or ":" not in text:
        raise InvalidArgumentError(f"destination {text!r}: SE:/directory or assoc:NAME")
    head, _, rest = text.partition(":")
    if head == "assoc":
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", rest):
            raise InvalidArgumentError(f"destination {text!r}: bad association name")
        return "assoc", rest, ""
    if not head or not rest.startswith("/"):
        raise InvalidArgumentError(f"destination {text!r}: SE:/directory or assoc:NAME")
    directory = "/" + se_relative(rest.rstrip("/") or "/")
    return "se", head, directory.rstrip("/") or "/"


def parse_checksum(value: Any) -> str | None:
    """An adler32 from ``adler32:0a1b2c3d`` or ``0a1b2c3d``; other types are refused."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise InvalidArgumentError("Checksum must be a string")
    kind, sep, digits = value.partition(":")
    if sep and kind.lower() not in ("adler32", "ad"):
        raise InvalidArgumentError(f"checksum type {kind!r} is not supported (adler32 only)")
    return normalise_checksum(digits if sep else value)


def file_name(path: str) -> str:
    name = posixpath.basename(path.rstrip("/"))
    if not name or name in (".", "..") or "\0" in name:
        raise InvalidArgumentError(f"no file name in {path!r}")
    return name


def store_location(dest: tuple[str, str, str], file_id: int, path: str,
                   staging: tuple[str, str, str] | None) -> tuple[str, str]:
    """(SE, LFN) where the mover stores a data file."""
    name = file_name(path)
    if dest[0] == "se":
        return dest[1], posixpath.join(dest[2], name)
    if staging is None:
        raise InvalidArgumentError("forwarding to an association needs "
                                   "Systems.Transfer.Services.DataPush.Options.Staging")
    return staging[1], posixpath.join(staging[2], str(file_id), name)


def check_destination(dest: tuple[str, str, str], ident: Identity,
                      known_ses: Any, staging: tuple[str, str, str] | None) -> None:
    if dest[0] == "assoc":
        if staging is None:
            raise InvalidArgumentError("this server has no staging SE: it cannot forward to "
                                       "associations (DataPush.Options.Staging)")
        return
    if dest[1] not in known_ses:
        raise InvalidArgumentError(f"unknown storage element {dest[1]!r}")
    if not se_store.may_write(ident, posixpath.join(dest[2], "x")):
        raise InvalidArgumentError(f"{ident.username}@{ident.group} may not write under "
                                   f"{dest[2]}")


def parse_async(items: Any, default_dest: str | None) -> list[NewDataFile]:
    if not isinstance(items, list) or not items:
        raise InvalidArgumentError("a non-empty list of data files is expected")
    if len(items) > MAX_FILES:
        raise InvalidArgumentError(f"at most {MAX_FILES} data files per call")
    out = []
    for index, item in enumerate(items):
        where = f"file {index}"
        if not isinstance(item, dict):
            raise InvalidArgumentError(f"{where}: a dict is expected")
        unknown = sorted(set(item) - KNOWN)
        if unknown:
            raise InvalidArgumentError(f"{where}: unknown key(s) {', '.join(unknown)}")
        host = item.get("SourceHost")
        if not isinstance(host, str) or not HOST.match(host):
            raise InvalidArgumentError(f"{where}: SourceHost is required")
        user = item.get("User") or ""
        if not isinstance(user, str) or any(c in user for c in "@/ \0\n"):
            raise InvalidArgumentError(f"{where}: bad User")
        path = item.get("Path")
        if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
            raise InvalidArgumentError(f"{where}: Path must be absolute")
        file_name(path)
        size = item.get("Size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)
                                 or size < 0):
            raise InvalidArgumentError(f"{where}: Size must be a number of bytes")
        group = item.get("Group") or ""
        if group and (not isinstance(group, str) or not GROUP.match(group)):
            raise InvalidArgumentError(f"{where}: bad Group {group!r}")
        dest = item.get("Destination") or default_dest
        if not dest:
            raise InvalidArgumentError(f"{where}: Destination is required (no default)")
        parse_destination(dest)
        out.append(NewDataFile(group, host, user, path, size,
                               parse_checksum(item.get("Checksum")), dest))
    return out
