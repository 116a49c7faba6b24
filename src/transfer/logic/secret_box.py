"""Secrets at rest: association passwords and private keys encrypted with the server's key.

The key file holds Fernet keys (AES-128-CBC + HMAC-SHA256, from ``cryptography``), one per
line, the newest first; it is created (mode 600) on first use when missing. Every secret is
encrypted with the newest key and decrypted with whichever key fits (``MultiFernet``), so a
rotation never makes a stored secret unreadable:

1. :func:`rotate_key` writes a new key in front of the old ones (atomic rename);
2. every stored secret is re-encrypted with it (``MultiFernet.rotate``);
3. the old keys are dropped from the file.

Servers and agents notice the file changed (its mtime) and reload it. A crash between the steps
leaves a file that still decrypts everything; running the rotation again finishes it.

Example::

    >>> import tempfile, pathlib
    >>> box = SecretBox(pathlib.Path(tempfile.mkdtemp()) / "keys")
    >>> token = box.encrypt("s3cret")
    >>> b"s3cret" in token, box.decrypt(token)
    (False, 's3cret')
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from transfer.errors import SecretKeyError


def _write_keys(path: Path, keys: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as stream:
        stream.write(b"".join(k + b"\n" for k in keys))
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(tmp, path)


class SecretBox:
    """Encrypt and decrypt with the keys of ``key_file`` (reloaded when the file changes)."""

    def __init__(self, key_file: Path) -> None:
        self.key_file = Path(key_file)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._fernet: MultiFernet | None = None

    def _ensure_file(self) -> None:
        if self.key_file.exists():
            return
        self.key_file.parent.mkdir(parents=True, exist_ok=True)
        try:  # O_EXCL: two processes creating it at once agree on one key
            fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        with os.fdopen(fd, "wb") as stream:
            stream.write(Fernet.generate_key() + b"\n")

    def keys(self) -> list[bytes]:
        self._ensure_file()
        try:
            lines = self.key_file.read_bytes().split()
        except OSError as exc:
            raise SecretKeyError(f"cannot read the secret key file {self.key_file}: "
                                 f"{exc.strerror}") from None
        if not lines:
            raise SecretKeyError(f"the secret key file {self.key_file} is empty")
        return lines

    def _current(self) -> MultiFernet:
        with self._lock:
            self._ensure_file()
            st = self.key_file.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if self._fernet is None or stamp != self._stamp:
                try:
                    self._fernet = MultiFernet([Fernet(k) for k in self.keys()])
                except ValueError:
                    raise SecretKeyError(f"{self.key_file}: not a list of Fernet keys") \
                        from None
                self._stamp = stamp
            return self._fernet

    def encrypt(self, secret: str) -> bytes:
        return self._current().encrypt(secret.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self._current().decrypt(bytes(token)).decode()
        except InvalidToken:
            raise SecretKeyError("a stored secret cannot be decrypted with the server's keys "
                                 "(was the key file replaced?)") from None

    def reencrypt(self, token: bytes) -> bytes:
        """``token`` encrypted again with the newest key."""
        try:
            return self._current().rotate(bytes(token))
        except InvalidToken:
            raise SecretKeyError("a stored secret cannot be decrypted with the server's keys")\
                from None

    def is_current(self, token: bytes, key: bytes) -> bool:
        """Whether ``token`` was encrypted with ``key``."""
        try:
            Fernet(key).decrypt(bytes(token))
        except InvalidToken:
            return False
        return True

    def add_new_key(self) -> None:
        """Step 1 of a rotation: a new key in front, the old ones kept."""
        keys = self.keys()
        _write_keys(self.key_file, [Fernet.generate_key(), *keys])
        self._stamp = None

    def drop_old_keys(self) -> None:
        """Step 3: keep only the newest key."""
        _write_keys(self.key_file, self.keys()[:1])
        self._stamp = None
