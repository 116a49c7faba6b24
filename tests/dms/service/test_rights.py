"""Rights through real RPC calls with different users' credentials: nobody reads or writes
where they should not, owners and administrators can."""

from __future__ import annotations

import pytest

from core.exceptions import InvalidArgumentError, NotAuthorizedError
from tests.dms.service.conftest import Catalog, entry

ALICE = "/demo/user/a/alice"
BOB = "/demo/user/b/bob"
DENIED = "Permission denied"


def test_homes_and_vo_areas(catalog: Catalog) -> None:
    alice, bob = catalog.client("alice"), catalog.client("bob")
    assert alice.create_directory(f"{ALICE}/x").failed == {}
    # bob cannot write in alice's home, nor in the VO areas, nor at the root
    for path in (f"{ALICE}/bobs", "/demo/shared", "/demo/user/a/anna", "/elsewhere"):
        assert bob.create_directory(path).failed == {path: DENIED}
    assert bob.add_file({f"{ALICE}/x/f": entry(guid="BX")}).failed == {f"{ALICE}/x/f": DENIED}
    # ... but in his own home, created on demand
    assert bob.add_file({f"{BOB}/f": entry(guid="BF")}).failed == {}
    meta = bob.get_directory_metadata(BOB).successful[BOB]
    assert (meta["Owner"], meta["OwnerGroup"]) == ("bob", "demo_user")
    # the admin writes anywhere
    admin = catalog.client("admin")
    assert admin.create_directory("/demo/shared").failed == {}
    assert admin.get_directory_metadata("/demo/shared").successful["/demo/shared"][
        "Owner"] == "admin"


def test_modes_protect_reads(catalog: Catalog) -> None:
    alice, bob, admin = (catalog.client(w) for w in ("alice", "bob", "admin"))
    alice.add_file({f"{ALICE}/priv/f": entry(guid="P1"), f"{ALICE}/pub/g": entry(guid="P2")})
    # world-readable by default
    assert bob.get_replicas(f"{ALICE}/pub/g").failed == {}
    assert alice.change_path_mode({f"{ALICE}/priv": 0o700}).failed == {}
    probes = [f"{ALICE}/priv/f"]
    assert bob.get_replicas(probes).failed == {probes[0]: DENIED}
    assert bob.get_file_metadata(probes).failed == {probes[0]: DENIED}
    assert bob.list_directory(f"{ALICE}/priv").failed == {f"{ALICE}/priv": DENIED}
    assert bob.exists(probes).failed == {probes[0]: DENIED}
    assert bob.remove_file(probes).failed == {probes[0]: DENIED}
    assert bob.find_files_by_metadata({"Size": {">=": 0}}, ALICE) == [f"{ALICE}/pub/g"]
    assert alice.find_files_by_metadata({"Size": {">=": 0}}, ALICE) == [
        f"{ALICE}/priv/f", f"{ALICE}/pub/g"]
    assert admin.get_replicas(probes).failed == {}
    # a file's own mode protects it too
    assert alice.change_path_mode({f"{ALICE}/pub/g": "600"}).failed == {}
    assert bob.get_replicas(f"{ALICE}/pub/g").failed == {f"{ALICE}/pub/g": DENIED}
    assert bob.find_files_by_metadata({"Size": {">=": 0}}, ALICE) == []
    assert alice.find_files_by_metadata({"Size": {">=": 0}}, ALICE) == [
        f"{ALICE}/priv/f", f"{ALICE}/pub/g"]
    assert bob.add_replica({f"{ALICE}/pub/g": {"SE": "X"}}).failed == {
        f"{ALICE}/pub/g": DENIED}
    assert bob.remove_replica({f"{ALICE}/pub/g": {"SE": "DISK-SE"}}).failed == {
        f"{ALICE}/pub/g": DENIED}
    usage = bob.get_directory_size(f"{ALICE}/priv").failed
    assert usage == {}  # sizes are visible where the directory is reachable


def test_group_bits_and_chgrp(catalog: Catalog) -> None:
    alice, bob, alice2 = (catalog.client(w) for w in ("alice", "bob", "alice2"))
    alice.create_directory(f"{ALICE}/team")
    # only the owner or an admin changes groups and modes; owners only to their own groups
    assert bob.change_path_mode({f"{ALICE}/team": 0o777}).failed == {f"{ALICE}/team": DENIED}
    assert alice.change_path_group({f"{ALICE}/team": "dm_admin"}).failed == {
        f"{ALICE}/team": DENIED}
    assert alice.change_path_group({f"{ALICE}/team": "demo_analysis"}).failed == {}
    assert alice.change_path_mode({f"{ALICE}/team": 0o770}).failed == {}
    # bob in group demo_guest: other bits (none); a member of demo_analysis writes
    assert bob.create_directory(f"{ALICE}/team/b").failed == {f"{ALICE}/team/b": DENIED}
    assert alice2.create_directory(f"{ALICE}/team/a2").failed == {}
    # chown is for administrators only
    assert alice.change_path_owner({f"{ALICE}/team": "bob"}).failed == {
        f"{ALICE}/team": DENIED}
    admin = catalog.client("admin")
    assert admin.change_path_owner({f"{ALICE}/team": "bob"}, recursive=True).failed == {}
    listing = admin.list_directory(f"{ALICE}/team", verbose=True).successful[f"{ALICE}/team"]
    assert listing["SubDirs"][f"{ALICE}/team/a2"]["Owner"] == "bob"
    assert bob.create_directory(f"{ALICE}/team/b").failed == {}


def test_metadata_rights(catalog: Catalog) -> None:
    alice, bob, admin = (catalog.client(w) for w in ("alice", "bob", "admin"))
    with pytest.raises(NotAuthorizedError):
        alice.add_metadata_field("run", "int")
    assert admin.add_metadata_field("run", "int") == "Added new metadata: run"
    alice.create_directory(f"{ALICE}/m")
    with pytest.raises(NotAuthorizedError):
        bob.set_metadata(f"{ALICE}/m", {"run": 1})
    alice.set_metadata(f"{ALICE}/m", {"run": 1})
    assert bob.get_user_metadata(f"{ALICE}/m") == {"run": 1}
    with pytest.raises(InvalidArgumentError):
        alice.set_metadata(f"{ALICE}/m", {"run": "one"})
    assert bob.remove_metadata({f"{ALICE}/m": ["run"]}).failed == {f"{ALICE}/m": DENIED}
