"""The catalog namespace over real HTTPS: bulk maps, files, replicas, directories, sizes."""

from __future__ import annotations

import pytest
import requests

from core.exceptions import InvalidArgumentError, NotFoundError
from core.rpc.jencode import encode
from tests.dms.service.conftest import Catalog, entry

HOME = "/demo/user/a/alice"


def test_add_and_get_replicas_bulk(catalog: Catalog) -> None:
    fc = catalog.client("alice")
    files = {f"{HOME}/data/f{i}": entry(size=i, guid=f"G-{i}") for i in range(50)}
    files[f"{HOME}/data/bad"] = {"Size": -1}
    files["relative/path"] = entry()
    result = fc.add_file(files)
    assert set(result.successful) == {f"{HOME}/data/f{i}" for i in range(50)}
    assert result.failed == {f"{HOME}/data/bad": "Size must not be negative",
                             "relative/path": "'relative/path' is not an absolute path"}
    reps = fc.get_replicas([f"{HOME}/data/f1", f"{HOME}/data/nope", f"{HOME}/data"])
    assert reps.successful == {f"{HOME}/data/f1": {"DISK-SE": ""}}
    assert reps.failed == {f"{HOME}/data/nope": "No such file or directory",
                           f"{HOME}/data": "Is a directory"}
    # re-adding the same file is fine; another GUID or size is not
    again = fc.add_file({f"{HOME}/data/f1": entry(size=1, guid="G-1"),
                         f"{HOME}/data/f2": entry(size=99, guid="G-2"),
                         f"{HOME}/data/x": entry(guid="G-3")})
    assert list(again.successful) == [f"{HOME}/data/f1"]
    assert again.failed == {
        f"{HOME}/data/f2": "File already registered with alternative metadata",
        f"{HOME}/data/x": "GUID already registered for another file"}


def test_dirac_wire_shape(catalog: Catalog) -> None:
    """A plain POST as DIRAC's client sends it gets DIRAC's envelope and bulk shape."""
    catalog.client("alice").add_file({f"{HOME}/w1": entry(guid="W1")})
    reply = requests.post(
        f"{catalog.server.url}/DataManagement/FileCatalog",
        data={"method": "getReplicas", "args": encode([[f"{HOME}/w1", f"{HOME}/w2"], True])},
        cert=(str(catalog.creds.alice[0]), str(catalog.creds.alice[1])),
        verify=str(catalog.creds.ca_dir), timeout=30).json()
    assert reply == {"OK": True, "Value": {
        "Successful": {f"{HOME}/w1": {"DISK-SE": ""}},
        "Failed": {f"{HOME}/w2": "No such file or directory"}}}


def test_replicas_and_sizes(catalog: Catalog) -> None:
    fc = catalog.client("alice")
    fc.add_file({f"{HOME}/s/a": entry(size=100, guid="A"),
                 f"{HOME}/s/sub/b": entry(size=20, guid="B", se="TAPE-SE"),
                 f"{HOME}/s/c": entry(size=3, guid="C", se=None)})
    added = fc.add_replica({f"{HOME}/s/a": {"SE": "TAPE-SE", "PFN": "root://x/a"},
                            f"{HOME}/s/zz": {"SE": "TAPE-SE"}})
    assert added.successful == {f"{HOME}/s/a": True}
    assert added.failed == {f"{HOME}/s/zz": "No such file or directory"}
    assert fc.get_replicas(f"{HOME}/s/a").successful[f"{HOME}/s/a"] == {
        "DISK-SE": "", "TAPE-SE": "root://x/a"}
    size = fc.get_directory_size(f"{HOME}/s", long_output=True).successful[f"{HOME}/s"]
    assert size == {"LogicalSize": 123, "LogicalFiles": 3, "LogicalDirectories": 1,
                    "PhysicalSize": {"DISK-SE": {"Size": 100, "Files": 1},
                                     "TAPE-SE": {"Size": 120, "Files": 2},
                                     "TotalSize": 220, "TotalFiles": 3}}
    assert fc.get_storage_usage(HOME) == {"DISK-SE": {"Size": 100, "Files": 1},
                                          "TAPE-SE": {"Size": 120, "Files": 2}}
    assert fc.remove_replica({f"{HOME}/s/a": {"SE": "DISK-SE"}}).failed == {}
    assert fc.remove_file([f"{HOME}/s/sub/b", f"{HOME}/s/never"]).failed == {}
    size = fc.get_directory_size(f"{HOME}/s", long_output=True).successful[f"{HOME}/s"]
    assert size["LogicalSize"] == 103 and size["LogicalFiles"] == 2
    assert size["PhysicalSize"] == {"TAPE-SE": {"Size": 100, "Files": 1},
                                    "TotalSize": 100, "TotalFiles": 1}
    dirs = fc.get_directory_replicas(f"{HOME}/s").successful[f"{HOME}/s"]
    assert dirs == {f"{HOME}/s/a": {"TAPE-SE": "root://x/a"}, f"{HOME}/s/c": {}}
    marked = fc.set_replica_status({f"{HOME}/s/a": {"SE": "TAPE-SE", "Status": "Problematic"},
                                    f"{HOME}/s/c": {"SE": "TAPE-SE", "Status": "Trash"}})
    assert marked.failed == {f"{HOME}/s/c": "No replica at TAPE-SE"}
    assert fc.get_replicas(f"{HOME}/s/a").successful == {f"{HOME}/s/a": {}}
    assert fc.get_replicas(f"{HOME}/s/a", all_status=True).successful == {f"{HOME}/s/a": {
        "TAPE-SE": "root://x/a"}}


