"""HTCondor CE: pilots as vanilla-universe jobs through the HTCondor command line.

Settings: ``WorkDir`` (required, absolute: submit files and ``<cluster>.<proc>.out/.err``),
``Schedd`` (``-name`` of the schedd; default the local one), ``Pool`` (``-pool``), ``Host``
(the name in references; default the Schedd or this host), ``Environment`` (for the commands).
References: ``htcondor://<host>/<cluster>.<proc>``.

``condor_submit -terse`` submits ``queue <count>``; status from ``condor_q -json`` then
``condor_history -json`` (attributes ``ClusterId``, ``ProcId``, ``JobStatus``, ``ExitCode``);
``condor_rm`` kills. JobStatus: 1 Idle -> Waiting, 2 Running / 6 Transferring output /
7 Suspended -> Running, 3 Removed -> Aborted, 4 Completed -> Done (ExitCode 0) or Failed,
5 Held -> Aborted (DIRAC's choice too: a held pilot will not run without an operator).

Example::

    >>> from wms.ce.htcondor import job_status
    >>> [str(job_status({"JobStatus": s, "ExitCode": 0})) for s in (1, 2, 4, 5)]
    ['Waiting', 'Running', 'Done', 'Aborted']
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from core.exceptions import ConfigError
from wms.ce.base import BatchRefs, CEError, ComputingElement, PilotStatus, embed_env
from wms.ce.runner import LocalRunner

__all__ = ["HTCondorComputingElement", "job_status"]

_JOB = re.compile(r"^\d+\.\d+$")
_TERSE = re.compile(r"^(\d+)\.(\d+)\s*-\s*(\d+)\.(\d+)$")


def job_status(ad: Mapping[str, Any]) -> PilotStatus:
    """The pilot status of a job ClassAd (as condor_q/condor_history -json print it)."""
    code = ad.get("JobStatus")
    if code == 1:
        return PilotStatus.WAITING
    if code in (2, 6, 7):
        return PilotStatus.RUNNING
    if code in (3, 5):
        return PilotStatus.ABORTED
    if code == 4:
        return PilotStatus.DONE if ad.get("ExitCode", 0) == 0 else PilotStatus.FAILED
    return PilotStatus.DELETED


class HTCondorComputingElement(BatchRefs, ComputingElement):
    REF_SCHEME = "htcondor"
    REF_ID = _JOB
    TYPE = "HTCondor"
    KNOWN_KEYS = frozenset({"WorkDir", "Schedd", "Pool", "Host", "Environment"})

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        super().__init__(name, settings)
        s = self.settings
        self.work_dir = s.get_str("WorkDir")
        if not self.work_dir.startswith("/"):
            raise ConfigError(f"CE {name}: setting WorkDir must be an absolute path")
        self.schedd = s.opt_str("Schedd")
        self.pool = s.opt_str("Pool")
        self.runner = LocalRunner(env=s.str_map("Environment"))
        self.host = s.get_str("Host", self.schedd or self.runner.host)

    def _where(self) -> list[str]:
        return ([f"-name={self.schedd}"] if self.schedd else []) + (
            [f"-pool={self.pool}"] if self.pool else [])

    def submit_description(self, script_path: str, count: int, *, processors: int,
                           wall_seconds: int | None, memory_mb: int | None,
                           gpus: int = 0) -> str:
        lines = [
            "universe = vanilla",
            f"executable = {script_path}",
            f"initialdir = {self.work_dir}",
            f"output = {self.work_dir}/$(Cluster).$(Process).out",
            f"error = {self.work_dir}/$(Cluster).$(Process).err",
            f"log = {self.work_dir}/condor.log",
            f"request_cpus = {processors}",
            "should_transfer_files = YES",
            "when_to_transfer_output = ON_EXIT_OR_EVICT",
            f"+PilotWMSCE = \"{self.name}\"",
        ]
        if memory_mb is not None:
            lines.append(f"request_memory = {memory_mb}")
        if gpus:
            lines.append(f"request_GPUs = {gpus}")
        if wall_seconds is not None:
            lines.append(f"+MaxRuntime = {wall_seconds}")
            lines.append(f"periodic_remove = JobStatus == 2 && "
                         f"time() - EnteredCurrentStatus > {wall_seconds}")
        lines.append(f"queue {count}")
        return "\n".join(lines) + "\n"

    def submit(self, script: str, count: int = 1, *, queue: str, processors: int = 1,
               wall_seconds: int | None = None, memory_mb: int | None = None,
               env: Mapping[str, str] | None = None, gpus: int = 0,
               gpu_model: str | None = None) -> list[str]:
        self.check_submit(script, count, queue, processors, wall_seconds, memory_mb)
        self.check_gpus(gpus)
        import uuid

        ident = uuid.uuid4().hex
        script_path = f"{self.work_dir}/pilot-{ident}.sh"
        self.runner.write_file(script_path, embed_env(script, env))
        sub_path = f"{self.work_dir}/pilot-{ident}.sub"
        self.runner.write_file(sub_path, self.submit_description(
            script_path, count, processors=processors, wall_seconds=wall_seconds,
            memory_mb=memory_mb, gpus=gpus))
        res = self.runner.run(["condor_submit", "-terse", *self._where(), sub_path], check=True)
        match = _TERSE.match(res.stdout.strip().splitlines()[-1] if res.stdout.strip() else "")
        if not match:
            raise CEError(f"unexpected condor_submit output {res.stdout!r}")
        cluster, first, _, last = (int(g) for g in match.groups())
        return [f"htcondor://{self.host}/{cluster}.{proc}" for proc in range(first, last + 1)]


    def _query(self, tool: str, ids: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        argv = [tool, "-json", *self._where(), "-attributes",
                "ClusterId,ProcId,JobStatus,ExitCode,HoldReason", *ids]
        res = self.runner.run(argv)
        if res.returncode != 0:
            raise CEError(f"{tool} failed: {res.stderr.strip()[:300]}")
        ads = json.loads(res.stdout) if res.stdout.strip() else []
        return {f"{ad['ClusterId']}.{ad['ProcId']}": ad for ad in ads}

    def status(self, refs: Sequence[str]) -> dict[str, PilotStatus]:
        ids = self._ids(refs)
        wanted = sorted({j for j in ids.values() if j})
        ads: dict[str, Mapping[str, Any]] = {}
        if wanted:
            ads = self._query("condor_q", wanted)
            rest = [j for j in wanted if j not in ads]
            if rest:
                ads.update(self._query("condor_history", rest))
        return {ref: job_status(ads[job]) if job in ads else PilotStatus.DELETED
                for ref, job in ids.items() if job is not None} | {
                ref: PilotStatus.DELETED for ref, job in ids.items() if job is None}

    def kill(self, refs: Sequence[str]) -> None:
        ids = [self._own_id(ref) for ref in refs]
        if ids:
            # finished jobs: condor_rm says "Couldn't find/remove all jobs" and exits 1
            self.runner.run(["condor_rm", *self._where(), *ids])

    def output(self, ref: str) -> tuple[str, str]:
        job = self._own_id(ref)
        return (self.runner.read_file(f"{self.work_dir}/{job}.out"),
                self.runner.read_file(f"{self.work_dir}/{job}.err"))
