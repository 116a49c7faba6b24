"""The pilot's ``dirac-jobexec``: run a DIRAC workflow of ``Script`` steps, standard library only.

::

    python3 -m pilot.jobexec [--status-file F] jobDescription.xml [-o LogLevel=INFO] [-p N=V]

The job wrapper starts this for jobs whose JDL says ``Executable = "dirac-jobexec"`` (what
DIRAC's ``Job`` API submits), in the job directory, with stdout and stderr on the job's
``StdOutput``/``StdError`` files. It reads the workflow with
:func:`pilot.dirac_workflow.parse_workflow` and runs each step as DIRAC's ``Script`` module
does:

* the command is the step's ``executable`` (the sandbox copy ``./<basename>`` when there is
  one, made executable; a ``.py`` file runs with this Python; else found on ``PATH``) followed
  by its ``arguments`` (or the workflow's ``arguments``), split with ``shlex``;
* the step's output goes to the job's std.out/std.err as it comes, and, when the step ends, to
  its ``applicationLog`` file in DIRAC's layout (a "Standard Output" section headed by the
  executable's name between ten angle brackets, then a "Standard Error" one);
* application statuses as DIRAC's: ``Executing <step>``, then ``<exe> successful`` or
  ``'<exe>' Exited With Status <n>``; the first failing step stops the workflow and its exit
  status becomes this program's (``n & 0xFF``, never 0).

Statuses go, one JSON object per line (``{"ApplicationStatus": "..."}``), to ``--status-file``;
the wrapper relays them to the server (this process holds no credential). Workflows with
other module types are refused (exit 1) naming the module: the wrapper only starts this for
pure ``Script`` workflows. Log lines (``LogLevel``: DEBUG, VERBOSE, INFO, NOTICE, WARN, ERROR)
go to stdout.

Example::

    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> xml = os.path.join(d, "wf.xml")
    >>> with open(xml, "w") as f:
    ...     _ = f.write(SAMPLE.format(exe="/bin/echo", args="hello", log="echo.log"))
    >>> main([xml, "-o", "LogLevel=ERROR"], cwd=d)
    hello
    0
    >>> print(open(os.path.join(d, "echo.log")).read())
    <<<<<<<<<< /bin/echo Standard Output >>>>>>>>>>
    <BLANKLINE>
    hello
    <BLANKLINE>
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any

from pilot.dirac_workflow import (
    MAX_BYTES,
    Step,
    Workflow,
    WorkflowError,
    parse_workflow,
    split_jobexec_arguments,
)

LEVELS = ("DEBUG", "VERBOSE", "INFO", "NOTICE", "WARN", "ERROR", "FATAL", "ALWAYS")
DEFAULT_LOG = "applicationLog.txt"
#: DIRAC's Script module: a command that cannot be started "exits" with this status
CANNOT_START = 1000

#: a one-step workflow as DIRAC's Job API writes it (tests and the example use it)
SAMPLE = """<Workflow>
<name>sample</name>
<Parameter name="JobName" type="JDL" linked_module="" linked_parameter="" in="True" out="False"
 description=""><value><![CDATA[sample]]></value></Parameter>
<ModuleDefinition><body><![CDATA[
from DIRAC.Workflow.Modules.Script import Script
]]></body><type>Script</type></ModuleDefinition>
<StepDefinition><type>ScriptStep1</type>
<ModuleInstance><name>Script</name><type>Script</type></ModuleInstance>
</StepDefinition>
<StepInstance><name>RunScriptStep1</name><type>ScriptStep1</type>
<Parameter name="executable" type="string" linked_module="" linked_parameter="" in="True"
 out="False" description=""><value><![CDATA[{exe}]]></value></Parameter>
<Parameter name="arguments" type="string" linked_module="" linked_parameter="" in="True"
 out="False" description=""><value><![CDATA[{args}]]></value></Parameter>
<Parameter name="applicationLog" type="string" linked_module="" linked_parameter="" in="True"
 out="False" description=""><value><![CDATA[{log}]]></value></Parameter>