def test_directories_and_listing(catalog: Catalog) -> None:
    fc = catalog.client("alice")
    made = fc.create_directory([f"{HOME}/d1/d2", f"{HOME}/d3"])
    assert made.failed == {} and len(made.successful) == 2
    fc.add_file({f"{HOME}/d1/f": entry(size=7, guid="F")})
    checks = [f"{HOME}/d1", f"{HOME}/d1/f", f"{HOME}/none"]
    assert fc.exists(checks).successful == {f"{HOME}/d1": True, f"{HOME}/d1/f": True,
                                            f"{HOME}/none": False}
    assert fc.is_directory(checks[:2]).successful == {f"{HOME}/d1": True,
                                                      f"{HOME}/d1/f": False}
    assert fc.is_file(checks).failed == {f"{HOME}/none": "No such file or directory"}
    listing = fc.list_directory(f"{HOME}/d1", verbose=True).successful[f"{HOME}/d1"]
    assert list(listing["SubDirs"]) == [f"{HOME}/d1/d2"]
    meta = listing["Files"][f"{HOME}/d1/f"]["MetaData"]
    assert (meta["Size"], meta["Owner"], meta["OwnerGroup"], meta["Mode"]) == (
        7, "alice", "demo_user", 0o644)
    assert listing["Files"][f"{HOME}/d1/f"]["Replicas"] == {"DISK-SE": ""}
    home = fc.get_directory_metadata(HOME).successful[HOME]
    assert (home["Owner"], home["OwnerGroup"], home["Mode"]) == ("alice", "demo_user", 0o755)
    vo_root = fc.get_directory_metadata("/demo").successful["/demo"]
    assert (vo_root["Owner"], vo_root["Mode"]) == ("demo", 0o755)
    clash = fc.add_file({f"{HOME}/d1/f/g": entry(guid="FG")})
    assert clash.failed == {f"{HOME}/d1/f/g": "Not a directory"}
    assert fc.create_directory(f"{HOME}/d1/f/h").failed == {f"{HOME}/d1/f/h": "Not a directory"}
    assert fc.add_file({f"{HOME}/d1/d2": entry(guid="D2")}).failed == {
        f"{HOME}/d1/d2": "Is a directory"}
    removed = fc.remove_directory([f"{HOME}/d1", f"{HOME}/d3", f"{HOME}/d1/f"])
    assert removed.successful == {f"{HOME}/d3": True}
    assert removed.failed == {f"{HOME}/d1": "Directory not empty",
                              f"{HOME}/d1/f": "Not a directory"}
    meta = fc.get_file_metadata(f"{HOME}/d1/f").successful[f"{HOME}/d1/f"]
    assert meta["Checksum"] == "0a0b0c0d" and meta["ChecksumType"] == "ADLER32"
    assert meta["GUID"] == "F" and meta["CreationDate"].tzinfo is not None


def test_bad_arguments(catalog: Catalog) -> None:
    rpc = catalog.rpc("alice")
    with pytest.raises(InvalidArgumentError):
        rpc.call("addFile", "not-a-dict")
    with pytest.raises(NotFoundError):
        rpc.call("setMetadata", HOME, {"nofield": 1})
    catalog.client("alice").create_directory(HOME)
    with pytest.raises(InvalidArgumentError):
        rpc.call("setMetadata", HOME, {"nofield": 1})
