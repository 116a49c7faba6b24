"""The disk SE's rules without the server: confined paths (also through symbolic links),
who may read and write what, streamed writes that become files only when whole and right."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

from core.security.identity import Identity
from dms.logic import se_store
from dms.storage.base import (
    ChecksumMismatchError,
    FileTooBigError,
    StorageError,
    StorageFileNotFoundError,
    UnsafePathError,
)


def who(user: str = "alice", vo: str = "demo", *props: str) -> Identity:
    return Identity(auth_method="x509", username=user, group="g", vo=vo, valid_dn=True,
                    valid_group=True, properties=frozenset(props))


def adler(data: bytes) -> str:
    return f"{zlib.adler32(data):08x}"


@pytest.mark.parametrize("lfn", ["/demo/../x", "/demo//x", "/demo/./x", "demo/x", "/a\0b"])
def test_unsafe_paths_are_refused(tmp_path: Path, lfn: str) -> None:
    with pytest.raises((UnsafePathError, StorageError)):
        se_store.confined(tmp_path, lfn)


def test_symlinks_out_of_the_se_are_refused(tmp_path: Path) -> None:
    base, outside = tmp_path / "se", tmp_path / "outside"
    (base / "demo").mkdir(parents=True)
    outside.mkdir()
    os.symlink(outside, base / "demo" / "escape")
    with pytest.raises(UnsafePathError, match="leads outside"):
        se_store.confined(base, "/demo/escape/f")
    assert se_store.confined(base, "/demo/inside") == base / "demo" / "inside"


def test_rights() -> None:
    alice, bob = who("alice"), who("bob")
    prod, host = who("prod", "demo", "ProductionManagement"), who("h", "", "TrustedHost")
    home = "/demo/user/a/alice/f"
    assert se_store.may_read(alice, "/demo/any/f") and se_store.may_read(bob, home)
    assert not se_store.may_read(alice, "/other/f")
    assert se_store.may_write(alice, home) and not se_store.may_write(bob, home)
    assert not se_store.may_write(alice, "/demo/user/a/alice")  # the home itself: no
    assert se_store.may_write(prod, "/demo/data/f") and not se_store.may_write(prod, "/x/f")
    assert se_store.may_write(host, "/other/f") and se_store.may_read(host, "/other/f")
    assert not se_store.may_write(alice, home, ["atlas"])  # the SE takes other VOs only
    assert not se_store.may_write(host, "/demo/f", ["atlas"])
    anonymous = Identity()
    assert not se_store.may_read(anonymous, home) and not se_store.may_write(anonymous, home)


def test_writes_become_files_only_when_whole_and_right(tmp_path: Path) -> None:
    data = os.urandom(100_000)
    target = se_store.confined(tmp_path, "/demo/user/a/alice/f")

    def leftovers() -> list[str]:
        return sorted(p.name for p in tmp_path.rglob("*") if p.is_file())

    # declared checksum missing / wrong / size wrong / too big: nothing stays
    with pytest.raises(Exception, match="X-Checksum-Adler32"):
        se_store.Writer(target, expected_size=None, expected_checksum=None)
    w = se_store.Writer(target, expected_size=len(data), expected_checksum="00000001")
    w.write(data)
    with pytest.raises(ChecksumMismatchError):
        w.finish()
    w = se_store.Writer(target, expected_size=len(data) + 1, expected_checksum=adler(data))
    w.write(data)
    with pytest.raises(StorageError, match="expected"):
        w.finish()
    with pytest.raises(FileTooBigError):
        se_store.Writer(target, expected_size=10, expected_checksum=adler(data), max_bytes=5)
    w = se_store.Writer(target, expected_size=None, expected_checksum=adler(data),
                        max_bytes=50_000)
    with pytest.raises(FileTooBigError):
        w.write(data)
    w = se_store.Writer(target, expected_size=None, expected_checksum=adler(data))
    w.write(data[:10])
    w.abort()  # a client gone mid-upload
    assert leftovers() == []
    # the right bytes: the file appears, stat and listing see it, removal is idempotent
    w = se_store.Writer(target, expected_size=len(data), expected_checksum=adler(data).upper())
    for start in range(0, len(data), 30_000):
        w.write(data[start:start + 30_000])
    info = w.finish()
    assert (info.size, info.checksum) == (len(data), adler(data))
    assert target.read_bytes() == data and leftovers() == ["f"]
    assert se_store.stat(tmp_path, "/demo/user/a/alice/f") == info
    [entry] = se_store.listing(tmp_path, "/demo/user/a/alice")
    assert (entry.name, entry.size, entry.is_dir) == ("f", len(data), False)
    assert [e.name for e in se_store.listing(tmp_path, "/demo/user")] == ["a"]
    with pytest.raises(StorageFileNotFoundError):
        se_store.listing(tmp_path, "/demo/none")
    with pytest.raises(StorageError, match="is a directory"):
        se_store.remove(tmp_path, "/demo/user")
    assert se_store.remove(tmp_path, "/demo/user/a/alice/f")
    assert not se_store.remove(tmp_path, "/demo/user/a/alice/f")
    with pytest.raises(StorageFileNotFoundError):
        se_store.stat(tmp_path, "/demo/user/a/alice/f")
