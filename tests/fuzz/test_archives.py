"""Hostile sandbox archives (issue 16): every extraction path refuses them with a clear error
and writes nothing outside its directory.

Extraction paths: :func:`pilot.archive.extract` itself (the pilot's input sandboxes),
``wms.sandbox_client.unpack`` (``doutput``, the Python client) and ``wms.logic.push.unpack``
(the push agent reading a worker node's job directory). The server's sandbox store keeps
archives as opaque files and never extracts them.
"""

from __future__ import annotations

import base64
import bz2
import errno
import io
import lzma
import os
import tarfile
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.exceptions import InvalidArgumentError
from pilot.archive import UnsafeArchiveError, extract
from tests.fuzz.strategies import fuzz_settings
from wms.logic.push import unpack as push_unpack
from wms.sandbox_client import unpack as client_unpack

MiB = 1024 * 1024


def make_tar(members: list[tuple[str, str, Any]], compression: str = "gz") -> bytes:
    """``(name, kind, payload)``: kind file (bytes), dir, sym/hard (link target), chr, blk,
    fifo."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compression}" if compression else "w") as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            data = None
            if kind == "file":
                info.size = len(payload)
                data = io.BytesIO(payload)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind in ("sym", "hard"):
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = payload
            else:
                info.type = {"chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE,
                             "fifo": tarfile.FIFOTYPE}[kind]
                info.devmajor, info.devminor = 1, 3
            info.mode = 0o4777 if kind == "file" else 0o755
            tar.addfile(info, data)
    return buf.getvalue()


def _client(data: bytes, dest: Path) -> None:
    client_unpack(io.BytesIO(data), dest)


def _push(data: bytes, dest: Path) -> None:
    push_unpack(base64.b64encode(data).decode(), str(dest))


def _pilot(data: bytes, dest: Path) -> None:
    extract(data, str(dest))


EXTRACTORS: dict[str, Callable[[bytes, Path], None]] = {
    "pilot": _pilot, "client": _client, "push": _push}
REFUSED = (UnsafeArchiveError, InvalidArgumentError)


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def area(tmp_path: Path) -> tuple[Path, Path]:
    """A sandbox directory inside an area whose other content must not change."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "victim").write_text("keep")
    return tmp_path, tmp_path / "sandbox"


HOSTILE = {
    "dot-dot": [("../evil", "file", b"x")],
    "nested dot-dot": [("a/b/../../../evil", "file", b"x")],
    "absolute": [("/tmp/evil-abs", "file", b"x")],
    "backslash absolute": [("\\evil", "file", b"x")],
    "symlink absolute": [("link", "sym", "/etc/passwd")],
    "symlink up": [("link", "sym", "../outside/victim")],
    "symlink chain up": [("sub", "dir", None), ("sub/s", "sym", ".."),
                         ("t", "sym", "sub/s/..")],
    "symlink then write through": [("link", "sym", "../outside"),
                                   ("link/victim", "file", b"pwned")],
    "hard link absolute": [("hard", "hard", "/etc/passwd")],
    "hard link up": [("hard", "hard", "../outside/victim")],
    "hard link to nothing here": [("hard", "hard", "missing")],
    "character device": [("null", "chr", None)],
    "block device": [("disk", "blk", None)],
    "fifo": [("pipe", "fifo", None)],
    "link replacing a file": [("f", "file", b"x"), ("f", "sym", "g")],
    # found by test_any_archive_stays_inside: IsADirectoryError / NotADirectoryError escaped
    "file named dot": [(".", "file", b"x")],
    "file then a path through it": [("a", "file", b"x"), ("a/b", "file", b"y")],
}


@pytest.mark.parametrize("how", sorted(EXTRACTORS))
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_members_are_refused(area: tuple[Path, Path], case: str, how: str) -> None:
    base, dest = area
    before = snapshot(base / "outside")
    with pytest.raises(REFUSED) as refused:
        EXTRACTORS[how](make_tar(HOSTILE[case]), dest)
    assert "sandbox" in str(refused.value)
    assert snapshot(base / "outside") == before
    assert (base / "outside" / "victim").read_text() == "keep"
    assert not (base / "evil").exists() and not Path("/tmp/evil-abs").exists()
    for path in dest.rglob("*") if dest.exists() else []:
        if path.is_symlink():
            assert os.path.realpath(path).startswith(str(dest.resolve()))


def test_existing_symlink_in_the_directory_is_not_followed_out(area: tuple[Path, Path]
                                                               ) -> None:
    base, dest = area
    dest.mkdir()
    (dest / "out").symlink_to(base / "outside")
    with pytest.raises(UnsafeArchiveError, match="leads outside"):
        extract(make_tar([("out/victim", "file", b"pwned")]), str(dest))
    assert (base / "outside" / "victim").read_text() == "keep"


@pytest.mark.parametrize("how", sorted(EXTRACTORS))
def test_safe_archive_with_inner_links(tmp_path: Path, how: str) -> None:
    data = make_tar([("d", "dir", None), ("d/f", "file", b"data"), ("d/s", "sym", "f"),
                     ("h", "hard", "d/f"), ("top", "sym", "d")])
    EXTRACTORS[how](data, tmp_path / "sb")
    assert (tmp_path / "sb" / "d" / "s").read_text() == "data"
    assert (tmp_path / "sb" / "h").read_text() == "data"
    assert (tmp_path / "sb" / "top" / "f").read_text() == "data"
    mode = (tmp_path / "sb" / "d" / "f").stat().st_mode
    assert not mode & 0o7000 and not mode & 0o022      # no set-uid, not group/world-writable