</StepInstance>
</Workflow>
"""


class StepError(Exception):
    """A step failed: ``status`` is its exit status (or :data:`CANNOT_START`)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Reporter:
    """Log lines on stdout (filtered by level) and statuses to the status file."""

    def __init__(self, level: str = "INFO", status_file: str | None = None) -> None:
        self.level = LEVELS.index(level.upper()) if level.upper() in LEVELS else 2
        self.status_file = status_file
        self.statuses: list[str] = []

    def log(self, level: str, message: str, component: str = "Workflow") -> None:
        if LEVELS.index(level) < self.level and level != "ALWAYS":
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        sys.stdout.write(f"{stamp} UTC dirac-jobexec/{component} {level}: {message}\n")
        sys.stdout.flush()

    def application_status(self, text: str) -> None:
        self.statuses.append(text)
        self.log("VERBOSE", f"application status: {text}")
        if self.status_file:
            with open(self.status_file, "a", encoding="utf-8") as stream:
                stream.write(json.dumps({"ApplicationStatus": text}) + "\n")


class _Sink:
    """A text stream taking bytes (stdout replaced by a StringIO, as under doctest)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, data: bytes) -> None:
        self.stream.write(data.decode("utf-8", "replace"))

    def flush(self) -> None:
        self.stream.flush()


def _binary(stream: Any) -> Any:
    return getattr(stream, "buffer", None) or _Sink(stream)


def _tee(source: IO[bytes], targets: Sequence[Any]) -> None:
    """Copy ``source`` to every target as it comes (flushing each chunk)."""
    while True:
        chunk = source.read1(65536) if hasattr(source, "read1") else source.read(65536)
        if not chunk:
            return
        for target in targets:
            target.write(chunk)
            target.flush()


def _app_name(executable: str) -> str:
    """DIRAC's application name of a step: the executable's base name up to the first '_'."""
    return os.path.basename(executable).split("_")[0]


def script_command(executable: str, arguments: str, cwd: str) -> tuple[str, list[str]]:
    """(executable as DIRAC's Script module names it, argv) for one step.

    >>> script_command("/bin/echo", "a 'b c'", "/nonexistent")
    ('/bin/echo', ['/bin/echo', 'a', 'b c'])
    """
    command = executable
    local = os.path.join(cwd, os.path.basename(executable))
    if executable and os.path.exists(local):
        executable = os.path.basename(executable)
        if not os.access(local, os.R_OK | os.X_OK):
            mode = stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
            os.chmod(local, mode)  # noqa: S103 - DIRAC's mode for sandbox executables
        command = shlex.quote(local)
    elif executable.endswith(".py"):
        command = f"{shlex.quote(sys.executable)} {executable}"
    elif shutil.which(executable):
        command = executable
    if arguments:
        command = f"{command} {arguments}"
    return executable, shlex.split(command)


def run_script_step(step: Step, workflow: Workflow, reporter: Reporter, cwd: str,
                    env: Mapping[str, str] | None = None) -> str:
    """Run one ``Script`` step; its "successful" application status, or :class:`StepError`.
    """
    params = step.parameters
    executable = params.get("executable", "")
    arguments = params.get("arguments", "")
    if not arguments.strip():
        arguments = workflow.value("arguments", arguments)
    log_name = params.get("applicationLog") or params.get("logFile") or DEFAULT_LOG
    if not executable:
        raise StepError("No executable defined", 1)
    try:
        executable, argv = script_command(executable, arguments, cwd)
    except ValueError as exc:  # shlex: unbalanced quotes
        raise StepError(f"'{_app_name(executable)}' bad arguments: {exc}", 1) from None
    reporter.log("INFO", f"Command is: {shlex.join(argv)}", "Script")
    with tempfile.TemporaryFile(dir=cwd) as out_copy, \
            tempfile.TemporaryFile(dir=cwd) as err_copy:
        try:
            proc = subprocess.Popen(argv, cwd=cwd,  # noqa: S603 - the job's own step env=dict(env) if env is not None else None,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
            status = None
        except OSError as exc:
            reporter.log("ERROR", f"System call execution failed: {exc}", "Script")
            sys.stderr.write(f"cannot start {argv[0]!r}: {exc}\n")
            sys.stderr.flush()
            err_copy.write(f"cannot start {argv[0]!r}: {exc}\n".encode())
            status = CANNOT_START
        if status is None:
            assert proc.stdout is not None and proc.stderr is not None  # noqa: S101 - PIPEs
            threads = [threading.Thread(target=_tee, args=(proc.stdout, [
                           _binary(sys.stdout), out_copy]), daemon=True),
                       threading.Thread(target=_tee, args=(proc.stderr, [
                           _binary(sys.stderr), err_copy]), daemon=True)]
            for thread in threads:
                thread.start()
            status = proc.wait()
            for thread in threads:
                thread.join()
        _write_application_log(os.path.join(cwd, log_name), executable, out_copy, err_copy)
    reporter.log("INFO", f"Output written to {log_name}, execution complete.", "Script")
    if status:
        reporter.log("ERROR", f"{shlex.join(argv)} exited with status {status}", "Script")
        raise StepError(f"'{_app_name(executable)}' Exited With Status {status}", status)
    name = _app_name(executable)
    app, version = params.get("applicationName", ""), params.get("applicationVersion", "")
    if app and app.lower() != "unknown":
        name += f" ({app} {version})"
    return f"{name} successful"


def _write_application_log(path: str, executable: str, out: IO[bytes],
                           err: IO[bytes]) -> None:
    """DIRAC's layout: the standard output section, then (if any) the standard error one."""
    with open(path, "wb") as log:
        log.write(f"<<<<<<<<<< {executable} Standard Output >>>>>>>>>>\n\n".encode())
        out.seek(0)
        shutil.copyfileobj(out, log)
        log.write(b" ")
        if err.tell():
            err.seek(0)
            log.write(f"<<<<<<<<<< {executable} Standard Error >>>>>>>>>>\n\n".encode())
            shutil.copyfileobj(err, log)
            log.write(b" ")


def run_workflow(workflow: Workflow, reporter: Reporter, cwd: str,
                 env: Mapping[str, str] | None = None) -> int:
    """Run the steps in order; 0, or the first failing step's status (``& 0xFF``, never 0).
    """
    unsupported = workflow.unsupported_modules()
    if unsupported:
        where, module = unsupported[0]
        message = (f"Workflow module {module!r} (step {where}) is not supported on this "
                   "node: it needs DIRAC's dirac-jobexec")
        reporter.log("ERROR", message)
        reporter.application_status(message)
        return 1
    steps = workflow.steps()
    job = os.environ.get("JOBID", "")
    reporter.log("INFO", f"Workflow {workflow.value('JobName') or workflow.name!r}"
                 + (f" of job {job}" if job else "") + f": {len(steps)} step(s)")
    for step in steps:
        reporter.log("INFO", f"Executing StepInstance {step.name} of type {step.type}")
        reporter.application_status(f"Executing {step.name}")
        started = time.monotonic()
        try:
            status = run_script_step(step, workflow, reporter, cwd, env)
        except StepError as exc:
            reporter.log("ERROR", str(exc), "Script")
            reporter.application_status(str(exc))
            reporter.log("NOTICE", "Workflow execution finished with errors, exiting")
            return (exc.status & 0xFF) or 1
        reporter.log("INFO", f"{step.name}: {status} "
                     f"({time.monotonic() - started:.1f} s)", "Script")
        reporter.application_status(status)
    reporter.log("INFO", "Workflow execution successful")
    return 0


def main(argv: Sequence[str] | None = None, cwd: str | None = None) -> int:
    """The command (see the module docstring); the process's exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    status_file = None
    if args[:1] == ["--status-file"] and len(args) > 1:
        status_file, args = args[1], args[2:]
    cwd = cwd or os.getcwd()
    reporter = Reporter(status_file=status_file)
    try:
        xml_file, options, params = split_jobexec_arguments(args)
        with open(os.path.join(cwd, xml_file), "rb") as stream:
            data = stream.read(MAX_BYTES + 1)
        workflow = parse_workflow(data).with_values(params)
        reporter = Reporter(options.get("LogLevel") or workflow.value("LogLevel") or "INFO",
                            status_file)
        env: dict[str, Any] = dict(os.environ)
        for item in workflow.value("ExecutionEnvironment").split(";"):
            name, sep, value = item.partition("=")
            if sep and name.strip():
                env[name.strip()] = value
        return run_workflow(workflow, reporter, cwd, env)
    except (WorkflowError, OSError) as exc:
        message = f"Invalid workflow description: {exc}"
        reporter.log("ERROR", message)
        reporter.application_status(message[:255])
        return 1


if __name__ == "__main__":
    sys.exit(main())
