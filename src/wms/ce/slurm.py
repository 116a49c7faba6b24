"""Slurm CE: pilots as Slurm batch jobs, submitted here or on a login node over SSH.

Settings: ``WorkDir`` (required: where ``<jobid>.out``/``<jobid>.err`` are written; must be
visible from the worker nodes), ``Host`` (the name in references; default this host),
``Account``, ``Environment`` (variables for the Slurm commands, e.g. ``SLURM_CONF``),
``SacctCompletion`` (false: with ``true`` the fallback for jobs the controller has forgotten is
``sacct -c``, the jobcomp/filetxt log, instead of ``sacct`` through slurmdbd).

Commands: ``sbatch --parsable`` (script on stdin; partition = queue, ``--time``,
``--cpus-per-task``, ``--mem``, ``--output``/``--error``, ``--job-name``), status from
``squeue -h -t all -o '%i %T'`` then ``sacct -n -X -P -o JobID,State`` for the rest,
``scancel``. The same code runs over SSH: it only talks to a :class:`CommandRunner`.

Example::

    >>> from wms.ce.slurm import slurm_status
    >>> [str(slurm_status(s)) for s in ("CANCELLED by 0", "PENDING", "TIMEOUT")]
    ['Aborted', 'Waiting', 'Failed']
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from core.exceptions import ConfigError
from wms.ce.base import BatchRefs, ComputingElement, PilotStatus, embed_env, minutes
from wms.ce.runner import CommandRunner, LocalRunner

__all__ = ["SLURM_STATES", "SlurmCommands", "SlurmComputingElement", "slurm_status"]

SLURM_STATES: dict[str, PilotStatus] = {
    "PENDING": PilotStatus.WAITING,
    "CONFIGURING": PilotStatus.WAITING,
    "REQUEUED": PilotStatus.WAITING,
    "REQUEUE_HOLD": PilotStatus.WAITING,
    "REQUEUE_FED": PilotStatus.WAITING,
    "RESV_DEL_HOLD": PilotStatus.WAITING,
    "SUSPENDED": PilotStatus.WAITING,
    "STOPPED": PilotStatus.WAITING,
    "RUNNING": PilotStatus.RUNNING,
    "COMPLETING": PilotStatus.RUNNING,
    "RESIZING": PilotStatus.RUNNING,
    "SIGNALING": PilotStatus.RUNNING,
    "STAGE_OUT": PilotStatus.RUNNING,
    "COMPLETED": PilotStatus.DONE,
    "FAILED": PilotStatus.FAILED,
    "TIMEOUT": PilotStatus.FAILED,
    "OUT_OF_MEMORY": PilotStatus.FAILED,
    "NODE_FAIL": PilotStatus.FAILED,
    "BOOT_FAIL": PilotStatus.FAILED,
    "DEADLINE": PilotStatus.FAILED,
    "PREEMPTED": PilotStatus.FAILED,
    "CANCELLED": PilotStatus.ABORTED,
    "REVOKED": PilotStatus.ABORTED,
    "SPECIAL_EXIT": PilotStatus.FAILED,
}

_JOB_ID = re.compile(r"^\d+$")


def slurm_status(state: str) -> PilotStatus:
    """The pilot status for a Slurm state as squeue/sacct print it (``CANCELLED by 0``...)."""
    word = state.split()[0].rstrip("+") if state.strip() else ""
    return SLURM_STATES.get(word, PilotStatus.WAITING if word else PilotStatus.DELETED)


class SlurmCommands:
    """Builds the Slurm command lines (pure: easy to test, shared by local and SSH use)."""

    def __init__(self, work_dir: str, account: str | None = None,
                 sacct_completion: bool = False) -> None:
        self.work_dir = work_dir
        self.account = account
        self.sacct_completion = sacct_completion

    def sbatch(self, *, queue: str, job_name: str, processors: int, wall_seconds: int | None,
               memory_mb: int | None, gpus: int = 0) -> list[str]:
        argv = ["sbatch", "--parsable", f"--partition={queue}", f"--job-name={job_name}",
                "--ntasks=1", f"--cpus-per-task={processors}",
                f"--output={self.work_dir}/%j.out", f"--error={self.work_dir}/%j.err",
                f"--chdir={self.work_dir}"]
        if wall_seconds is not None:
            argv.append(f"--time={minutes(wall_seconds)}")
        if memory_mb is not None:
            argv.append(f"--mem={memory_mb}M")
        if gpus:
            argv.append(f"--gres=gpu:{gpus}")
        if self.account:
            argv.append(f"--account={self.account}")
        return argv

    @staticmethod
    def squeue(ids: Sequence[str]) -> list[str]:
        return ["squeue", "-h", "-t", "all", "-o", "%i %T", "-j", ",".join(ids)]

    def sacct(self, ids: Sequence[str]) -> list[str]:
        argv = ["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(ids)]
        return argv[:1] + ["-c"] + argv[1:] if self.sacct_completion else argv

    @staticmethod
    def scancel(ids: Sequence[str]) -> list[str]:
        return ["scancel", *ids]

    def output_files(self, job_id: str) -> tuple[str, str]:
        return f"{self.work_dir}/{job_id}.out", f"{self.work_dir}/{job_id}.err"


class SlurmComputingElement(BatchRefs, ComputingElement):
    """Pilots as Slurm jobs; ``runner`` decides where the commands run (default: here)."""

    REF_SCHEME = "slurm"
    REF_ID = _JOB_ID

    TYPE = "Slurm"
    KNOWN_KEYS = frozenset({"WorkDir", "Host", "Account", "Environment", "SacctCompletion"})

    def __init__(self, name: str, settings: Mapping[str, Any],
                 runner: CommandRunner | None = None) -> None:
        super().__init__(name, settings)
        s = self.settings
        env = s.str_map("Environment")
        self.runner = runner or LocalRunner(env=env)
        if runner is not None and env:
            self.runner.env = {**runner.env, **env}
        self.host = s.get_str("Host", self.runner.host)
        work_dir = s.get_str("WorkDir")
        if not work_dir.startswith("/"):
            raise ConfigError(f"CE {name}: setting WorkDir must be an absolute path")
        self.commands = SlurmCommands(work_dir, s.opt_str("Account"),
                                      s.get_bool("SacctCompletion", False))
        self._work_dir_ready = False


    def submit(self, script: str, count: int = 1, *, queue: str, processors: int = 1,
               wall_seconds: int | None = None, memory_mb: int | None = None,
               env: Mapping[str, str] | None = None, gpus: int = 0,
               gpu_model: str | None = None) -> list[str]:
        self.check_submit(script, count, queue, processors, wall_seconds, memory_mb)
        self.check_gpus(gpus)
        if not self._work_dir_ready:
            self.runner.run(["mkdir", "-p", "--", self.commands.work_dir], check=True)
            self._work_dir_ready = True
        text = embed_env(script, env)
        if not text.startswith("#!"):
            text = "#!/bin/sh\n" + text
        argv = self.commands.sbatch(queue=queue, job_name=f"pilot-{self.name}",
                                    processors=processors, wall_seconds=wall_seconds,
                                    memory_mb=memory_mb, gpus=gpus)
        refs = []
        for _ in range(count):
            res = self.runner.run(argv, input=text, check=True)
            job_id = res.stdout.strip().split(";")[0]
            if not _JOB_ID.match(job_id):
                raise ValueError(f"unexpected sbatch output {res.stdout!r}")
            refs.append(f"slurm://{self.host}/{job_id}")
        return refs

    @staticmethod
    def _parse(text: str, sep: str | None) -> dict[str, str]:
        states = {}
        for line in text.splitlines():
            parts = line.strip().split(sep, 1)
            if len(parts) == 2 and _JOB_ID.match(parts[0]):
                states[parts[0]] = parts[1]
        return states

    def status(self, refs: Sequence[str]) -> dict[str, PilotStatus]:
        ids = self._ids(refs)
        wanted = sorted({j for j in ids.values() if j})
        states: dict[str, str] = {}
        if wanted:
            # squeue refuses the whole list when one id is unknown: then ask one by one
            res = self.runner.run(self.commands.squeue(wanted))
            if res.returncode == 0:
                states = self._parse(res.stdout, None)
            else:
                for job in wanted:
                    one = self.runner.run(self.commands.squeue([job]))
                    states.update(self._parse(one.stdout, None) if one.returncode == 0 else {})
            rest = [j for j in wanted if j not in states]
            if rest:
                res = self.runner.run(self.commands.sacct(rest))
                if res.returncode == 0:
                    states.update(self._parse(res.stdout, "|"))
        return {ref: slurm_status(states.get(job, "")) if job else PilotStatus.DELETED
                for ref, job in ids.items()}

    def kill(self, refs: Sequence[str]) -> None:
        ids = [self._own_id(ref) for ref in refs]
        if ids:
            res = self.runner.run(self.commands.scancel(ids))
            # scancel of a finished/unknown job: "Invalid job id specified"; nothing to kill
            if res.returncode != 0 and "Invalid job id" not in res.stderr:
                self.runner.run(self.commands.scancel(ids), check=True)

    def output(self, ref: str) -> tuple[str, str]:
        out, err = self.commands.output_files(self._own_id(ref))
        return self.runner.read_file(out), self.runner.read_file(err)

    def cleanup(self, refs: Sequence[str]) -> None:
        files = [f for ref in refs for f in self.commands.output_files(self._own_id(ref))]
        if files:
            self.runner.run(["rm", "-f", "--", *files], check=True)

    def close(self) -> None:
        self.runner.close()
