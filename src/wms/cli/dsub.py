"""``dsub``: submit jobs, as COMDIRAC's ``dsub`` does.

The JDL starts from ``-J`` (a file or inline text) or the default
``[OutputSandbox = {"std.out","std.err"};]``; options set attributes; ``#JDL A = v`` lines of the
script merge in (options win). A relative executable is uploaded in the input sandbox and names
the job; without an executable the script is read from stdin (job name ``STDIN``).
``--Parametric a,b,1:10:2`` makes one parametric JDL of the plain values and one per
``start:stop[:step[:factor]]`` loop (stop exclusive). Prints the job IDs comma-separated;
a failed submission prints ``ERROR <jdl>: <message>`` and the exit status is 2.

pilotwms additions (docs/events.md, docs/queues.md, docs/dataset-jobs.md): ``--event NAME``
subscribes the job to an event (it waits in Standby); ``--NumberOfGPUs``, ``--GPUModel``,
``--MinRAM``, ``--MaxRAM``, ``--WholeNode`` ask for capacity, ``--wait-for-resources`` keeps a
job no configured queue can run Waiting instead of refusing it; ``--dataset PATH`` or
``--query "run=42 kind=raw"`` with ``--files-per-job N`` make one job per group of files;
``--restart JOBID`` resubmits a finished job. A positional argument ending in ``.jdl`` that
is a file is read as the JDL (``dsub --event an00h000 job.jdl``).

Example::

    dsub -N hello /bin/echo hello world          # 42
    echo 'date' | dsub --Parametric 1:4          # 43,44,45
    dsub --dataset /demo/datasets/run42 --files-per-job 10 job.jdl   # 46,47,48
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from core.cli.common import EXIT_ERROR, run
from core.exceptions import InvalidArgumentError, InvalidJDLError, PilotWMSError
from wms.cli._common import progress_for
from wms.client import WMSClient
from wms.logic.jdl import JDL, JDLValue, parse_jdl

DEFAULT_JDL = '[OutputSandbox = {"std.out","std.err"};]'
_FLOAT = r"[-+]?(((\d*\.)?\d+)|(\d+\.))([eE][-+]\d+)?"
_LOOP = re.compile(rf"^(?P<start>{_FLOAT}):(?P<stop>{_FLOAT})"
                   rf"(:(?P<step>{_FLOAT})(:(?P<factor>{_FLOAT}))?)?$")
MAX_LOOP = 1_000_000


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dsub", description="Submit jobs to the pilotwms WMS (COMDIRAC's dsub).")
    p.add_argument("-J", "--JDL", dest="jdl", help="JDL file or inline")
    p.add_argument("-N", "--JobName", dest="name", help="job name")
    p.add_argument("-E", "--StdError", dest="stderr", help="job standard error file")
    p.add_argument("-O", "--StdOutput", dest="stdout", help="job standard output file")
    p.add_argument("--OutputSandbox", help="job output sandbox (comma-separated)")
    p.add_argument("--InputSandbox", help="job input sandbox (comma-separated)")
    p.add_argument("--OutputData", help="job output data (comma-separated)")
    p.add_argument("--InputData", help="job input data LFNs (comma-separated)")
    p.add_argument("--OutputPath", help="job output data path prefix")
    p.add_argument("--OutputSE", help="job output data SE")
    p.add_argument("--CPUTime", help="job CPU time limit (in seconds)")
    p.add_argument("--Site", help="job Site list")
    p.add_argument("--BannedSite", help="job Site exclusion list")
    p.add_argument("--Platform", help="job Platform list")
    p.add_argument("--Priority", help="job priority")
    p.add_argument("--JobGroup", help="job JobGroup")
    p.add_argument("--Tag", help="job Tags (comma-separated)")
    p.add_argument("--NumberOfProcessors", help="number of processors")
    p.add_argument("--NumberOfGPUs", "--GPUs", dest="NumberOfGPUs", help="number of GPUs")
    p.add_argument("--GPUModel", help="GPU model (e.g. A100)")
    p.add_argument("--MinRAM", help="memory the job needs (MB)")
    p.add_argument("--MaxRAM", help="memory limit of the job (MB)")
    p.add_argument("--WholeNode", action="store_true", help="the job wants a whole node")
    p.add_argument("--wait-for-resources", action="store_true",
                   help="keep the job Waiting even if no configured queue can run it")
    p.add_argument("--event", help="subscribe the job to this event (it waits in Standby)")
    p.add_argument("--dataset", help="run the job over this catalog dataset")
    p.add_argument("--query", help='run the job over the files of this metadata query '
                   '("run=42 kind=raw")')
    p.add_argument("--query-path", default=None,
                   help="directory the query searches (default: the working directory)")
    p.add_argument("--files-per-job", type=int, default=None,
                   help="files per job with --dataset/--query (default 1)")
    p.add_argument("--restart", metavar="JOBID",
                   help="a new job with the description and input sandbox of a finished one")
    p.add_argument("--Parametric",
                   help="comma-separated values and/or loops <start>:<stop>[:<step>[:<factor>]]")
    p.add_argument("--ForceExecUpload", action="store_true",
                   help="upload the executable with the input sandbox even if absolute")
    p.add_argument("-v", "--verbose", action="store_true", help="verbose output")
    p.add_argument("executable", nargs="?",
                   help="command to run; a relative path is uploaded in the input sandbox; "
                        "none: the script is read from stdin")
    p.add_argument("arguments", nargs=argparse.REMAINDER,
                   help="arguments of the executable (options must come before it)")
    return p


def _list(text: str) -> list[JDLValue]:
    """DIRAC's list arguments: ``a,b`` or ``{a,b}`` (items may be quoted)."""
    items = text.strip().strip("{}").split(",")
    return [item.strip().strip('"') for item in items if item.strip().strip('"')]


