"""SSH CE: pilots started on a remote host through OpenSSH, or in its Slurm.

Settings: ``Host`` (required), ``User``, ``Port`` (22), ``KeyFile``, ``KnownHosts`` (a pinned
known_hosts file; host keys are always checked strictly), ``ConnectTimeout`` (10 s),
``ControlPersist`` (60 s: one SSH connection is reused for every command), ``WorkDir``
(remote, default ``pilotwms-pilots`` in the remote home), ``BatchSystem`` (``None`` or
``Slurm``), ``Environment`` (variables for the remote commands, e.g. ``SLURM_CONF``).

Without a batch system the pilot runs detached (``setsid nohup``) exactly like the Local CE
(same wrapper, same on-disk state, same status rules), with references
``ssh://<host>/<pid>-<uuid>``. With ``BatchSystem: Slurm`` every operation is the Slurm CE's,
run over SSH, with references ``slurm://<host>/<jobid>``.

Example::

    >>> from wms.ce.ssh import SSHComputingElement
    >>> SSHComputingElement("ce", {"Host": "login.example.org", "Port": "22"})
    Traceback (most recent call last):
    ...
    core.exceptions.ConfigError: CE ce: setting Port must be an integer >= 1, not '22'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.exceptions import ConfigError
from wms.ce.base import ComputingElement, PilotStatus
from wms.ce.local import ProcessComputingElement
from wms.ce.runner import SSHRunner
from wms.ce.slurm import SlurmComputingElement

__all__ = ["SSHComputingElement"]

#: start the wrapper detached in its own session; print its pid
_LAUNCH = ('cd "$1" && { setsid nohup /bin/sh ./wrapper.sh </dev/null >/dev/null 2>&1 & '
           'pid=$!; echo "$pid" > pid; echo "$pid"; }')

_SSH_KEYS = frozenset({"Host", "User", "Port", "KeyFile", "KnownHosts", "ConnectTimeout",
                       "ControlPersist", "WorkDir", "BatchSystem", "Environment"})


def ssh_runner(ce: ComputingElement) -> SSHRunner:
    """The runner described by a CE's SSH settings."""
    s = ce.settings
    return SSHRunner(
        host=s.get_str("Host"), user=s.opt_str("User") or "",
        port=s.get_int("Port", 22, minimum=1), key_file=s.opt_str("KeyFile") or "",
        known_hosts=s.opt_str("KnownHosts") or "",
        connect_timeout=s.get_int("ConnectTimeout", 10, minimum=1),
        control_persist=s.get_int("ControlPersist", 60), env=s.str_map("Environment"),
    )


class SSHComputingElement(ProcessComputingElement):
    """Pilots on a remote host over SSH, directly or through its Slurm."""

    TYPE = "SSH"
    SCHEME = "ssh"
    KNOWN_KEYS = _SSH_KEYS | SlurmComputingElement.KNOWN_KEYS

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        super().__init__(name, settings)
        batch = self.settings.values.get("BatchSystem") or "None"
        if batch not in ("None", "Slurm"):
            raise ConfigError(f"CE {name}: setting BatchSystem must be None or Slurm, "
                              f"not {batch!r}")
        if batch == "None":
            extra = sorted(set(self.settings.values) - _SSH_KEYS)
            if extra:
                raise ConfigError(f"CE {name}: setting(s) {', '.join(extra)} need "
                                  "BatchSystem: Slurm")
        self.runner = ssh_runner(self)
        self.slurm: SlurmComputingElement | None = None
        if batch == "Slurm":
            slurm_settings = {k: v for k, v in self.settings.values.items()
                              if k in SlurmComputingElement.KNOWN_KEYS}
            slurm_settings.setdefault("WorkDir", self.settings.values.get("WorkDir")
                                      or "pilotwms-pilots")
            self.slurm = SlurmComputingElement(name, slurm_settings, runner=self.runner)
            self.base = ""
        else:
            self._base_setting = self.settings.get_str("WorkDir", "pilotwms-pilots")
            self.base = ""

    def _remote_base(self) -> str:
        """The remote WorkDir, created and resolved (absolute, symlink-free) on first use."""
        if not self.base:
            res = self.runner.run(
                ["/bin/sh", "-c", 'mkdir -p -- "$1" && cd -- "$1" && pwd -P', "sh",
                 self._base_setting], check=True)
            self.base = res.stdout.strip()
        return self.base

    def _launch(self, job_dir: str) -> int:
        res = self.runner.run(["/bin/sh", "-c", _LAUNCH, "sh", job_dir], check=True)
        return int(res.stdout.strip().splitlines()[-1])

    def submit(self, script: str, count: int = 1, *, queue: str, processors: int = 1,
               wall_seconds: int | None = None, memory_mb: int | None = None,
               env: Mapping[str, str] | None = None, gpus: int = 0,
               gpu_model: str | None = None) -> list[str]:
        if self.slurm is not None:
            return self.slurm.submit(script, count, queue=queue, processors=processors,
                                     wall_seconds=wall_seconds, memory_mb=memory_mb, env=env,
                                     gpus=gpus, gpu_model=gpu_model)
        self._remote_base()
        return super().submit(script, count, queue=queue, processors=processors,
                              wall_seconds=wall_seconds, memory_mb=memory_mb, env=env)

    def status(self, refs: Sequence[str]) -> dict[str, PilotStatus]:
        if self.slurm is not None:
            return self.slurm.status(refs)
        self._remote_base()
        return super().status(refs)

    def kill(self, refs: Sequence[str]) -> None:
        if self.slurm is not None:
            self.slurm.kill(refs)
            return
        self._remote_base()
        super().kill(refs)

    def output(self, ref: str) -> tuple[str, str]:
        if self.slurm is not None:
            return self.slurm.output(ref)
        self._remote_base()
        return super().output(ref)

    def cleanup(self, refs: Sequence[str]) -> None:
        if self.slurm is not None:
            self.slurm.cleanup(refs)
            return
        self._remote_base()
        super().cleanup(refs)

    def exit_code(self, ref: str) -> int | None:
        if self.slurm is not None:
            return None
        self._remote_base()
        return super().exit_code(ref)
