"""Push mode's pieces: the pilot's job wrapper with the payload run by a batch system, and the
job directory that travels to it.

:class:`PushedJob` is :class:`pilot.wrapper.JobWrapper` (same reports, same input and output
sandbox handling, same final statuses) whose payload is not started here: :meth:`PushedJob.spec`
describes it for :mod:`pilot.batch_wrapper`, which runs it on the worker node, and
:meth:`~pilot.wrapper.JobWrapper.finish` reports the end once the job directory is back.

A DIRAC ``Job`` API job runs :mod:`pilot.jobexec` on the worker node (its modules travel with
the wrapper's) when every step is DIRAC's ``Script`` module, else the site's own
``dirac-jobexec``; the application statuses it wrote come back with the job directory.

:func:`pack_dir` / :func:`unpack` move a directory as base64 text (what a command runner's
stdin/stdout carry; tar.gz inside); :func:`batch_script` is the batch job itself.

Example::

    >>> print(batch_script("/scratch/push/12", "python3"), end="")
    #!/bin/sh
    cd '/scratch/push/12' || exit 1
    PYTHONPATH='/scratch/push/12/.pw' exec python3 -S -m pilot.batch_wrapper .pw/job.json
"""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

import pilot
from pilot.archive import extract
from pilot.batch_wrapper import PYTHON
from pilot.data import URLS_FILE
from pilot.jdl import as_list
from pilot.payload import DIRAC_JOBEXEC, WORKFLOW_STATUS, PayloadRefusedError
from pilot.wrapper import JobWrapper
from wms.ce.base import shell_quote

__all__ = ["META", "PushedJob", "batch_script", "pack_dir", "unpack"]

#: the job directory's own subdirectory: wrapper modules, job.json, usage.json, result.json
META = ".pw"
_PILOT = Path(pilot.__file__).resolve().parent
#: the standard-library modules the worker node needs
WRAPPER_MODULES = ("__init__.py", "watchdog.py", "batch_wrapper.py", "dirac_workflow.py",
                   "jobexec.py")


class PushedJob(JobWrapper):
    """A job wrapper whose payload runs in a batch job (see the module docstring)."""

    def initial_parameters(self) -> dict[str, Any]:
        return dict(self.opts.parameters, NumberOfProcessors=self.opts.processors,
                    CPUNormalizationFactor=1)

    def spec(self, remote_dir: str) -> dict[str, Any]:
        """``job.json`` for :mod:`pilot.batch_wrapper`: the payload as it runs in
        ``remote_dir`` (an executable shipped in the input sandbox is made executable)."""
        exe = str(self.jdl.get("Executable", ""))
        local = os.path.join(self.dir, exe)
        if exe and not os.path.isabs(exe) and os.path.isfile(local):
            os.chmod(local, os.stat(local).st_mode | stat.S_IXUSR)
            exe = f"{remote_dir}/{exe}"
        command = [exe] + self.command()[1:]
        plan = self.workflow_plan()  # a DIRAC Job API job (PayloadRefusedError: refused)
        if plan is not None and not plan[1]:  # Script steps only: the pilot's runner
            self.workflow_run = True
            command = [PYTHON, "-S", "-m", "pilot.jobexec", "--status-file",
                       f"{remote_dir}/{WORKFLOW_STATUS}", *plan[0]]
        elif plan is not None:  # VO modules: the site's own dirac-jobexec, if it has one
            command = [DIRAC_JOBEXEC, *plan[0]]
        env = {"DIRACJOBID": str(self.job_id), "JOBID": str(self.job_id),
               "DIRAC_PROCESSORS": str(self.opts.processors)}
        if os.path.exists(os.path.join(self.dir, URLS_FILE)):  # the "Protocol" data policy
            env["PILOTWMS_INPUT_DATA"] = f"{remote_dir}/{URLS_FILE}"
        for item in as_list(self.jdl.get("ExecutionEnvironment")):
            name, _, value = item.partition("=")
            if name:
                env[name] = value
        return {"Command": command, "Environment": env,
                "StdOutput": str(self.jdl.get("StdOutput", "std.out")),
                "StdError": str(self.jdl.get("StdError", "std.err")),
                "CPULimit": self.cpu_limit(), "WallLimit": self.opts.max_wall, "Sample": 2.0}

    def relay_workflow_statuses(self) -> None:
        """Once the job directory is back: the application statuses a DIRAC workflow wrote
        on the worker node, in order (and the workflow's own last status stays)."""
        try:
            plan = self.workflow_plan()
        except PayloadRefusedError:
            return
        if plan is not None and not plan[1]:
            self.workflow_run = True
            self.relay_statuses()

    def stage(self, remote_dir: str) -> str:
        """The job directory (inputs + wrapper + job.json) as :func:`pack_dir` text."""
        meta = os.path.join(self.dir, META, "pilot")
        os.makedirs(meta, exist_ok=True)
        for name in WRAPPER_MODULES:
            Path(meta, name).write_bytes((_PILOT / name).read_bytes())
        Path(self.dir, META, "job.json").write_text(json.dumps(self.spec(remote_dir)),
                                                    encoding="utf-8")
        return pack_dir(self.dir)


def pack_dir(path: str) -> str:
    """``path``'s content as base64 of a tar.gz (names relative to ``path``)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in sorted(os.listdir(path)):
            tar.add(os.path.join(path, name), arcname=name)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def unpack(text: str, dest: str) -> None:
    """Extract :func:`pack_dir` text (or ``tar -cz | base64`` output) into ``dest``, never
    outside it (:func:`pilot.archive.extract`)."""
    extract(base64.b64decode("".join(text.split())), dest)


def batch_script(remote_dir: str, python: str) -> str:
    """The batch job: run :mod:`pilot.batch_wrapper` in ``remote_dir``."""
    return (f"#!/bin/sh\ncd {shell_quote(remote_dir)} || exit 1\n"
            f"PYTHONPATH={shell_quote(remote_dir + '/' + META)} exec {python} -S -m "
            f"pilot.batch_wrapper {META}/job.json\n")