def _int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidArgumentError(f"--{name} needs an integer, not {text!r}") from None


def option_attributes(opts: argparse.Namespace) -> JDL:
    """The attributes the options set (they override the JDL and the script directives)."""
    attrs = JDL()
    for name, value in (("JobName", opts.name), ("StdError", opts.stderr),
                        ("StdOutput", opts.stdout), ("OutputPath", opts.OutputPath),
                        ("OutputSE", opts.OutputSE), ("JobGroup", opts.JobGroup)):
        if value is not None:
            attrs[name] = value
    for name, value in (("OutputSandbox", opts.OutputSandbox),
                        ("InputSandbox", opts.InputSandbox), ("OutputData", opts.OutputData),
                        ("InputData", opts.InputData), ("Site", opts.Site),
                        ("BannedSites", opts.BannedSite), ("Platform", opts.Platform),
                        ("Tags", opts.Tag)):
        if value is not None:
            attrs[name] = _list(value)
    for name, value in (("CPUTime", opts.CPUTime), ("Priority", opts.Priority),
                        ("NumberOfProcessors", opts.NumberOfProcessors),
                        ("NumberOfGPUs", getattr(opts, "NumberOfGPUs", None)),
                        ("MinRAM", getattr(opts, "MinRAM", None)),
                        ("MaxRAM", getattr(opts, "MaxRAM", None))):
        if value is not None:
            attrs[name] = _int(name, value)
    if getattr(opts, "GPUModel", None):
        attrs["GPUModel"] = opts.GPUModel
    if getattr(opts, "WholeNode", False):
        attrs["WholeNode"] = True
    if getattr(opts, "wait_for_resources", False):
        attrs["WaitForResources"] = True
    if getattr(opts, "event", None):
        attrs["Event"] = opts.event
    return attrs


def script_directives(lines: Sequence[str]) -> JDL:
    """``#JDL Name = value`` lines (value in JDL syntax, quotes optional for words)."""
    found = JDL()
    for line in lines:
        if not line.startswith("#JDL "):
            continue
        body = line[5:].strip()
        if "=" not in body:
            raise InvalidJDLError(f"bad JDL directive {line.strip()!r}: expected '#JDL A = v'")
        name, value = (part.strip() for part in body.split("=", 1))
        parsed = parse_jdl(f"[{name} = {value.rstrip(';')};]")
        for key, item in parsed.items():
            found[key] = item
    return found


def file_directives(path: str) -> JDL:
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError):  # a binary executable has no directives
        return JDL()
    return script_directives(lines)


def merge(target: JDL, attrs: JDL) -> None:
    for name, value in attrs.items():
        spelled = target.name_of(name) or name
        target[spelled] = value


