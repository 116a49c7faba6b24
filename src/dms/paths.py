"""Logical file names (LFNs): normalisation and the parts of a path. Pure functions.

An LFN is an absolute POSIX-like path (``/vo/user/a/alice/data/f1.root``): no empty components
(``//``), no ``.`` or ``..``, no trailing slash (except ``/`` itself), no NUL or newline, at
most 1024 characters and 255 per component. ``LFN:`` prefixes (JDL style) are stripped.

Example::

    >>> normalise_lfn("LFN:/demo/user/a/alice/f1")
    '/demo/user/a/alice/f1'
    >>> parent_of("/demo/user"), name_of("/demo/user"), ancestors("/demo/user/a")
    ('/demo', 'user', ['/', '/demo', '/demo/user'])
    >>> home_of("demo", "alice")
    '/demo/user/a/alice'
"""

from __future__ import annotations

MAX_PATH = 1024
MAX_NAME = 255


def normalise_lfn(path: str) -> str:
    """``path`` as a canonical LFN; ValueError with the reason when it is not one."""
    if not isinstance(path, str):
        raise TypeError(f"an LFN is a string, not {type(path).__name__}")
    if path[:4].lower() == "lfn:":
        path = path[4:]
    if not path.startswith("/"):
        raise ValueError(f"{path!r} is not an absolute path")
    if any(c in path for c in "\0\n\r"):
        raise ValueError(f"{path!r} contains control characters")
    if path != "/" and path.endswith("/"):
        path = path.rstrip("/") or "/"
    if "//" in path:
        raise ValueError(f"{path!r} has an empty path component")
    if "/." in path and any(p in (".", "..") for p in path.split("/")):
        raise ValueError(f"{path!r} contains '.' or '..'")
    if len(path) > MAX_NAME and (len(path) > MAX_PATH or any(
            len(p) > MAX_NAME for p in path.split("/"))):
        raise ValueError(f"{path!r} is too long")
    return path


def parent_of(path: str) -> str:
    return path.rpartition("/")[0] or "/"


def name_of(path: str) -> str:
    return path.rpartition("/")[2]


def join(directory: str, name: str) -> str:
    return directory.rstrip("/") + "/" + name


def ancestors(path: str) -> list[str]:
    """Every proper ancestor of ``path``, root first (``/`` has none)."""
    if path == "/":
        return []
    out = ["/"]
    parts = path.split("/")[1:-1]
    for i in range(len(parts)):
        out.append("/" + "/".join(parts[: i + 1]))
    return out


def depth_of(path: str) -> int:
    return 0 if path == "/" else path.count("/")


def home_of(vo: str, user: str) -> str:
    """DIRAC's user home: ``/<vo>/user/<initial>/<user>``."""
    return f"/{vo}/user/{user[0]}/{user}"


def is_under(path: str, top: str) -> bool:
    """``path`` is ``top`` or inside it."""
    return top == "/" or path == top or path.startswith(top.rstrip("/") + "/")
