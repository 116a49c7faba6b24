"""Metadata fields, values, inheritance, queries, datasets and ancestry on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.db import init_schema, make_engine
from core.exceptions import InvalidArgumentError, NotAuthorizedError
from dms.db.schema import DMS_SCHEMA
from dms.db.tables import files
from dms.logic import ancestry, datasets, directories, metadata, namespace
from dms.logic.replicas import get_replicas, set_replica_status
from dms.logic.rights import CatalogSettings, Requester

CFG = CatalogSettings(vo_groups={"demo": "demo_user"})
ADMIN = Requester("admin", "dm_admin", "demo", admin=True)
ALICE = Requester("alice", "demo_user", "demo")
H = "/demo/user/a/alice"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_schema(eng, DMS_SCHEMA)
    yield eng
    eng.dispose()


def add(engine: Engine, *lfns: str, size: int = 1, se: str = "DISK") -> None:
    result = namespace.add_files(engine, CFG, ALICE, {
        lfn: {"Size": size, "SE": se, "GUID": f"{lfn}-guid"} for lfn in lfns})
    assert result.failed == {}


@pytest.fixture
def tree(engine: Engine) -> Engine:
    """runs r1..r4 (run = 1..4, kind raw/reco alternating), energy on files, a date."""
    for name, kind in (("int", "run"), ("string", "kind"), ("float", "energy"),
                       ("date", "taken")):
        assert metadata.add_field(engine, ADMIN, kind, name)
    for run in range(1, 5):
        base = f"{H}/runs/r{run}"
        add(engine, *(f"{base}/f{i}" for i in range(3)))
        add(engine, f"{base}/sub/g")
        metadata.set_metadata(engine, ALICE, base, {
            "run": run, "kind": "raw" if run % 2 else "reco",
            "taken": f"2026-01-0{run}"})
        for i in range(3):
            metadata.set_metadata(engine, ALICE, f"{base}/f{i}", {"energy": 1.5 * i})
    return engine


def find(engine: Engine, query: dict, path: str = "/") -> list[str]:
    return [p.removeprefix(f"{H}/runs/") for p in metadata.find_files(engine, ALICE, query,
                                                                       path)]


def test_queries(tree: Engine) -> None:
    assert find(tree, {"run": 2}) == ["r2/f0", "r2/f1", "r2/f2", "r2/sub/g"]  # inherited
    assert find(tree, {"run": {">": 2, "<=": 3}, "energy": {">=": 1.5}}) == ["r3/f1", "r3/f2"]
    assert find(tree, {"run": [1, 4], "kind": "reco", "energy": {"<": 1}}) == ["r4/f0"]
    assert find(tree, {"run": {"in": [1, 2]}, "kind": {"!=": "raw"}, "energy": 3.0}) == [
        "r2/f2"]
    assert find(tree, {"run": {"nin": [1, 2, 3]}, "energy": "Any"}) == [
        "r4/f0", "r4/f1", "r4/f2"]
    assert find(tree, {"taken": {">=": "2026-01-04"}}) == [
        "r4/f0", "r4/f1", "r4/f2", "r4/sub/g"]
    assert find(tree, {"kind": "raw", "SE": "DISK", "Size": 1}, f"{H}/runs/r3/sub") == [
        "r3/sub/g"]
    assert find(tree, {"run": 2}, f"{H}/nowhere") == []
    for bad in ({"nofield": 1}, {"run": {"~": 1}}, {"run": {">": [1, 2]}}, {"run": "x"},
                {"run": {"in": []}}):
        with pytest.raises(InvalidArgumentError):
            find(tree, bad)


def test_field_on_directories_and_files(tree: Engine) -> None:
    """One field set on a directory in one place and on single files elsewhere."""
    metadata.add_field(tree, ADMIN, "tag", "string")
    metadata.set_metadata(tree, ALICE, f"{H}/runs/r1/sub", {"tag": "gold"})
    metadata.set_metadata(tree, ALICE, f"{H}/runs/r2/f0", {"tag": "gold"})
    metadata.set_metadata(tree, ALICE, f"{H}/runs/r3/f0", {"tag": "lead"})
    assert find(tree, {"tag": "gold"}) == ["r1/sub/g", "r2/f0"]
    assert find(tree, {"tag": {"!=": "gold"}}) == ["r3/f0"]
    assert find(tree, {"tag": "gold", "run": 2}) == ["r2/f0"]
    assert find(tree, {"tag": "Any", "kind": "raw"}) == ["r1/sub/g", "r3/f0"]
    assert find(tree, {"tag": "gold"}, f"{H}/runs/r1") == ["r1/sub/g"]


def test_registered_since(tree: Engine) -> None:
    """The transformation system's "files registered since T" (CreationDate)."""
    with tree.begin() as conn:
        conn.execute(files.update().values(created=datetime(2025, 1, 1, tzinfo=timezone.utc)))
    cut = datetime.now(timezone.utc) - timedelta(minutes=5)
    assert find(tree, {"CreationDate": {">=": cut}}) == []
    add(tree, f"{H}/runs/r1/late")
    assert find(tree, {"CreationDate": {">=": cut}, "run": 1}) == ["r1/late"]
    assert find(tree, {"CreationDate": {">": "2024-12-31"}, "run": 1}) == [
        "r1/f0", "r1/f1", "r1/f2", "r1/late", "r1/sub/g"]