def append_input(jdl: JDL, path: str) -> None:
    name = jdl.name_of("InputSandbox") or "InputSandbox"
    jdl[name] = [*jdl.get_list("InputSandbox"), path]


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def loop_length(start: float, stop: float, step: float, factor: float) -> int:
    """How many values ``start:stop:step:factor`` gives (stop exclusive), DIRAC's rule."""
    sign = 1.0 if start < stop else -1.0
    value, count = start, 0
    while (value - stop) * sign < 0:
        count += 1
        following = value * factor + step
        if (following - value) * sign <= 0 or count > MAX_LOOP:
            raise InvalidArgumentError(
                f"Error in parametric specification: {start}:{stop}:{step}:{factor}")
        value = following
    return count


def parametric_jdls(jdl: JDL, spec: str | None) -> list[JDL]:
    """The JDLs to submit: ``jdl`` itself, or one per value list / loop of ``spec``
    (``--Parametric``, else the JDL's ``Parametric`` attribute)."""
    if spec is None:
        if "Parametric" not in jdl:
            return [jdl]
        spec = ",".join(jdl.get_str_list("Parametric"))
    values: list[JDLValue] = []
    out: list[JDL] = []
    loops = []
    for item in spec.split(","):
        match = _LOOP.match(item.strip())
        if match is None:
            values.append(item)
            continue
        start, stop = _number(match["start"]), _number(match["stop"])
        step = _number(match["step"]) if match["step"] else 1
        factor = _number(match["factor"]) if match["step"] and match["factor"] else 1
        loops.append((start, stop, step, factor))
    if values:
        new = jdl.copy()
        new["Parameters"] = values
        out.append(new)
    for start, stop, step, factor in loops:
        new = jdl.copy()
        new["ParameterStart"] = start
        new["Parameters"] = loop_length(start, stop, step, factor)
        new["ParameterStep"] = step
        new["ParameterFactor"] = factor
        out.append(new)
    return out


def build_jdl(opts: argparse.Namespace, stdin_lines: Sequence[str] | None,
              temp_files: list[str]) -> JDL:
    """The job's JDL from the options, the script and its directives."""
    text = DEFAULT_JDL
    if opts.jdl:
        text = Path(opts.jdl).read_text() if os.path.isfile(opts.jdl) else opts.jdl
    jdl = parse_jdl(text)
    attrs = option_attributes(opts)
    merge(jdl, attrs)
    cmd: str | None = opts.executable
    if cmd is None and "Executable" in jdl:
        cmd = jdl.get_str("Executable")
    if cmd is None:
        lines = list(stdin_lines or [])
        merge(jdl, script_directives(lines))
        merge(jdl, attrs)
        fd, name = tempfile.mkstemp(prefix="dsub-", suffix=".sh")
        with os.fdopen(fd, "w") as script:
            script.writelines(lines)
        os.chmod(name, 0o700)  # noqa: S103 - the job's own script, for its owner
        temp_files.append(name)
        jdl[jdl.name_of("Executable") or "Executable"] = os.path.basename(name)
        append_input(jdl, name)
        if "JobName" not in jdl:
            jdl["JobName"] = "STDIN"
        return jdl
    merge(jdl, file_directives(cmd))
    merge(jdl, attrs)
    upload = opts.ForceExecUpload or not cmd.startswith("/")
    executable = os.path.basename(cmd) if upload else cmd  # the sandbox keeps base names
    jdl[jdl.name_of("Executable") or "Executable"] = executable
    if upload:
        if not os.path.isfile(cmd):
            raise InvalidArgumentError(f'Executable file "{cmd}" not found')
        if cmd not in jdl.get_list("InputSandbox"):
            append_input(jdl, cmd)
        if "JobName" not in jdl:
            jdl["JobName"] = cmd
    if opts.arguments:
        args = opts.arguments[1:] if opts.arguments[0] == "--" else opts.arguments
        if args:
            # the job wrapper splits Arguments like a POSIX shell: quote what needs it, so
            # ``dsub /bin/sh -c "exit 3"`` runs with the two arguments it was given
            jdl[jdl.name_of("Arguments") or "Arguments"] = shlex.join(args)
    return jdl


