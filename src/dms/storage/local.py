"""The ``File`` plugin: a storage element on a local (or locally mounted, shared) file system.

Files live at ``<Path>/<lfn>``. Writes go to a hidden temp file in the target directory, are
hashed while copied, verified and then renamed, so a reader never sees half a file.

Example::

    >>> import tempfile, pathlib
    >>> base = pathlib.Path(tempfile.mkdtemp())
    >>> (base / "in.txt").write_bytes(b"hello")
    5
    >>> se = LocalStorage("LOCAL", str(base / "se"))
    >>> se.put("/demo/f", base / "in.txt").checksum
    '062c0215'
    >>> se.url("/demo/f") == f"file://{base}/se/demo/f"
    True
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from dms.storage.base import (
    CHUNK,
    Adler32,
    Entry,
    FileInfo,
    Progress,
    StorageError,
    StorageFileNotFoundError,
    StoragePlugin,
    adler32_file,
    se_relative,
    verify,
)


def copy_hashed(source: Path, dest: Path, progress: Progress | None = None,
                expected: str | None = None, what: str = "") -> FileInfo:
    """Copy ``source`` to ``dest`` atomically (temp file + rename), hashing on the way; when
    ``expected`` is given and differs, nothing is left at ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = Adler32()
    try:
        with open(source, "rb") as src, os.fdopen(fd, "wb") as out:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                out.write(chunk)
                digest.update(chunk)
                if progress is not None:
                    progress(digest.size)
        info = FileInfo(digest.size, digest.hexdigest())
        verify(expected, info, what or str(dest))
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return info


class LocalStorage(StoragePlugin):
    name = "File"

    def __init__(self, se_name: str, base_path: str) -> None:
        super().__init__(se_name)
        self.base = Path(base_path)

    def local_path(self, path: str) -> Path:
        return self.base / se_relative(path)

    def put(self, path: str, source: Path, *, checksum: str | None = None,
            progress: Progress | None = None) -> FileInfo:
        dest = self.local_path(path)
        try:
            return copy_hashed(Path(source), dest, progress, checksum, f"{self.se_name}:{path}")
        except FileNotFoundError:
            raise StorageError(f"{source}: no such local file") from None
        except OSError as exc:
            raise StorageError(f"{self.se_name}: cannot write {path}: {exc.strerror}") from None

    def get(self, path: str, dest: Path, *, checksum: str | None = None,
            progress: Progress | None = None) -> FileInfo:
        src = self.local_path(path)
        if not src.is_file():
            raise StorageFileNotFoundError(f"{self.se_name}: no file {path}")
        try:
            return copy_hashed(src, Path(dest), progress, checksum, f"{self.se_name}:{path}")
        except OSError as exc:
            raise StorageError(f"{self.se_name}: cannot read {path}: {exc.strerror}") from None

    def remove(self, path: str) -> bool:
        target = self.local_path(path)
        if target.is_dir():
            raise StorageError(f"{self.se_name}: {path} is a directory")
        try:
            target.unlink()
        except FileNotFoundError:
            return False
        return True

    def stat(self, path: str) -> FileInfo:
        target = self.local_path(path)
        if not target.is_file():
            raise StorageFileNotFoundError(f"{self.se_name}: no file {path}")
        return adler32_file(target)

    def exists(self, path: str) -> bool:
        return self.local_path(path).is_file()

    def size(self, path: str) -> int:
        target = self.local_path(path)
        if not target.is_file():
            raise StorageFileNotFoundError(f"{self.se_name}: no file {path}")
        return target.stat().st_size

    def list(self, path: str) -> list[Entry]:
        target = self.local_path(path)
        if not target.is_dir():
            raise StorageFileNotFoundError(f"{self.se_name}: no directory {path}")
        return sorted(
            (Entry(p.name, p.stat().st_size if p.is_file() else 0, p.is_dir())
             for p in target.iterdir() if not p.name.startswith(".")),
            key=lambda e: e.name)

    def url(self, path: str) -> str:
        return self.local_path(path).as_uri()
