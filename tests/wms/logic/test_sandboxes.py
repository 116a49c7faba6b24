"""Sandbox store rules on both databases: names, paths, uploads, rights, assignment, cleanup."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.db import init_schema, make_engine
from core.exceptions import (
    ConfigError,
    InvalidArgumentError,
    NotAuthorizedError,
    NotFoundError,
)
from wms.db import sandboxes as sbdb
from wms.db.sandbox_tables import sandbox_entities, sandboxes
from wms.db.schema import WMS_SCHEMA
from wms.logic import sandboxes as logic
from wms.logic.sandboxes import (
    HASH_MISMATCH,
    SANDBOX_TOO_BIG,
    HashMismatchError,
    Requester,
    SandboxTooBigError,
    StoreSettings,
)

ALICE = Requester("alice", "demo_user", "demo", frozenset({"NormalUser"}))
BOB = Requester("bob", "demo_user", "demo", frozenset({"NormalUser"}))
T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_schema(eng, WMS_SCHEMA)
    yield eng
    eng.dispose()


@pytest.fixture
def store(tmp_path: Path) -> StoreSettings:
    return StoreSettings(base_path=tmp_path / "store", max_size_mib=1)


def upload(engine: Engine, store: StoreSettings, data: bytes, who: Requester = ALICE) -> str:
    return logic.store_bytes(engine, store, who, f"{md5(data)}.tar.bz2", data, len(data))


def url_of(data: bytes, owner: str = "alice") -> str:
    return logic.sb_url("ProductionSandboxSE",
                        logic.pfn_for(owner, "demo_user", md5(data), "tar.bz2"))


def stored_files(store: StoreSettings) -> list[Path]:
    return sorted(p for p in (store.base_path / "SandBox").rglob("*") if p.is_file())


def count(engine: Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


# -- settings -------------------------------------------------------------------------------------


def test_settings_default_to_the_sqlite_directory(tmp_path: Path) -> None:
    settings = StoreSettings.from_section({}, default_max_mib=10,
                                          database_url=f"sqlite:///{tmp_path}/wms.db")
    assert settings.base_path == tmp_path.resolve() / "sandboxes"
    assert (settings.se_name, settings.max_size_mib) == ("ProductionSandboxSE", 10)
    custom = StoreSettings.from_section(
        {"BasePath": str(tmp_path / "x"), "SEName": "MySE", "MaxSizeMiB": 3,
         "CleanupAfterDays": 2, "UnassignedGraceHours": 1},
        default_max_mib=10, database_url="mysql+pymysql://u:p@h/db")
    assert (custom.base_path, custom.se_name, custom.max_bytes) == (
        tmp_path / "x", "MySE", 3 * 1024 * 1024)


@pytest.mark.parametrize(("section", "url", "words"), [
    ({}, "mysql+pymysql://u:p@h/db", "BasePath is required"),
    ({}, "sqlite://", "BasePath is required"),
    ({"BasePath": "relative/dir"}, "sqlite:///x.db", "must be absolute"),
    ({"Basepath": "/x"}, "sqlite:///x.db", "unknown key(s) Basepath"),
    ({"BasePath": "/x", "MaxSizeMiB": "lots"}, "sqlite:///x.db",
     "Services.SandboxStore.Options"),
])
def test_bad_settings_name_the_key(section: dict[str, Any], url: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        StoreSettings.from_section(section, default_max_mib=10, database_url=url)


# -- names and paths ------------------------------------------------------------------------------


def test_paths_follow_dirac_layout() -> None:
    digest = md5(b"x")
    pfn = logic.pfn_for("alice", "demo_user", digest, "tar.bz2")
    assert pfn == f"/SandBox/a/alice.demo_user/{digest[:3]}/{digest[3:6]}/{digest}.tar.bz2"
    assert logic.parse_sb_url(f"SB:ProductionSandboxSE|{pfn}", "ProductionSandboxSE") == pfn
    assert logic.parse_sb_url(pfn, "ProductionSandboxSE") == pfn
    assert logic.parse_file_name(f"{digest}.tar.bz2") == (digest, "tar.bz2")


@pytest.mark.parametrize("name", [
    "x.tar.bz2", f"{'A' * 32}.tar.bz2", f"{'a' * 32}", f"{'a' * 32}./etc", f"{'a' * 32}.tar/..",
    f"../{'a' * 32}.tar.bz2", f"{'a' * 32}.TAR",
])
def test_bad_file_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidArgumentError):
        logic.parse_file_name(name)


GOOD = f"/SandBox/a/alice.demo_user/{'a' * 3}/{'a' * 3}/{'a' * 32}.tar.bz2"


@pytest.mark.parametrize("file_id", [
    "/etc/passwd",
    "SB:ProductionSandboxSE|/etc/passwd",
    "SB:ProductionSandboxSE|/SandBox/a/alice.demo_user/../../../etc/passwd",
    GOOD.replace("/SandBox/a/", "/SandBox/../"),
    GOOD.replace("alice.demo_user", ".."),
    GOOD.replace("alice.demo_user", "alice.."),
    GOOD.replace("/SandBox/a/", "/SandBox/b/"),           # letter does not match the owner
    GOOD.replace(f"/{'a' * 3}/{'a' * 3}/", "/abc/aaa/"),  # prefix does not match the md5
    GOOD + "/../x",
    "SandBox/" + GOOD,
    GOOD.replace("/SandBox", "//SandBox"),
    "SB:ProductionSandboxSE" + GOOD,
])
def test_traversal_and_foreign_paths_are_refused(file_id: str) -> None:
    with pytest.raises(InvalidArgumentError):
        logic.parse_sb_url(file_id, "ProductionSandboxSE")


def test_sandboxes_of_another_se_are_not_here() -> None:
    with pytest.raises(NotFoundError, match="OtherSE"):
        logic.parse_sb_url(f"SB:OtherSE|{GOOD}", "ProductionSandboxSE")


def test_symlinks_never_lead_out_of_the_store(tmp_path: Path, store: StoreSettings) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    user_dir = store.base_path / "SandBox" / "a"
    user_dir.mkdir(parents=True)
    (user_dir / "alice.demo_user").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidArgumentError, match="leaves the store"):
        logic.local_path(store, GOOD)
    link = tmp_path / "link"
    link.symlink_to(outside / "secret")
    with pytest.raises(InvalidArgumentError, match="symbolic link"), logic.open_stored(link):
        pass


# -- upload and download ---------------------------------------------------------------------------


def test_upload_then_read(engine: Engine, store: StoreSettings) -> None:
    url = upload(engine, store, b"hello")
    assert url.startswith("SB:ProductionSandboxSE|/SandBox/a/alice.demo_user/")
    assert logic.read_sandbox(engine, store, ALICE, url) == b"hello"
    assert [p.read_bytes() for p in stored_files(store)] == [b"hello"]
    assert list(store.incoming.iterdir()) == []


def test_identical_content_is_stored_once(engine: Engine, store: StoreSettings) -> None:
    assert upload(engine, store, b"same") == upload(engine, store, b"same")
    assert count(engine, sandboxes) == 1 and len(stored_files(store)) == 1
    upload(engine, store, b"same", BOB)  # another owner: another sandbox
    assert count(engine, sandboxes) == 2 and len(stored_files(store)) == 2


def test_a_missing_file_is_stored_again(engine: Engine, store: StoreSettings) -> None:
    url = upload(engine, store, b"again")
    stored_files(store)[0].unlink()
    assert upload(engine, store, b"again") == url
    assert logic.read_sandbox(engine, store, ALICE, url) == b"again"


def test_too_big_gets_dirac_message(engine: Engine, store: StoreSettings) -> None:
    data = b"x" * (store.max_bytes + 1)
    with pytest.raises(SandboxTooBigError) as info:
        upload(engine, store, data)
    assert info.value.message == SANDBOX_TOO_BIG == (
        "Sandbox is too big. Please upload it to a grid storage element")
    with pytest.raises(SandboxTooBigError):  # a declared size alone is enough
        logic.store_bytes(engine, store, ALICE, f"{md5(b'x')}.tar.bz2", b"x", 10**12)
    assert count(engine, sandboxes) == 0
    assert not store.incoming.exists() or list(store.incoming.iterdir()) == []


def test_streaming_writer_stops_at_the_limit(store: StoreSettings) -> None:
    writer = logic.SandboxWriter(store)
    writer.write(b"x" * store.max_bytes)
    with pytest.raises(SandboxTooBigError):
        writer.write(b"x")
    assert not writer.path.exists()
    with pytest.raises(SandboxTooBigError):
        logic.SandboxWriter(store, expected_size=store.max_bytes + 1)


def test_hash_mismatch(engine: Engine, store: StoreSettings) -> None:
    with pytest.raises(HashMismatchError, match=HASH_MISMATCH):
        logic.store_bytes(engine, store, ALICE, f"{md5(b'a')}.tar.bz2", b"b", 1)
    with pytest.raises(InvalidArgumentError, match="declared size"):
        logic.store_bytes(engine, store, ALICE, f"{md5(b'a')}.tar.bz2", b"a", 2)
    assert count(engine, sandboxes) == 0 and list(store.incoming.iterdir()) == []


def test_uploads_need_a_group(engine: Engine, store: StoreSettings) -> None:
    with pytest.raises(NotAuthorizedError):
        upload(engine, store, b"host", Requester("somehost", None, None,
                                                  frozenset({"TrustedHost"})))


# -- rights ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("who", "ok"), [
    (ALICE, True),
    (Requester("alice", "other_group", "other", frozenset()), True),  # same person
    (BOB, False),
    (Requester("bob", "demo_user", "demo", frozenset({"JobSharing"})), True),
    (Requester("bob", "other", "demo", frozenset({"JobSharing"})), False),
    (Requester("adm", "demo_admin", "demo", frozenset({"JobAdministrator"})), True),
    (Requester("adm", "x_admin", "x", frozenset({"JobAdministrator"})), False),  # other VO
    (Requester("pilot", "demo_pilot", "demo", frozenset({"GenericPilot"})), True),
    (Requester("pilot", "x_pilot", "x", frozenset({"GenericPilot"})), False),
    (Requester("host", None, None, frozenset({"TrustedHost"})), True),
    (Requester(None, None, None), False),
])
def test_who_may_use_a_sandbox(who: Requester, ok: bool) -> None:
    rec = sbdb.SandboxRecord(1, "alice", "demo_user", "demo", "SE", GOOD, "a" * 32, 1, T0, T0,
                             False)
    assert logic.may_use(who, rec) is ok


def test_others_cannot_read(engine: Engine, store: StoreSettings) -> None:
    url = upload(engine, store, b"private")
    with pytest.raises(NotAuthorizedError):
        logic.read_sandbox(engine, store, BOB, url)
    with pytest.raises(NotFoundError):
        logic.read_sandbox(engine, store, ALICE, url_of(b"other"))


# -- assignment ------------------------------------------------------------------------------------


def test_assignment_round_trip(engine: Engine, store: StoreSettings) -> None:
    inp, out = upload(engine, store, b"in"), upload(engine, store, b"out")
    made = logic.assign(engine, store, ALICE, {"Job:1": [(inp, "Input"), [out, "Output"]],
                                               "Job:2": [(inp, "Input")]})
    assert made == 3
    assert logic.assign(engine, store, ALICE, {"Job:1": [(inp, "Input")]}) == 0  # idempotent
    assert logic.assigned_to(engine, store, ALICE, "Job:1") == {"Input": [inp],
                                                                "Output": [out]}
    assert logic.assigned_to(engine, store, BOB, "Job:1") == {"Input": [], "Output": []}
    assert logic.unassign(engine, ["Job:1"]) == 2
    assert logic.assigned_to(engine, store, ALICE, "Job:1") == {"Input": [], "Output": []}
    assert logic.assigned_to(engine, store, ALICE, "Job:2") == {"Input": [inp], "Output": []}


def test_assignment_checks(engine: Engine, store: StoreSettings) -> None:
    url = upload(engine, store, b"mine")
    with pytest.raises(NotAuthorizedError):
        logic.assign(engine, store, BOB, {"Job:1": [(url, "Input")]})
    with pytest.raises(NotFoundError, match="not registered"):
        logic.assign(engine, store, ALICE,
                     {"Job:1": [(url_of(b"x"), "Input")]})
    for bad in ({"Job:1": [(url, "Inputs")]}, {"Job 1": [(url, "Input")]},
                {"Job:1": [url]}, {"Job:1": "x"}):
        with pytest.raises(InvalidArgumentError):
            logic.assign(engine, store, ALICE, bad)
    assert count(engine, sandbox_entities) == 0


# -- cleanup --------------------------------------------------------------------------------------


def test_cleanup_removes_only_unused(engine: Engine, store: StoreSettings) -> None:
    def at(when: datetime, data: bytes) -> str:
        writer = logic.SandboxWriter(store)
        writer.write(data)
        return logic.register_upload(engine, store, ALICE, writer, md5(data), "tar.bz2",
                                     now=when)

    used = at(T0, b"used")
    logic.assign(engine, store, ALICE, {"Job:1": [(used, "Input")]}, now=T0)
    old = at(T0, b"never assigned, old")
    young = at(T0 + timedelta(days=6), b"never assigned, young")
    freed = at(T0, b"freed long ago")
    logic.assign(engine, store, ALICE, {"Job:2": [(freed, "Output")]}, now=T0)
    logic.unassign(engine, ["Job:2"], now=T0 + timedelta(days=1))
    recent = at(T0, b"freed recently")
    logic.assign(engine, store, ALICE, {"Job:3": [(recent, "Output")]}, now=T0)
    logic.unassign(engine, ["Job:3"], now=T0 + timedelta(days=6, hours=20))
    stale = store.incoming / "upload-crashed.part"
    stale.write_bytes(b"half")
    os.utime(stale, (T0.timestamp(), T0.timestamp()))

    report = logic.clean_unused(engine, store, timedelta(days=3), grace=timedelta(hours=12),
                                now=T0 + timedelta(days=7))
    assert (report.sandboxes, report.missing_files, report.stale_uploads) == (2, 0, 1)
    assert report.bytes == len(b"never assigned, old") + len(b"freed long ago")
    with engine.connect() as conn:
        left = {r.pfn for r in conn.execute(sa.select(sandboxes.c.pfn))}
    assert left == {logic.parse_sb_url(u, store.se_name) for u in (used, young, recent)}
    assert sorted(p.read_bytes() for p in stored_files(store)) == sorted(
        [b"used", b"never assigned, young", b"freed recently"])
    assert not stale.exists()
    for gone in (old, freed):
        with pytest.raises(NotFoundError):
            logic.read_sandbox(engine, store, ALICE, gone)
    assert not any(p.name.startswith(".") for p in (store.base_path / "SandBox").rglob("*"))


def test_cleanup_respects_an_assignment_made_meanwhile(
        engine: Engine, store: StoreSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    url = upload(engine, store, b"racy")
    original = sbdb.cleanup_candidates

    def candidates_then_assign(*args: Any, **kwargs: Any) -> list[int]:
        found = original(*args, **kwargs)
        # between finding the candidate and locking it, a job takes the sandbox
        logic.assign(engine, store, ALICE, {"Job:9": [(url, "Input")]})
        return found

    monkeypatch.setattr(sbdb, "cleanup_candidates", candidates_then_assign)
    report = logic.clean_unused(engine, store, timedelta(0), grace=timedelta(0),
                                now=datetime.now(timezone.utc) + timedelta(days=1))
    assert report.sandboxes == 0
    assert logic.read_sandbox(engine, store, ALICE, url) == b"racy"


def test_reupload_protects_an_old_sandbox(engine: Engine, store: StoreSettings) -> None:
    data = b"still wanted"
    writer = logic.SandboxWriter(store)
    writer.write(data)
    url = logic.register_upload(engine, store, ALICE, writer, md5(data), "tar.bz2", now=T0)
    upload(engine, store, data)  # the same sandbox uploaded again now: its clock restarts
    report = logic.clean_unused(engine, store, timedelta(days=1))
    assert report.sandboxes == 0
    assert logic.read_sandbox(engine, store, ALICE, url) == data


def test_cleanup_copes_with_a_missing_file(engine: Engine, store: StoreSettings) -> None:
    upload(engine, store, b"lost")
    stored_files(store)[0].unlink()
    report = logic.clean_unused(engine, store, timedelta(0),
                                now=datetime.now(timezone.utc) + timedelta(seconds=5))
    assert (report.sandboxes, report.missing_files) == (1, 1)
    assert count(engine, sandboxes) == 0
