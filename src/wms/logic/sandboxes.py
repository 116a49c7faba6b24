"""Sandbox store rules: settings, names and paths, size and hash checks, rights, assignment,
cleanup. Plain functions; the engine and the settings are passed in.

Layout (DIRAC's): ``<BasePath>/SandBox/<o>/<owner>.<group>/<md5[0:3]>/<md5[3:6]>/<md5>.<ext>``,
published as ``SB:<SEName>|/SandBox/...``. The path holds owner, group and md5, so identical
content uploaded twice by the same owner and group is stored once (DIRAC's deduplication key);
the same bytes from another owner are another sandbox, with its own rights and lifetime.

Uploads stream into ``<BasePath>/.incoming/`` (same file system), are hashed and counted on the
way, and are renamed into place only once the hash matches: a reader never sees half a file.

Cleanup (:func:`clean_unused`) deletes the row first, under a write transaction holding the
row, and moves the file to a tombstone in that same transaction; it unlinks the tombstone after
the commit. An assignment or a re-upload racing it either happens first (then the row is no
longer deletable when re-checked under the lock) or finds no row (assignment: "not
registered"; upload: writes the file again), never a row without its file.

Example::

    >>> pfn = pfn_for("alice", "demo_user", "0123456789abcdef0123456789abcdef", "tar.bz2")
    >>> pfn
    '/SandBox/a/alice.demo_user/012/345/0123456789abcdef0123456789abcdef.tar.bz2'
    >>> parse_sb_url(sb_url("ProductionSandboxSE", pfn), "ProductionSandboxSE") == pfn
    True
"""

from __future__ import annotations

import errno as _errno
import hashlib
import os
import re
import stat
import tempfile
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.db import retry_conflicts, utcnow, write_transaction
from core.exceptions import (
    ConfigError,
    HashMismatchError,
    InvalidArgumentError,
    NotAuthorizedError,
    NotFoundError,
    SandboxTooBigError,
)
from core.security.identity import Identity
from wms.db import sandboxes as db

SANDBOX_TOO_BIG = "Sandbox is too big. Please upload it to a grid storage element"
HASH_MISMATCH = "Hashes don't match!"
SANDBOX_TYPES = ("Input", "Output")
DEFAULT_SE_NAME = "ProductionSandboxSE"
CHUNK = 1024 * 1024
INCOMING = ".incoming"
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_EXT = re.compile(r"^[a-z0-9]{1,8}(\.[a-z0-9]{1,8}){0,2}$")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_@+-]*(\.[A-Za-z0-9_@+-]+)*$")
_ENTITY = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,31}:[A-Za-z0-9_.@+-]{1,95}$")
_PFN = re.compile(
    r"^/SandBox/(?P<letter>[^/])/(?P<owner>[^/]+)\.(?P<group>[^/.][^/]*)/(?P<a>[0-9a-f]{3})/"
    r"(?P<b>[0-9a-f]{3})/(?P<md5>[0-9a-f]{32})\.(?P<ext>[^/]+)$"
)
_SETTINGS_KEYS = frozenset({"BasePath", "SEName", "MaxSizeMiB", "CleanupAfterDays",
                            "UnassignedGraceHours", "CleanupIntervalMinutes"})



# -- settings ---------------------------------------------------------------------------------


SECTION = "Systems.WorkloadManagement.Services.SandboxStore.Options"


