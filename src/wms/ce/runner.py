"""Command runners: run an argument list here, or on a remote host through OpenSSH.

The Slurm and process CEs build argument lists and hand them to a runner, so the same code
drives a local ``sbatch`` or one on a login node (``BatchSystem: Slurm`` of the SSH CE).

Example::

    >>> from wms.ce.runner import LocalRunner
    >>> LocalRunner().run(["echo", "hi"]).stdout
    'hi\\n'
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wms.ce.base import CEError

__all__ = ["CommandRunner", "LocalRunner", "Result", "SSHRunner"]

#: writes stdin to "$1" (mode 700), creating its directory
_WRITE = 'mkdir -p -- "$(dirname -- "$1")" && umask 077 && cat > "$1" && chmod 700 "$1"'


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class CommandRunner:
    """Base runner: ``env`` is added to the environment of every command."""

    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 60.0

    #: the host name used in CE references
    host: str = ""

    def run(self, argv: Sequence[str], *, input: str | None = None,  # noqa: A002
            check: bool = False) -> Result:
        raise NotImplementedError

    def _finish(self, argv: Sequence[str], proc: subprocess.CompletedProcess[str],
                check: bool) -> Result:
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise CEError(f"{shlex.join(argv)} exited {proc.returncode}: "
                          f"{(proc.stderr or proc.stdout).strip()[:500]}")
        return result

    def write_file(self, path: str, content: str) -> None:
        """Write ``content`` to ``path`` (mode 0700, directories created)."""
        self.run(["/bin/sh", "-c", _WRITE, "sh", path], input=content, check=True)

    def read_file(self, path: str) -> str:
        """The text of ``path``; empty when it does not exist (yet)."""
        res = self.run(["/bin/sh", "-c", 'cat -- "$1" 2>/dev/null || true', "sh", path])
        return res.stdout

    def close(self) -> None:
        """Release resources (an SSH master connection)."""


@dataclass
class LocalRunner(CommandRunner):
    """Runs commands on this machine."""

    def __post_init__(self) -> None:
        if not self.host:
            self.host = os.uname().nodename

    def run(self, argv: Sequence[str], *, input: str | None = None,  # noqa: A002
            check: bool = False) -> Result:
        env = {**os.environ, **self.env}
        try:
            proc = subprocess.run(  # noqa: S603 - argument list, no shell
                list(argv), input=input, capture_output=True, text=True, env=env,
                timeout=self.timeout, stdin=None if input is not None else subprocess.DEVNULL,
            )
        except FileNotFoundError as exc:
            raise CEError(f"command not found: {argv[0]}") from exc
        except subprocess.TimeoutExpired as exc:
            raise CEError(f"{shlex.join(argv)} timed out after {self.timeout} s") from exc
        return self._finish(argv, proc, check)

    def read_file(self, path: str) -> str:
        try:
            return Path(path).read_text(errors="replace")
        except FileNotFoundError:
            return ""


@dataclass
class SSHRunner(CommandRunner):
    """Runs commands on ``user@host`` with OpenSSH: key only, pinned host key, shared connection.

    The remote command line is ``shlex.join(argv)`` (the remote login shell must be POSIX);
    ``env`` is passed as ``env K=V ...`` in front of it.
    """

    user: str = ""
    port: int = 22
    key_file: str = ""
    known_hosts: str = ""
    connect_timeout: int = 10
    control_persist: int = 60
    control_dir: str = ""

    def __post_init__(self) -> None:
        self._own_control_dir = not self.control_dir
        if not self.control_dir:
            # short path: a unix socket path must stay under ~100 bytes
            self.control_dir = tempfile.mkdtemp(prefix="pwcm-")

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def ssh_options(self) -> list[str]:
        opts = [
            "-p", str(self.port),
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"ConnectTimeout={self.connect_timeout}",
            "-o", "ServerAliveInterval=15",
            "-o", "ControlMaster=auto",
            "-o", f"ControlPath={self.control_dir}/%C",
            "-o", f"ControlPersist={self.control_persist}",
            "-o", "LogLevel=ERROR",
        ]
        if self.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={self.known_hosts}",
                     "-o", "GlobalKnownHostsFile=/dev/null"]
        if self.key_file:
            opts += ["-i", self.key_file, "-o", "IdentitiesOnly=yes"]
        return opts

    def remote_command(self, argv: Sequence[str]) -> str:
        cmd = shlex.join(argv)
        if self.env:
            cmd = shlex.join(["env", *(f"{k}={v}" for k, v in self.env.items())]) + " " + cmd
        return cmd

    def run(self, argv: Sequence[str], *, input: str | None = None,  # noqa: A002
            check: bool = False) -> Result:
        ssh = ["ssh", *self.ssh_options(), self.target, "--", self.remote_command(argv)]
        try:
            proc = subprocess.run(  # noqa: S603 - argument list, no shell
                ssh, input=input, capture_output=True, text=True, timeout=self.timeout,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except FileNotFoundError as exc:
            raise CEError("ssh not found: install openssh-client") from exc
        except subprocess.TimeoutExpired as exc:
            raise CEError(f"ssh {self.target} {shlex.join(argv)} timed out") from exc
        if proc.returncode == 255:
            raise CEError(f"ssh to {self.target}:{self.port} failed: {proc.stderr.strip()}")
        return self._finish(argv, proc, check)

    def close(self) -> None:
        stop = ["ssh", *self.ssh_options(), "-O", "exit", self.target]
        subprocess.run(  # noqa: S603 - argument list, no shell
            stop,
            capture_output=True, timeout=15, stdin=subprocess.DEVNULL, check=False,
        )
        if self._own_control_dir:
            for entry in Path(self.control_dir).glob("*"):
                entry.unlink(missing_ok=True)
            Path(self.control_dir).rmdir()
            self._own_control_dir = False