def main(argv: Sequence[str] | None = None) -> int:
    """The ``dsub`` command (console script); returns the exit status."""
    return run(_main, argv)


def _main(argv: Sequence[str]) -> int:
    opts = parser().parse_args(argv)
    if opts.restart is not None:
        return _restart(opts.restart)
    if (opts.executable and opts.executable.endswith(".jdl") and os.path.isfile(opts.executable)
            and not opts.jdl and not opts.arguments):
        opts.jdl, opts.executable = opts.executable, None
    if opts.dataset and opts.query:
        raise InvalidArgumentError("give --dataset or --query, not both")
    if opts.files_per_job is not None and not (opts.dataset or opts.query):
        raise InvalidArgumentError("--files-per-job goes with --dataset or --query")
    stdin_lines = None
    needs_stdin = opts.executable is None and not _jdl_has_executable(opts)
    if needs_stdin:
        if sys.stdin.isatty():
            print("\nThe executable is not given\nType in the executable script lines, "
                  "finish with ^D\nor exit job submission with ^C\n", file=sys.stderr)
        stdin_lines = sys.stdin.readlines()
    temp_files: list[str] = []
    try:
        jdl = build_jdl(opts, stdin_lines, temp_files)
        if opts.dataset or opts.query:
            return _on_dataset(opts, jdl)
        jdls = parametric_jdls(jdl, opts.Parametric)
        if opts.verbose:
            print("JDL:")
            for item in jdls:
                print(item.to_text())
        ids: list[int] = []
        errors: list[tuple[str, str]] = []
        with WMSClient() as wms:
            for item in jdls:
                try:
                    ids.extend(wms.submit(item, progress=progress_for("Uploading sandbox")))
                except PilotWMSError as exc:
                    errors.append((item.to_text(), exc.message))
        if ids:
            if opts.verbose:
                print("JobID:")
            print(",".join(map(str, ids)))
        for text, message in errors:
            print(f"ERROR {text}: {message}", file=sys.stderr)
        return EXIT_ERROR if errors else 0
    finally:
        for name in temp_files:
            Path(name).unlink(missing_ok=True)


def _restart(job: str) -> int:
    if not job.strip().isdigit():
        raise InvalidArgumentError(f"--restart needs a job ID, not {job!r}")
    with WMSClient() as wms:
        print(wms.restart(int(job)))
    return 0


def _on_dataset(opts: argparse.Namespace, jdl: JDL) -> int:
    """``--dataset``/``--query``: one job per group of files, all or none."""
    size = 1 if opts.files_per_job is None else opts.files_per_job
    if size < 1:
        raise InvalidArgumentError("--files-per-job must be at least 1")
    if opts.Parametric or "Parameters" in jdl:
        raise InvalidArgumentError("--dataset/--query make one job per group of files: "
                                   "no --Parametric")
    with WMSClient() as wms:
        if opts.dataset:
            ids = wms.submit_dataset(jdl, size, dataset=_absolute(opts.dataset),
                                     progress=progress_for("Uploading sandbox"))
        else:
            from dms.catalog_client import FileCatalogClient
            from dms.cli.dfind import parse_query

            fields = FileCatalogClient(wms.rpc("DataManagement/FileCatalog")) \
                .get_metadata_fields()
            try:
                query = parse_query(shlex.split(opts.query), fields)
            except ValueError as exc:
                raise InvalidArgumentError(f"--query: {exc}") from None
            ids = wms.submit_dataset(jdl, size, query=query,
                                     path=_absolute(opts.query_path or "."),
                                     progress=progress_for("Uploading sandbox"))
    print(",".join(map(str, ids)))
    return 0


def _absolute(path: str) -> str:
    """A catalog path, relative ones from the session's working directory (``dcd``)."""
    if path.startswith("/"):
        return path
    from dms.cli._common import session

    return session().resolve(path)


def _jdl_has_executable(opts: argparse.Namespace) -> bool:
    text = DEFAULT_JDL
    if opts.jdl:
        try:
            text = Path(opts.jdl).read_text() if os.path.isfile(opts.jdl) else opts.jdl
            return "Executable" in parse_jdl(text)
        except (OSError, PilotWMSError):
            return True  # the error is reported by build_jdl
    return False


if __name__ == "__main__":
    sys.exit(main())