def test_inheritance_and_conflicts(tree: Engine) -> None:
    assert metadata.get_user_metadata(tree, ALICE, f"{H}/runs/r3/f1") == {
        "run": 3, "kind": "raw", "taken": datetime(2026, 1, 3, tzinfo=timezone.utc),
        "energy": 1.5}
    assert metadata.get_user_metadata(tree, ALICE, f"{H}/runs/r3/sub") == {
        "run": 3, "kind": "raw", "taken": datetime(2026, 1, 3, tzinfo=timezone.utc)}
    with pytest.raises(InvalidArgumentError, match="conflict"):
        metadata.set_metadata(tree, ALICE, f"{H}/runs/r3/sub", {"run": 9})
    with pytest.raises(InvalidArgumentError, match="conflict"):
        metadata.set_metadata(tree, ALICE, f"{H}/runs", {"energy": 1.0})
    metadata.set_metadata(tree, ALICE, f"{H}/runs/r3", {"run": 33})  # its own value: fine
    assert find(tree, {"run": 33}) == ["r3/f0", "r3/f1", "r3/f2", "r3/sub/g"]
    assert metadata.remove_metadata(tree, ALICE, {f"{H}/runs/r3": ["run"]}).failed == {}
    assert find(tree, {"run": 33}) == []
    with pytest.raises(NotAuthorizedError):
        metadata.add_field(tree, ALICE, "x", "int")
    with pytest.raises(InvalidArgumentError):
        metadata.add_field(tree, ADMIN, "run", "float")
    assert metadata.add_field(tree, ADMIN, "run", "INT") is False


def test_datasets(tree: Engine) -> None:
    name = f"{H}/sets/reco"
    assert datasets.add_datasets(tree, CFG, ALICE, {name: {"kind": "reco",
                                                           "energy": {">": 0}}}).failed == {}
    assert datasets.add_datasets(tree, CFG, ALICE, {name: {"kind": "x"}}).failed == {
        name: "File exists"}
    assert datasets.add_datasets(tree, CFG, ALICE, {f"{H}/sets/bad": {"nope": 1}}).failed == {
        f"{H}/sets/bad": "unknown metadata field 'nope'"}
    members = ["r2/f1", "r2/f2", "r4/f1", "r4/f2"]
    expected = [f"{H}/runs/{m}" for m in members]
    assert datasets.get_dataset_files(tree, ALICE, [name]).successful == {name: expected}
    assert datasets.freeze_datasets(tree, ALICE, [name]).failed == {}
    info = datasets.get_datasets(tree, ALICE, [name]).successful[name]
    assert (info["Status"], info["NumberOfFiles"], info["TotalSize"]) == ("Frozen", 4, 4)
    add(tree, f"{H}/runs/r2/f9")
    metadata.set_metadata(tree, ALICE, f"{H}/runs/r2/f9", {"energy": 9.0})
    assert datasets.get_dataset_files(tree, ALICE, [name]).successful == {name: expected}
    assert datasets.release_datasets(tree, ALICE, [name]).failed == {}
    assert len(datasets.get_dataset_files(tree, ALICE, [name]).successful[name]) == 5
    listing = directories.list_directory(tree, ALICE, [f"{H}/sets"]).successful
    assert list(listing[f"{H}/sets"]["Datasets"]) == [name]
    bob = Requester("bob", "demo_guest", "demo")
    assert datasets.remove_datasets(tree, bob, [name]).failed == {name: "Permission denied"}
    assert datasets.remove_datasets(tree, ALICE, [name]).failed == {}


