"""The ``XROOT`` plugin: an xrootd server, driven with the ``xrdcp``/``xrdfs`` client tools.

Debian's ``xrootd-client`` package provides the tools (the Python bindings exist too, but the
tools keep this module free of a compiled dependency). Every transfer is verified end to end:
uploads with ``xrdcp --cksum adler32:<expected> --rm-bad-cksum`` (the server computes the
adler32 of what it stored; a mismatch removes the target), downloads go to a temp file that is
hashed locally and renamed only when it matches. The client's retry settings are shortened
(``XRD_CONNECTIONRETRY`` etc.) so a dead server fails in seconds, not minutes.

Example::

    se = XRootDStorage("DEMO-XRD", host="127.0.0.1", port=1094, base_path="/data")
    se.put("/demo/user/a/alice/f1", Path("f1"))      # FileInfo(size=..., checksum='...')
    se.url("/demo/user/a/alice/f1")                   # 'root://127.0.0.1:1094//data/demo/...'
"""

from __future__ import annotations

import os
import posixpath
import subprocess
import tempfile
from pathlib import Path

from dms.storage.base import (
    ChecksumMismatchError,
    Entry,
    FileInfo,
    Progress,
    StorageError,
    StorageFileNotFoundError,
    StoragePlugin,
    StorageUnavailableError,
    adler32_file,
    normalise_checksum,
    se_relative,
    verify,
)

CLIENT_ENV = {"XRD_CONNECTIONWINDOW": "3", "XRD_CONNECTIONRETRY": "2",
              "XRD_REQUESTTIMEOUT": "60", "XRD_STREAMTIMEOUT": "60"}
#: seconds a single xrdcp/xrdfs call may take at most
TIMEOUT = 3600.0


class XRootDStorage(StoragePlugin):
    name = "XROOT"

    def __init__(self, se_name: str, host: str, port: int | None, base_path: str) -> None:
        super().__init__(se_name)
        self.endpoint = f"root://{host}:{port or 1094}"
        self.base = base_path.rstrip("/")

    def remote_path(self, path: str) -> str:
        rel = se_relative(path)
        return posixpath.join(self.base or "/", rel) if rel else (self.base or "/")

    def url(self, path: str) -> str:
        return f"{self.endpoint}/{self.remote_path(path)}"

    # -- running the tools -----------------------------------------------------------------

    def _run(self, args: list[str], what: str) -> str:
        env = dict(os.environ)
        for key, value in CLIENT_ENV.items():
            env.setdefault(key, value)
        try:
            proc = subprocess.run(  # noqa: S603 - argument list, no shell
                args, capture_output=True, text=True, env=env, timeout=TIMEOUT, check=False)
        except FileNotFoundError:
            raise StorageError(f"{args[0]} not found: install xrootd-client") from None
        except subprocess.TimeoutExpired:
            raise StorageUnavailableError(f"{self.se_name}: {what} timed out") from None
        if proc.returncode == 0:
            return proc.stdout
        message = (proc.stderr.strip() or proc.stdout.strip()).replace("\0", "")
        text = message.lower()
        if "connection" in text and ("error" in text or "refused" in text):
            raise StorageUnavailableError(f"{self.se_name}: {what}: {message}")
        if "[3011]" in text or "no such file" in text:
            raise StorageFileNotFoundError(f"{self.se_name}: {what}: no such file")
        if "checksum" in text:
            raise ChecksumMismatchError(f"{self.se_name}: {what}: {message}")
        raise StorageError(f"{self.se_name}: {what}: {message}")

    def _xrdfs(self, *args: str) -> str:
        return self._run(["xrdfs", self.endpoint, *args], f"{args[0]} {args[-1]}")

    # -- the interface ---------------------------------------------------------------------

    def put(self, path: str, source: Path, *, checksum: str | None = None,
            progress: Progress | None = None) -> FileInfo:
        local = adler32_file(source)
        verify(checksum, local, f"local file {source}")
        self._run(["xrdcp", "--force", "--nopbar", "--path", "--cksum",
                   f"adler32:{local.checksum}", "--rm-bad-cksum", str(source), self.url(path)],
                  f"upload {path}")
        if progress is not None:
            progress(local.size)
        return local

    def get(self, path: str, dest: Path, *, checksum: str | None = None,
            progress: Progress | None = None) -> FileInfo:
        expected = normalise_checksum(checksum) if checksum else self.checksum(path)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part",
                                        dir=dest.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            self._run(["xrdcp", "--force", "--nopbar", self.url(path), str(tmp)],
                      f"download {path}")
            info = adler32_file(tmp)
            verify(expected, info, f"{self.se_name}:{path} as received")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        if progress is not None:
            progress(info.size)
        return info

    def remove(self, path: str) -> bool:
        try:
            self._xrdfs("rm", self.remote_path(path))
        except StorageFileNotFoundError:
            return False
        return True

    def size(self, path: str) -> int:
        out = self._xrdfs("stat", self.remote_path(path))
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        if "IsDir" in fields.get("Flags", ""):
            raise StorageError(f"{self.se_name}: {path} is a directory")
        try:
            return int(fields["Size"].strip())
        except (KeyError, ValueError):
            raise StorageError(f"{self.se_name}: unexpected stat output {out!r}") from None

    def checksum(self, path: str) -> str:
        out = self._xrdfs("query", "checksum", self.remote_path(path)).split()
        if len(out) < 2 or out[0] != "adler32":
            raise StorageError(f"{self.se_name}: unexpected checksum reply {out!r}")
        return normalise_checksum(out[1])

    def stat(self, path: str) -> FileInfo:
        return FileInfo(self.size(path), self.checksum(path))

    def exists(self, path: str) -> bool:
        try:
            self._xrdfs("stat", self.remote_path(path))
        except StorageFileNotFoundError:
            return False
        return True

    def list(self, path: str) -> list[Entry]:
        out = self._xrdfs("ls", "-l", self.remote_path(path))
        entries = []
        for line in out.splitlines():
            parts = line.split(None, 6)
            if len(parts) < 7:
                continue
            mode, size, full = parts[0], parts[3], parts[6]
            entries.append(Entry(posixpath.basename(full), int(size) if size.isdigit() else 0,
                                 mode.startswith("d")))
        return sorted(entries, key=lambda e: e.name)
