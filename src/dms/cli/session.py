"""The data commands' session: a working directory in the catalog, as COMDIRAC keeps it.

COMDIRAC stores ``cwd`` in a per-shell session file (keyed by the parent shell's PID, or
``$DCOMMANDS_PPID``); pilotwms does the same under ``~/.pilotwms/sessions/`` (or
``$PILOTWMS_SESSION_DIR``): ``dsession.<pid>.json`` holding ``{"cwd": ...}``. Every shell has
its own working directory, starting at the user's home ``/<vo>/user/<u>/<user>`` (from the
client config's VO and the certificate's user name when known, else ``/``).

Relative paths are resolved against the session's cwd with ``os.path.normpath`` semantics,
as COMDIRAC's ``pathFromArgument`` does.

Example::

    >>> s = Session(home="/demo/user/a/alice", directory=None, pid=1, cwd="/demo/user/a/alice")
    >>> s.resolve("data/f1"), s.resolve("../bob"), s.resolve("/demo"), s.resolve_all([])
    ('/demo/user/a/alice/data/f1', '/demo/user/a/bob', '/demo', ['/demo/user/a/alice'])
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_DIR = "PILOTWMS_SESSION_DIR"
ENV_PID = "DCOMMANDS_PPID"


def session_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get(ENV_DIR) or Path.home() / ".pilotwms" / "sessions")


def session_pid(environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    value = env.get(ENV_PID)
    return int(value) if value and value.isdigit() else os.getppid()


def home_dir(vo: str | None, user: str | None) -> str:
    """DIRAC's home: ``/<vo>/user/<initial>/<user>``, ``/`` when VO or user is unknown."""
    if not vo or not user:
        return "/"
    return f"/{vo}/user/{user[0]}/{user}"


@dataclass
class Session:
    home: str
    directory: Path | None
    pid: int
    cwd: str

    @classmethod
    def load(cls, home: str | Callable[[], str],
             environ: Mapping[str, str] | None = None) -> Session:
        """This shell's session (a fresh one at the home when none is stored). ``home`` may
        be a function, called only when the session file does not know the home yet."""
        directory = session_dir(environ)
        pid = session_pid(environ)
        path = directory / f"dsession.{pid}.json"
        stored: dict[str, Any] = {}
        try:
            loaded = json.loads(path.read_text())
            if isinstance(loaded, dict):
                stored = loaded
        except (OSError, ValueError):
            pass
        known_home = stored.get("home")
        if not (isinstance(known_home, str) and known_home.startswith("/")):
            known_home = home() if callable(home) else home
        cwd = stored.get("cwd")
        if not (isinstance(cwd, str) and cwd.startswith("/")):
            cwd = known_home
        return cls(known_home, directory, pid, cwd)

    @property
    def file(self) -> Path | None:
        return None if self.directory is None else self.directory / f"dsession.{self.pid}.json"

    def save(self) -> None:
        if self.file is None:
            return
        self.file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"cwd": self.cwd, "home": self.home}))
        tmp.replace(self.file)

    def resolve(self, arg: str) -> str:
        """An argument as an absolute LFN (``LFN:`` prefix allowed)."""
        if arg[:4].lower() == "lfn:":
            arg = arg[4:]
        path = arg if arg.startswith("/") else posixpath.join(self.cwd, arg)
        path = posixpath.normpath(path)
        return "/" + path.lstrip("/") if path.startswith("//") else path

    def resolve_all(self, args: Iterable[str]) -> list[str]:
        """Every argument resolved; no arguments = the cwd (COMDIRAC's pathFromArguments)."""
        return [self.resolve(a) for a in args] or [self.cwd]


def current_session(environ: Mapping[str, str] | None = None) -> Session:
    """This shell's session for the configured user: the home comes from the client config's
    VO and the user name the server reports (``whoami``, asked once per session)."""
    from core.client_config import load_client_config, make_client

    def lookup() -> str:
        cfg = load_client_config()
        with make_client("Framework/Registry", cfg) as rpc:
            who = rpc.call("whoami") or {}
        return home_dir(cfg.vo or who.get("VO"), who.get("username"))

    session = Session.load(lookup, environ)
    if session.file is not None and not session.file.exists():
        session.save()
    return session