@pytest.mark.parametrize("compression", ["gz", "bz2", "xz", ""])
def test_decompression_bomb_stops_at_the_limit(tmp_path: Path, compression: str) -> None:
    """64 MiB of zeros (a few tens of kB compressed) against a 4 MiB limit: refused while
    decompressing, with memory bounded by the 1 MiB read size."""
    zeros = b"\0" * (64 * MiB)
    payload = make_tar([("zeros", "file", zeros)], compression)
    del zeros
    if compression:
        assert len(payload) < 2 * MiB
    tracemalloc.start()
    try:
        with pytest.raises(UnsafeArchiveError, match="more than 4194304 bytes"):
            extract(payload, str(tmp_path / "sb"), max_bytes=4 * MiB)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * MiB
    written = sum(p.stat().st_size for p in (tmp_path / "sb").rglob("*") if p.is_file())
    assert written <= 4 * MiB


def test_member_count_bomb(tmp_path: Path) -> None:
    data = make_tar([(f"f{i}", "file", b"") for i in range(300)])
    with pytest.raises(UnsafeArchiveError, match="more than 100 members"):
        extract(data, str(tmp_path / "sb"), max_members=100)


def test_pax_header_bomb(tmp_path: Path) -> None:
    """A PAX record of 64 MiB is never read whole into memory: the stream limit stops it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("f")
        info.pax_headers = {"comment": "x" * (64 * MiB)}
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(UnsafeArchiveError, match="more than"):
        extract(buf.getvalue(), str(tmp_path / "sb"), max_bytes=4 * MiB)


@pytest.mark.parametrize("data", [
    b"", b"not an archive at all", b"\x1f\x8b\x08\x00garbage", b"BZh9garbage",
    b"\xfd7zXZ\x00garbage", zlib.compress(b"x" * 100), bz2.compress(b"y" * 1000),
    lzma.compress(b"z" * 10), b"\x1f\x8b" + b"\x00" * 5000,
])
def test_garbage_is_a_clear_error(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(UnsafeArchiveError, match="sandbox"):
        extract(data, str(tmp_path / "sb"))


def test_truncated_archive(tmp_path: Path) -> None:
    data = make_tar([("f", "file", os.urandom(200_000))])
    with pytest.raises(UnsafeArchiveError, match="sandbox"):
        extract(data[: len(data) // 2], str(tmp_path / "sb"))


# -- property: any archive is extracted inside or refused cleanly --------------------------------

names = st.lists(st.sampled_from(["a", "b", "..", ".", "", "/", "\\", "c d", "é", "x\x00"]),
                 min_size=1, max_size=4).map("/".join)
members = st.lists(st.tuples(
    names, st.sampled_from(["file", "file", "dir", "sym", "hard", "fifo", "chr"]),
    st.one_of(st.binary(max_size=64), names)), max_size=8)


@fuzz_settings(scale=8)
@given(spec=members, compression=st.sampled_from(["gz", "bz2", ""]))
def test_any_archive_stays_inside(tmp_path_factory: pytest.TempPathFactory,
                                  spec: list[tuple[str, str, Any]], compression: str) -> None:
    base = tmp_path_factory.mktemp("prop")
    (base / "outside").mkdir()
    dest = base / "sandbox"
    fixed = []
    for name, kind, payload in spec:
        if kind == "file" and not isinstance(payload, bytes):
            payload = payload.encode("utf-8", "surrogateescape")
        if kind in ("sym", "hard") and isinstance(payload, bytes):
            payload = payload.decode("latin-1")
        fixed.append((name, kind, payload))
    try:
        data = make_tar(fixed, compression)
    except (ValueError, UnicodeError):
        return  # tarfile itself cannot write such a member
    try:
        extract(data, str(dest))
    except UnsafeArchiveError:
        pass
    assert not any((base / "outside").iterdir())
    assert sorted(p.name for p in base.iterdir()) in (["outside"], ["outside", "sandbox"])
    root = str(dest.resolve())
    for path in dest.rglob("*") if dest.exists() else []:
        real = os.path.realpath(path)
        inside = real == root or real.startswith(root + os.sep)
        assert inside or _loops(path), (path, real)


def _loops(path: Path) -> bool:
    """A symbolic link the kernel cannot follow (ELOOP) leads nowhere, so not outside.
    (Python 3.11's non-strict ``realpath`` of ``a -> a//a`` answers ``/a``.)"""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def test_a_link_loop_is_not_taken_for_an_escape(tmp_path: Path) -> None:
    """The case hypothesis found: a member ``a`` linking to ``a//a`` (downward, so allowed)
    is extracted, and the check above does not call it an escape."""
    dest = tmp_path / "sandbox"
    extract(make_tar([("a", "sym", "a//a")], "gz"), str(dest))
    link = dest / "a"
    assert os.readlink(link) == "a//a"
    assert _loops(link)
    assert not _loops(tmp_path)