def test_ancestry(engine: Engine) -> None:
    raw, reco, ana, other = (f"{H}/{n}" for n in ("raw", "reco", "ana", "other"))
    add(engine, raw, reco, ana, other)
    assert ancestry.add_ancestors(engine, ALICE, {
        reco: {"Ancestors": [raw]}, ana: {"Ancestors": [reco, other]},
        other: {"Ancestors": [f"{H}/missing"]}}).failed == {
        other: f"{H}/missing: No such file or directory"}
    assert ancestry.get_ancestors(engine, ALICE, [ana]).successful == {
        ana: {raw: 2, reco: 1, other: 1}}
    assert ancestry.get_ancestors(engine, ALICE, [ana], [2]).successful == {ana: {raw: 2}}
    assert ancestry.get_descendants(engine, ALICE, [raw]).successful == {
        raw: {reco: 1, ana: 2}}
    namespace.remove_files(engine, ALICE, [reco])
    assert ancestry.get_descendants(engine, ALICE, [raw]).successful == {raw: {}}


def test_statement_count(engine: Engine) -> None:
    """Bulk calls issue a bounded number of statements, whatever the number of LFNs."""
    counts: list[int] = []
    add(engine, f"{H}/warm-up")  # the home and the SE exist before counting

    def counting(*_args: object) -> None:
        counts[-1] += 1

    sa.event.listen(engine, "before_cursor_execute", counting)
    for n in (10, 400):
        lfns = [f"{H}/c{n}/d{i % 4}/f{i}" for i in range(n)]
        counts.append(0)
        add(engine, *lfns)
        counts.append(0)
        assert len(get_replicas(engine, ALICE, lfns).successful) == n
    sa.event.remove(engine, "before_cursor_execute", counting)
    add_small, get_small, add_big, get_big = counts
    assert add_big == add_small and get_big == get_small


def test_concurrent_writers_share_new_directories(engine: Engine) -> None:
    """Writers racing to create the same directories and SEs all succeed (conflicts retried)."""
    from concurrent.futures import ThreadPoolExecutor

    def writer(n: int) -> dict[str, str]:
        lfns = {f"{H}/race/d{i % 3}/w{n}-{i}": {"Size": 1, "SE": f"SE{i % 2}"}
                for i in range(30)}
        return namespace.add_files(engine, CFG, ALICE, lfns).failed

    with ThreadPoolExecutor(4) as pool:
        failures = list(pool.map(writer, range(4)))
    assert failures == [{}, {}, {}, {}]
    size = directories.get_directory_size(engine, ALICE, [f"{H}/race"], True).successful
    assert size[f"{H}/race"]["LogicalFiles"] == 120
    assert size[f"{H}/race"]["PhysicalSize"]["TotalFiles"] == 120


def test_admin_lookups(engine: Engine) -> None:
    """Administrators (e.g. the WMS reading replicas for scheduling) see every file."""
    add(engine, f"{H}/adm/f1")
    set_replica_status(engine, ALICE, {f"{H}/adm/f1": {"SE": "DISK",
                                                                  "Status": "AprioriGood"}})
    directories.change_path(engine, ALICE, "mode", {f"{H}/adm": 0o700, f"{H}/adm/f1": 0})
    other = Requester("bob", "demo_guest", "demo")
    assert get_replicas(engine, other, [f"{H}/adm/f1"]).failed == {
        f"{H}/adm/f1": "Permission denied"}
    assert get_replicas(engine, ADMIN, [f"{H}/adm/f1"]).successful == {
        f"{H}/adm/f1": {"DISK": ""}}
    assert get_replicas(engine, ALICE, [f"{H}/adm/f1"]).failed == {
        f"{H}/adm/f1": "Permission denied"}  # mode 000: not even its owner reads it


def test_bulk_lfn_arguments_must_be_strings() -> None:
    """A nested list where LFNs are expected is the client's mistake, not a server error
    (the RPC fuzzer's ``getReplicaStatus([[[]]])`` was an HTTP 500)."""
    from core.exceptions import InvalidArgumentError
    from dms.logic.namespace import as_list

    assert as_list("/demo/a") == ["/demo/a"]
    assert as_list({"/demo/a": "SE"}) == ["/demo/a"]
    with pytest.raises(InvalidArgumentError, match="must be a string, not list"):
        as_list([[[]]])
