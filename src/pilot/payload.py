"""What a matched job runs: its command, or the plan of a DIRAC ``Job`` API workflow.

Plain functions over the job's JDL and its directory, shared by the job wrapper
(:mod:`pilot.wrapper`, payload on this node) and the pushed jobs of :mod:`wms.logic.push`
(payload in a batch job):

* :func:`workflow_plan`: for ``Executable = "dirac-jobexec"``, the workflow XML read safely
  (:mod:`pilot.dirac_workflow`) into ``dirac-jobexec``'s arguments and the (step, module)
  pairs the pilot cannot run itself; :class:`PayloadRefusedError` when the XML is refused;
* :func:`payload_command`: the command line that runs, and whether the pilot's own workflow
  runner (:mod:`pilot.jobexec`) is it;
* :class:`StatusReader`: the application statuses that runner appends to
  :data:`WORKFLOW_STATUS` (JSON lines), each read once, incomplete lines left for later.

Standard library only, Python 3.9+ (it runs inside the pilot).

Example::

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> payload_command({"Executable": "/bin/echo", "Arguments": "a 'b c'"}, d, print)
    (['/bin/echo', 'a', 'b c'], False)
    >>> reader = StatusReader(os.path.join(d, WORKFLOW_STATUS))
    >>> with open(reader.path, "w") as f:
    ...     _ = f.write('{"ApplicationStatus": "Executing RunScriptStep1"}\\n{"Applic')
    >>> reader.read(), reader.read()
    (['Executing RunScriptStep1'], [])
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import sys
from typing import Any, Callable

from pilot.dirac_workflow import MAX_BYTES, WorkflowError, parse_workflow, split_jobexec_arguments

DIRAC_JOBEXEC = "dirac-jobexec"
INVALID_WORKFLOW = "Invalid workflow description"
UNSUPPORTED_MODULE = "Workflow module not supported"
#: where pilot.jobexec writes the application statuses the wrapper relays (in the job dir)
WORKFLOW_STATUS = ".workflow-status.jsonl"
#: the pilot's own code (the zipapp, or the source directory)
PILOT_PATH = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_JOBEXEC_BOOT = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
                 "from pilot.jobexec import main; sys.exit(main())")


class PayloadRefusedError(Exception):
    """The payload cannot run on this node: ``minor`` status and a message for the user."""

    def __init__(self, minor: str, message: str) -> None:
        super().__init__(message)
        self.minor = minor


def command(jdl: dict[str, Any], job_dir: str) -> list[str]:
    """The JDL's ``Executable`` and ``Arguments``; an executable shipped in the input sandbox
    (a relative name found in ``job_dir``) is made executable and named by its full path."""
    exe = str(jdl.get("Executable", ""))
    local = os.path.join(job_dir, exe)
    if exe and not os.path.isabs(exe) and os.path.isfile(local):
        os.chmod(local, os.stat(local).st_mode | stat.S_IXUSR)
        exe = local
    return [exe] + shlex.split(str(jdl.get("Arguments", "")))


def is_dirac_workflow(jdl: dict[str, Any]) -> bool:
    """A DIRAC ``Job`` API job: its executable is ``dirac-jobexec``."""
    return os.path.basename(str(jdl.get("Executable", ""))) == DIRAC_JOBEXEC


def workflow_plan(jdl: dict[str, Any],
                  job_dir: str) -> tuple[list[str], list[tuple[str, str]]] | None:
    """For a DIRAC workflow job: (``dirac-jobexec``'s arguments, the (step, module) pairs the
    pilot cannot run itself); None for other jobs; :class:`PayloadRefusedError` when the
    workflow description is refused (not in ``job_dir``, unreadable, or refused by
    :func:`pilot.dirac_workflow.parse_workflow`)."""
    if not is_dirac_workflow(jdl):
        return None
    args = shlex.split(str(jdl.get("Arguments", "")))
    try:
        xml_name, _options, params = split_jobexec_arguments(args)
        path = os.path.normpath(os.path.join(job_dir, xml_name))
        if not path.startswith(job_dir + os.sep):
            raise WorkflowError(f"{xml_name}: not in the job directory")
        with open(path, "rb") as stream:
            workflow = parse_workflow(stream.read(MAX_BYTES + 1)).with_values(params)
        workflow.steps()
    except (WorkflowError, OSError) as exc:
        raise PayloadRefusedError(INVALID_WORKFLOW, f"{INVALID_WORKFLOW}: {exc}") from None
    return args, workflow.unsupported_modules()


def payload_command(jdl: dict[str, Any], job_dir: str,
                    log: Callable[[str], None]) -> tuple[list[str], bool]:
    """(what runs, whether it is :mod:`pilot.jobexec`): the JDL's command; for a DIRAC
    workflow of ``Script`` steps only, the pilot's own runner (writing its statuses to
    :data:`WORKFLOW_STATUS` in ``job_dir``); for other module types, the node's real
    ``dirac-jobexec``; :class:`PayloadRefusedError` when the workflow cannot run here."""
    plan = workflow_plan(jdl, job_dir)
    if plan is None:
        return command(jdl, job_dir), False
    args, unsupported = plan
    if unsupported:
        real = shutil.which(DIRAC_JOBEXEC)
        if real:
            log(f"workflow modules {sorted({m for _, m in unsupported})}: running {real}")
            return [real, *args], False
        step, module = unsupported[0]
        raise PayloadRefusedError(UNSUPPORTED_MODULE, (
            f"Workflow module {module!r} (step {step}) is not supported: the pilot runs "
            "DIRAC's Script module only, and there is no dirac-jobexec on this node"))
    status = os.path.join(job_dir, WORKFLOW_STATUS)
    return [sys.executable, "-S", "-I", "-c", _JOBEXEC_BOOT, PILOT_PATH,
            "--status-file", status, *args], True


class StatusReader:
    """The application statuses appended to ``path`` (JSON lines with an
    ``ApplicationStatus``), each returned once by :meth:`read`, in order. A line not yet
    complete waits for the next call; lines that are not such JSON are skipped."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0

    def read(self) -> list[str]:
        """The statuses written since the last call (none when the file is missing)."""
        try:
            if os.path.getsize(self.path) <= self.offset:
                return []
            with open(self.path, "rb") as stream:
                stream.seek(self.offset)
                data = stream.read()
        except OSError:
            return []
        complete = data[:data.rfind(b"\n") + 1]
        self.offset += len(complete)
        texts = []
        for line in complete.splitlines():
            try:
                text = json.loads(line).get("ApplicationStatus")
            except (ValueError, AttributeError):
                continue
            if isinstance(text, str) and text:
                texts.append(text)
        return texts