@dataclass(frozen=True)
class StoreSettings:
    """The ``Systems.WorkloadManagement.Services.SandboxStore.Options`` section.

    ``CleanupAfterDays``: never-assigned sandboxes older than this are deleted;
    ``UnassignedGraceHours``: sandboxes no entity uses any more are kept this long;
    ``CleanupIntervalMinutes``: how often the service runs the cleanup (0: never).
    """

    base_path: Path
    se_name: str = DEFAULT_SE_NAME
    max_size_mib: int = 10
    cleanup_after_days: float = 7.0
    unassigned_grace_hours: float = 24.0
    cleanup_interval_minutes: float = 60.0

    @property
    def max_bytes(self) -> int:
        return self.max_size_mib * 1024 * 1024

    @property
    def incoming(self) -> Path:
        return self.base_path / INCOMING

    @classmethod
    def from_section(cls, section: Mapping[str, Any], *, default_max_mib: int,
                     database_url: str) -> StoreSettings:
        """Settings from the config section; BasePath defaults to ``<sqlite dir>/sandboxes``."""
        if not isinstance(section, Mapping):
            raise ConfigError(f"{SECTION} must be a mapping")
        unknown = sorted(set(section) - _SETTINGS_KEYS)
        if unknown:
            raise ConfigError(f"{SECTION}: unknown key(s) {', '.join(unknown)}")
        base = section.get("BasePath")
        if base is None:
            url = sa.engine.make_url(database_url)
            if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
                raise ConfigError(f"{SECTION}.BasePath is required unless the "
                                  "WorkloadManagement database is an SQLite file")
            base = Path(url.database).resolve().parent / "sandboxes"
        if not isinstance(base, str | os.PathLike):
            raise ConfigError(f"{SECTION}.BasePath must be a path")
        base = Path(base)
        if not base.is_absolute():
            raise ConfigError(f"{SECTION}.BasePath must be absolute, not {base}")
        try:
            settings = cls(
                base_path=base,
                se_name=str(section.get("SEName", DEFAULT_SE_NAME)),
                max_size_mib=int(section.get("MaxSizeMiB", default_max_mib)),
                cleanup_after_days=float(section.get("CleanupAfterDays", 7.0)),
                unassigned_grace_hours=float(section.get("UnassignedGraceHours", 24.0)),
                cleanup_interval_minutes=float(section.get("CleanupIntervalMinutes", 60.0)),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{SECTION}: {exc}") from None
        if settings.max_size_mib < 1 or not settings.se_name or "|" in settings.se_name:
            raise ConfigError(f"{SECTION}: MaxSizeMiB >= 1 and a SEName without '|'")
        return settings


# -- who asks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requester:
    """The parts of an identity the sandbox rules look at."""

    username: str | None
    group: str | None
    vo: str | None
    properties: frozenset[str] = field(default_factory=frozenset)
    #: a job's own credential reads only the sandboxes of these entities (``Job:<id>``)
    entities: frozenset[str] | None = None

    @classmethod
    def from_identity(cls, ident: Identity) -> Requester:
        return cls(ident.username, ident.group, ident.vo, ident.properties)


def may_use(req: Requester, rec: db.SandboxRecord) -> bool:
    """Owner; the owner's group when it has JobSharing; JobAdministrator and GenericPilot of
    the sandbox's VO; trusted hosts. (Job-scoped pilot credentials will narrow pilots.)"""
    if req.username is not None and req.username == rec.owner:
        return True
    if "JobSharing" in req.properties and req.group == rec.owner_group:
        return True
    if req.properties & {"JobAdministrator", "GenericPilot"} and req.vo == rec.vo:
        return True
    return "TrustedHost" in req.properties


# -- names and paths -------------------------------------------------------------------------


def parse_file_name(name: str) -> tuple[str, str]:
    """``"<md5>.<ext>"`` -> (md5, ext); anything else is refused."""
    md5, _, ext = name.partition(".")
    if not _MD5.match(md5) or not _EXT.match(ext):
        raise InvalidArgumentError(f"sandbox file name must be '<md5>.<ext>', not {name!r}")
    return md5, ext


def pfn_for(owner: str, group: str, md5: str, ext: str) -> str:
    for label, value in (("owner", owner), ("group", group)):
        if not _NAME.match(value):
            raise InvalidArgumentError(f"{label} {value!r} cannot be part of a sandbox path")
    return f"/SandBox/{owner[0]}/{owner}.{group}/{md5[:3]}/{md5[3:6]}/{md5}.{ext}"


def check_pfn(pfn: str) -> str:
    """``pfn`` when it is exactly a path this store makes, else InvalidArgumentError."""
    match = _PFN.match(pfn)
    if match is None or not _EXT.match(match["ext"]) or not all(
            _NAME.match(match[k]) for k in ("owner", "group")) or pfn_for(
            match["owner"], match["group"], match["md5"], match["ext"]) != pfn:
        raise InvalidArgumentError(f"not a sandbox path of this store: {pfn!r}")
    return pfn


def parse_sb_url(file_id: str, se_name: str) -> str:
    """``SB:<SE>|<pfn>`` (or a bare pfn) -> the checked pfn; other SEs are refused."""
    if file_id.startswith("SB:"):
        se, sep, pfn = file_id[3:].partition("|")
        if not sep:
            raise InvalidArgumentError(f"sandbox URL must be 'SB:<SE>|<path>': {file_id!r}")
        if se != se_name:
            raise NotFoundError(f"sandbox {file_id} is on {se}, not in this store ({se_name})")
        return check_pfn(pfn)
    return check_pfn(file_id)


def sb_url(se_name: str, pfn: str) -> str:
    return f"SB:{se_name}|{pfn}"


def local_path(settings: StoreSettings, pfn: str) -> Path:
    """The file of ``pfn`` under BasePath; refuses anything that resolves elsewhere."""
    base = settings.base_path.resolve()
    path = base / check_pfn(pfn).lstrip("/")
    real_parent = Path(os.path.realpath(path.parent))
    if not real_parent.is_relative_to(base):
        raise InvalidArgumentError(f"sandbox path {pfn!r} leaves the store")
    return real_parent / path.name


@contextmanager
def open_stored(path: Path) -> Iterator[IO[bytes]]:
    """Open a stored file for reading; symlinks and non-regular files are refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise NotFoundError(f"sandbox file {path.name} is missing from the store") from None
    except OSError as exc:
        if exc.errno == _errno.ELOOP:
            raise InvalidArgumentError(f"sandbox file {path.name} is a symbolic link") from None
        raise
    with os.fdopen(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidArgumentError(f"sandbox file {path.name} is not a regular file")
        yield stream


# -- upload -----------------------------------------------------------------------------------


class SandboxWriter:
    """Streams an upload to a temp file, hashing and counting; raises past the size limit.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     with SandboxWriter(StoreSettings(Path(tmp))) as writer:
    ...         writer.write(b"abc")
    ...         writer.size, writer.hexdigest()
    (3, '900150983cd24fb0d6963f7d28e17f72')
    """

    def __init__(self, settings: StoreSettings, expected_size: int | None = None) -> None:
        if expected_size is not None and expected_size > settings.max_bytes:
            raise SandboxTooBigError(SANDBOX_TOO_BIG)
        self.settings = settings
        settings.incoming.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=settings.incoming, prefix="upload-", suffix=".part")
        self.path = Path(name)
        self._file: IO[bytes] | None = os.fdopen(fd, "wb")
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._lock = threading.Lock()  # a dropped connection may abort during a write
        self.size = 0

    def write(self, chunk: bytes) -> None:
        with self._lock:
            if self._file is None:
                raise ValueError("writer is closed")
            self.size += len(chunk)
            if self.size <= self.settings.max_bytes:
                self._md5.update(chunk)
                self._file.write(chunk)
                return
        self.abort()
        raise SandboxTooBigError(SANDBOX_TOO_BIG)

    def hexdigest(self) -> str:
        return self._md5.hexdigest()

    def close(self) -> None:
        """Flush to disk; the file stays for :func:`register_upload`."""
        with self._lock:
            if self._file is not None:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
                self._file = None

    def abort(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> SandboxWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.abort()
        elif self._file is not None:
            self.abort()  # never handed over: nothing to keep


def _place(tmp: Path, final: Path, base: Path) -> None:
    """Rename ``tmp`` to ``final``, making directories (a cleanup may remove them meanwhile)."""
    for _attempt in range(5):
        final.parent.mkdir(parents=True, exist_ok=True)
        if not Path(os.path.realpath(final.parent)).is_relative_to(base):
            raise InvalidArgumentError(f"sandbox directory {final.parent} leaves the store")
        try:
            os.replace(tmp, final)
            return
        except FileNotFoundError:
            if not tmp.exists():
                raise
    raise OSError(f"cannot place {final}: its directory keeps disappearing")


def register_upload(engine: Engine, settings: StoreSettings, owner: Requester, writer:
                    SandboxWriter, md5: str, ext: str, *, now: datetime | None = None) -> str:
    """Check the hash, put the file in place (unless already stored) and register it."""
    writer.close()
    tmp = writer.path
    try:
        if writer.hexdigest() != md5:
            raise HashMismatchError(HASH_MISMATCH)
        if not owner.username or not owner.group:
            raise NotAuthorizedError("uploading a sandbox needs a user identity with a group")
        pfn = pfn_for(owner.username, owner.group, md5, ext)
        final = local_path(settings, pfn)
        now = now or utcnow()
        try:
            with write_transaction(engine) as conn:
                rec = db.get_by_location(conn, settings.se_name, pfn, lock=True)
                if rec is not None and final.is_file() and not final.is_symlink():
                    db.touch(conn, rec.sb_id, now)  # identical sandbox: keep the stored one
                else:
                    _place(tmp, final, settings.base_path.resolve())
                    if rec is None:
                        db.insert_sandbox(conn, owner=owner.username, owner_group=owner.group,
                                          vo=owner.vo or "", se_name=settings.se_name, pfn=pfn,
                                          checksum=md5, size=writer.size, now=now)
                    else:
                        db.touch(conn, rec.sb_id, now)  # the file had gone: stored again
        except sa.exc.IntegrityError:
            pass  # an identical upload registered it meanwhile (MariaDB): same bytes, same path
        return sb_url(settings.se_name, pfn)
    finally:
        tmp.unlink(missing_ok=True)


def store_bytes(engine: Engine, settings: StoreSettings, owner: Requester, file_name: str,
                data: bytes, declared_size: int | None = None) -> str:
    """DIRAC's ``streamFromClient``: the whole archive in memory; returns ``SB:<SE>|<pfn>``."""
    md5, ext = parse_file_name(file_name)
    if len(data) > settings.max_bytes or (declared_size or 0) > settings.max_bytes:
        raise SandboxTooBigError(SANDBOX_TOO_BIG)
    if declared_size is not None and declared_size >= 0 and declared_size != len(data):
        raise InvalidArgumentError(f"declared size {declared_size} but {len(data)} bytes came")
    writer = SandboxWriter(settings, len(data))
    try:
        for start in range(0, len(data), CHUNK):
            writer.write(data[start:start + CHUNK])
    except BaseException:
        writer.abort()
        raise
    return register_upload(engine, settings, owner, writer, md5, ext)


# -- download ---------------------------------------------------------------------------------


def find_readable(engine: Engine, settings: StoreSettings, req: Requester,
                  file_id: str) -> Path:
    """The local file of ``file_id`` if it exists and ``req`` may read it."""
    pfn = parse_sb_url(file_id, settings.se_name)
    with engine.connect() as conn:
        rec = db.get_by_location(conn, settings.se_name, pfn)
        mine = (db.sandbox_ids_of_entities(conn, req.entities)
                if rec is not None and req.entities is not None else None)
    if rec is None:
        raise NotFoundError(f"no sandbox {sb_url(settings.se_name, pfn)}")
    if not may_use(req, rec):
        raise NotAuthorizedError(f"{req.username}@{req.group} may not read {pfn}")
    if mine is not None and rec.sb_id not in mine:
        raise NotAuthorizedError(f"a job's credential reads its own job's sandboxes only, "
                                 f"not {pfn}")
    return local_path(settings, pfn)


def read_sandbox(engine: Engine, settings: StoreSettings, req: Requester, file_id: str) -> bytes:
    with open_stored(find_readable(engine, settings, req, file_id)) as stream:
        return stream.read()


# -- entities -------------------------------------------------------------------------------------


def check_entity(entity_id: str) -> str:
    if not isinstance(entity_id, str) or not _ENTITY.match(entity_id):
        raise InvalidArgumentError(f"entity must look like 'Job:<id>', not {entity_id!r}")
    return entity_id


@retry_conflicts()
def assign(engine: Engine, settings: StoreSettings, req: Requester,
           assignments: Mapping[str, Sequence[Sequence[str]]], *,
           now: datetime | None = None) -> int:
    """Assign sandboxes: ``{"Job:1": [(url, "Input"), ...]}``; returns new mappings made.

    Every sandbox must be registered here and usable by ``req`` (owner, JobSharing group,
    JobAdministrator/GenericPilot of its VO, trusted host); the job's ownership is not checked
    yet (that needs the job tables: the JobManager will call this after its own check).
    """
    wanted: set[tuple[str, str, str]] = set()
    for entity, items in assignments.items():
        check_entity(entity)
        if not isinstance(items, list | tuple):
            raise InvalidArgumentError(f"{entity}: expected a list of (url, type) pairs")
        for item in items:
            if not isinstance(item, list | tuple) or len(item) != 2 or not all(
                    isinstance(x, str) for x in item):
                raise InvalidArgumentError(f"{entity}: expected (url, type), not {item!r}")
            if item[1] not in SANDBOX_TYPES:
                raise InvalidArgumentError(f"{entity}: sandbox type must be Input or Output, "
                                           f"not {item[1]!r}")
            wanted.add((entity, parse_sb_url(item[0], settings.se_name), item[1]))
    if not wanted:
        return 0
    with write_transaction(engine) as conn:
        return _assign_in(conn, settings, req, wanted, now or utcnow())


def assign_in(conn: Connection, settings: StoreSettings, req: Requester,
              assignments: Mapping[str, Sequence[str]], sb_type: str, now: datetime) -> int:
    """:func:`assign` inside the caller's write transaction, for references already checked
    for form (the submission's ``SB:`` entries): ``{"Job:1": [url, ...]}``, all ``sb_type``."""
    wanted = {(check_entity(entity), parse_sb_url(url, settings.se_name), sb_type)
              for entity, urls in assignments.items() for url in urls}
    return _assign_in(conn, settings, req, wanted, now) if wanted else 0


def _assign_in(conn: Connection, settings: StoreSettings, req: Requester,
               wanted: set[tuple[str, str, str]], now: datetime) -> int:
    recs = db.get_by_locations(conn, settings.se_name, {p for _, p, _ in wanted}, lock=True)
    for _, pfn, _ in sorted(wanted):
        rec = recs.get(pfn)
        if rec is None:
            raise NotFoundError(f"sandbox {sb_url(settings.se_name, pfn)} is not registered")
        if not may_use(req, rec):
            raise NotAuthorizedError(f"{req.username}@{req.group} may not assign {pfn}")
    existing = db.existing_mappings(conn, {e for e, _, _ in wanted})
    rows = {(e, recs[p].sb_id, t) for e, p, t in wanted} - existing
    db.insert_mappings(conn, sorted(rows))
    db.mark_assigned(conn, {r.sb_id for r in recs.values()}, now)
    return len(rows)


def assigned_to(engine: Engine, settings: StoreSettings, req: Requester,
                entity_id: str) -> dict[str, list[str]]:
    """``{"Input": [urls], "Output": [urls]}`` of the sandboxes ``req`` may see."""
    check_entity(entity_id)
    result: dict[str, list[str]] = {t: [] for t in SANDBOX_TYPES}
    if req.entities is not None and entity_id not in req.entities:
        return result  # a job's credential sees its own job's sandboxes only
    with engine.connect() as conn:
        pairs = db.sandboxes_of_entity(conn, entity_id)
    for sb_type, rec in pairs:
        if may_use(req, rec):
            result.setdefault(sb_type, []).append(sb_url(rec.se_name, rec.pfn))
    return result


def unassign(engine: Engine, entity_ids: Sequence[str], *, now: datetime | None = None) -> int:
    """Forget the entities' mappings; freed sandboxes start their grace period. Returns the
    number of mappings removed."""
    entities = {check_entity(e) for e in entity_ids}
    now = now or utcnow()
    with write_transaction(engine) as conn:
        sb_ids = db.sandbox_ids_of_entities(conn, entities)
        removed = db.delete_entities(conn, entities)
        db.mark_unassigned_if_unused(conn, sb_ids, now)
    return removed


# -- cleanup -----------------------------------------------------------------------------------


@dataclass
class CleanupReport:
    sandboxes: int = 0
    bytes: int = 0
    missing_files: int = 0
    stale_uploads: int = 0


def _remove_empty_dirs(directory: Path, stop: Path) -> None:
    while directory != stop and directory.is_relative_to(stop):
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def clean_unused(engine: Engine, store: StoreSettings, older_than: timedelta, *,
                 grace: timedelta | None = None, now: datetime | None = None,
                 batch: int = 200) -> CleanupReport:
    """Delete sandboxes no entity uses: never assigned and untouched for ``older_than``, or
    unassigned for longer than ``grace`` (default ``UnassignedGraceHours``); rows first, under
    the lock, then files. Also removes interrupted uploads older than ``older_than``."""
    now = now or utcnow()
    grace = grace if grace is not None else timedelta(hours=store.unassigned_grace_hours)
    bounds = {"unassigned_before": now - grace, "never_assigned_before": now - older_than}
    base = store.base_path.resolve()
    report = CleanupReport()
    seen: set[int] = set()
    while True:
        with engine.connect() as conn:
            ids = [i for i in db.cleanup_candidates(conn, limit=batch, **bounds) if i not in seen]
        if not ids:
            break
        seen.update(ids)
        moved: list[tuple[Path, Path]] = []
        try:
            with write_transaction(engine) as conn:
                db.lock_sandboxes(conn, ids)
                recs = db.still_deletable(conn, ids, **bounds)
                for rec in recs:
                    path = local_path(store, rec.pfn)
                    tomb = path.with_name(f".{path.name}.deleted-{uuid.uuid4().hex}")
                    try:
                        os.replace(path, tomb)
                        moved.append((tomb, path))
                    except FileNotFoundError:
                        report.missing_files += 1
                db.delete_sandboxes(conn, [r.sb_id for r in recs])
        except BaseException:
            for tomb, path in moved:  # the rows stay: so do the files
                with suppress(OSError):
                    os.replace(tomb, path)
            raise
        for tomb, _path in moved:
            tomb.unlink(missing_ok=True)
            _remove_empty_dirs(tomb.parent, base / "SandBox")
        report.sandboxes += len(recs)
        report.bytes += sum(r.size for r in recs)
    report.stale_uploads = _sweep_incoming(store, now - older_than)
    return report


def _sweep_incoming(store: StoreSettings, before: datetime) -> int:
    if not store.incoming.is_dir():
        return 0
    count = 0
    for part in store.incoming.glob("upload-*.part"):
        with suppress(FileNotFoundError):
            if part.stat().st_mtime < before.timestamp():
                part.unlink()
                count += 1
    return count
