"""DIRAC's ``Dirac`` and ``Job`` API on top of pilotwms: change the imports, keep the script.

This module is the compatibility surface, so it keeps DIRAC's camelCase names and its result
dictionaries (``{"OK": True, "Value": ...}`` / ``{"OK": False, "Message": ...}``, built by
:func:`S_OK` and :func:`S_ERROR`, which exist only here). Everything else in pilotwms raises
exceptions; use :class:`wms.client.WMSClient` in new code.

The one deliberate difference: DIRAC's ``Job`` writes ``Executable = "dirac-jobexec"`` with a
workflow XML (``jobDescription.xml``) in the input sandbox; this ``Job`` writes the real
command. One ``setExecutable`` gives ``Executable``/``Arguments`` directly (a local script
named by a relative path is put in the input sandbox and run by its base name; absolute paths
are the worker node's own, as with ``dsub``). Several steps, or a step with a
``logFile``, become ``Executable = "/bin/sh"`` running the steps in order, stopping at the
first failure (as DIRAC's workflow does), each step's output going to its ``logFile`` (added
to the output sandbox) or else to the job's standard output. Without ``logFile`` DIRAC writes
``Script<n>_<name>.log`` files; here that output is in ``std.out``. ``setParameterSequence``
makes a parametric JDL (``Parameters.<name>``, ``%(name)s``); ``addToWorkflow`` has no
workflow to feed: use ``%(name)s`` in the arguments instead. ``JobGroup`` has no default (DIRAC
uses the VO name), and sites and platforms are not checked against a configuration.

Example::

    from wms.dirac_api import Dirac, Job          # was: from DIRAC.Interfaces.API...
    job = Job()
    job.setName("hello")
    job.setExecutable("/bin/echo", arguments="hello world")
    job.setCPUTime(600)
    result = Dirac().submitJob(job)               # {'OK': True, 'Value': 12, 'JobID': 12}
    if result["OK"]:
        print(Dirac().getJobStatus(result["Value"]))
"""

# ruff: noqa: N802, N803, N815 - DIRAC's camelCase API is the point of this module

from __future__ import annotations

import glob
import os
import pprint
import shlex
from collections.abc import Callable
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from core.exceptions import PilotWMSError
from wms.client import WMSClient, job_ids
from wms.logic.jdl import JDL, Expr, JDLValue, parse_jdl
from wms.logic.job_description import LOG_LEVELS
from wms.logic.parametric import is_parametric
from wms.logic.states import allowed

__all__ = ["S_ERROR", "S_OK", "BadJobParameterError", "Dirac", "Job"]

T = TypeVar("T")
Result = dict[str, Any]

SUMMARY_HEADERS = ["Status", "MinorStatus", "ApplicationStatus", "Site", "JobGroup",
                   "LastUpdateTime", "HeartBeatTime", "SubmissionTime", "Owner"]
NOT_AVAILABLE = "Not available yet."


def S_OK(value: Any = None) -> Result:
    """DIRAC's success result."""
    return {"OK": True, "Value": value}


def S_ERROR(message: str | int = "", payload: str = "") -> Result:
    """DIRAC's error result: ``S_ERROR("msg")`` or ``S_ERROR(errno, "msg")``."""
    if isinstance(message, int):
        return {"OK": False, "Message": payload, "Errno": message}
    return {"OK": False, "Message": message, "Errno": 0}


def _from_exception(exc: PilotWMSError) -> Result:
    """The result DIRAC's client would give for this server error (extra keys kept)."""
    result = {"OK": False, "Message": exc.wire_message(), "Errno": exc.errno}
    result.update(exc.extra)
    return result


class BadJobParameterError(ValueError):
    """DIRAC's exception for contradictory ``setNumberOfProcessors`` arguments."""


def _multi(values: list[str]) -> JDLValue:
    """DIRAC writes one value as a scalar and several as a list."""
    return values[0] if len(values) == 1 else list(values)


def _names(value: str | list[str]) -> list[str]:
    items = value.split(";") if isinstance(value, str) else value
    return [str(item).strip() for item in items if str(item).strip()]


class Job:
    """A job description, set up with DIRAC's ``Job`` methods (see the module notes)."""

    def __init__(self, script: str | None = None, stdout: str = "std.out",
                 stderr: str = "std.err") -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.errorDict: dict[str, list[str]] = {}
        self.numberOfParameters = 0
        self.parameterSeqs: dict[str, list[Any]] = {}
        self.steps: list[tuple[str, str, str, bool]] = []  # command, arguments, log, local
        self.addToInputSandbox: list[str] = []
        self.addToOutputSandbox: list[str] = []
        self.attributes = JDL({"JobType": "User", "Priority": 1, "JobName": "Name",
                               "StdOutput": stdout, "StdError": stderr, "LogLevel": "INFO"})
        if script is not None:
            self._reportError("workflow XML scripts are not supported: use setExecutable",
                              "__init__")

    def _reportError(self, message: str, method: str = "", **_kwargs: Any
                     ) -> Result:
        self.errorDict.setdefault(method or "Job", []).append(message)
        return S_ERROR(message)

    # -- what runs -----------------------------------------------------------------------

    def setExecutable(self, executable: str, arguments: str = "",
                      logFile: str = "", modulesList: list[str] | None = None,
                      parameters: list[Any] | None = None,
                      paramValues: list[Any] | None = None,
                      includeInSandbox: bool = True) -> Result:
        """A command to run: an absolute path or a command on the worker node's PATH, or a
        local script given by a relative path (uploaded in the input sandbox, as ``dsub``
        does; DIRAC also uploads existing absolute paths). Several calls run in sequence."""
        if not all(isinstance(x, str) for x in (executable, arguments, logFile)):
            return self._reportError("Expected strings for executable and arguments",
                                     "setExecutable")
        command, local = executable, False
        if includeInSandbox and not os.path.isabs(executable) and os.path.exists(executable):
            self.addToInputSandbox.append(executable)
            command, local = os.path.basename(executable), True
        self.steps.append((command, arguments, logFile, local))
        if logFile:
            self.addToOutputSandbox.append(logFile)
        return S_OK(len(self.steps))

    def setExecutionEnv(self, environmentDict: dict[str, Any]) -> Result:
        if not isinstance(environmentDict, dict):
            return self._reportError("Expected dictionary of environment variables",
                                     "setExecutionEnv")
        if environmentDict:
            env = [f"{key}={quote(str(value))}" for key, value in environmentDict.items()]
            self.attributes["ExecutionEnvironment"] = _multi(env)
        return S_OK()

    # -- plain attributes ----------------------------------------------------------------

    def _set_str(self, name: str, value: Any, method: str, what: str) -> Result:
        if not isinstance(value, str):
            return self._reportError(f"Expected string for {what}", method)
        self.attributes[name] = value
        return S_OK()

    def setName(self, jobName: str) -> Result:
        return self._set_str("JobName", jobName, "setName", "job name")

    def setJobGroup(self, jobGroup: str) -> Result:
        return self._set_str("JobGroup", jobGroup, "setJobGroup", "job group name")

    def setType(self, jobType: str) -> Result:
        return self._set_str("JobType", jobType, "setType", "job type")

    def setPriority(self, priority: int) -> Result:
        if not isinstance(priority, int) or isinstance(priority, bool):
            return self._reportError("Expected int for priority", "setPriority")
        self.attributes["Priority"] = priority
        return S_OK()

    def setCPUTime(self, timeInSecs: int | str) -> Result:
        try:
            seconds = int(timeInSecs)
        except (TypeError, ValueError):
            return self._reportError("Expected numerical string or int for CPU time in seconds",
                                     "setCPUTime")
        self.attributes["CPUTime"] = seconds
        return S_OK()

    def setLogLevel(self, logLevel: str) -> Result:
        if not isinstance(logLevel, str):
            return self._reportError("Expected string for logging level", "setLogLevel")
        if logLevel.upper() not in LOG_LEVELS:
            return self._reportError(f'Error Level "{logLevel}" not valid', "setLogLevel")
        self.attributes["LogLevel"] = logLevel
        return S_OK()

    def setPlatform(self, platform: str) -> Result:
        if not isinstance(platform, str):
            return self._reportError("Expected string for platform", "setPlatform")
        if platform.lower() != "any":
            self.attributes["Platform"] = platform
        return S_OK()

    def setTag(self, tags: str | list[str]) -> Result:
        if not isinstance(tags, str | list):
            return self._reportError("Expected string or list for job tags", "setTag")
        self.attributes["Tags"] = _multi(_names(tags))
        return S_OK()

    def setDestination(self, destination: str | list[str]) -> Result:
        if isinstance(destination, str):
            destination = destination.replace(" ", "").split(",")
        if not isinstance(destination, list):
            return self._reportError("Invalid destination site, expected string or list",
                                     "setDestination")
        sites = sorted({s for s in destination if s.lower() not in ("any", "")})
        if sites:
            self.attributes["Site"] = _multi(sites)
        return S_OK()

    def setBannedSites(self, sites: str | list[str]) -> Result:
        if not isinstance(sites, str | list) or (isinstance(sites, list) and not sites):
            return self._reportError("Expected site string or list of sites", "setBannedSites")
        self.attributes["BannedSites"] = _multi(_names(sites))
        return S_OK()

    def setNumberOfProcessors(self, numberOfProcessors: int = 0,
                              minNumberOfProcessors: int = 0,
                              maxNumberOfProcessors: int = 0) -> Result:
        """DIRAC's rules: an exact number, or a min/max range (min defaults to 1);
        contradictory arguments raise :class:`BadJobParameterError`."""
        number, low, high = (numberOfProcessors or 0, minNumberOfProcessors or 0,
                             maxNumberOfProcessors or 0)
        if low and high and low == high:
            number, low, high = low, 0, 0
        if number:
            if low:
                raise BadJobParameterError(
                    "minNumberOfProcessors cannot be used with numberOfProcessors")
            if high:
                raise BadJobParameterError(
                    "maxNumberOfProcessors cannot be used with numberOfProcessors")
            self.attributes["NumberOfProcessors"] = number
            self.attributes["MaxNumberOfProcessors"] = number
            return S_OK()
        if not low and not high:
            return S_OK()
        low = low or 1
        if high:
            if high < low:
                raise BadJobParameterError(
                    "minNumberOfProcessors must be less than or equal to maxNumberOfProcessors")
            self.attributes["MaxNumberOfProcessors"] = high
        self.attributes["MinNumberOfProcessors"] = low
        return S_OK()

    def setRAMRequirements(self, ramRequired: int = 0, maxRAM: int = 0) -> Result:
        if ramRequired and maxRAM and ramRequired > maxRAM:
            return self._reportError("Invalid settings, ramRequired is higher than maxRAM",
                                     "setRAMRequirements")
        if ramRequired:
            self.attributes["MinRAM"] = ramRequired
        if maxRAM:
            self.attributes["MaxRAM"] = maxRAM
        return S_OK()

    # -- sandboxes and data --------------------------------------------------------------

    def setInputSandbox(self, files: str | list[str]) -> Result:
        if isinstance(files, str):
            files = [files]
        if not isinstance(files, list) or not files:
            return self._reportError(
                "Expected file string or list of files for input sandbox contents",
                "setInputSandbox")
        resolved: list[JDLValue] = []
        for name in files:
            matches = sorted(glob.glob(name)) if "*" in name else [name]
            resolved.extend(m.rstrip("/") for m in matches)
        self.attributes["InputSandbox"] = resolved
        return S_OK()

    def setOutputSandbox(self, files: str | list[str]) -> Result:
        if isinstance(files, str):
            files = [files]
        if not isinstance(files, list) or not files:
            return self._reportError(
                "Expected file string or list of files for output sandbox contents",
                "setOutputSandbox")
        self.attributes["OutputSandbox"] = list(files)
        return S_OK()

    def setInputData(self, lfns: str | list[str]) -> Result:
        if isinstance(lfns, list) and lfns:
            self.attributes["InputData"] = ["LFN:" + x.replace("LFN:", "") for x in lfns]
        elif isinstance(lfns, str):
            self.attributes["InputData"] = lfns
        else:
            return self._reportError("Expected lfn string or list of lfns for input data",
                                     "setInputData")
        return S_OK()

    def setOutputData(self, lfns: str | list[str], outputSE: str | list[str] | None = None,
                      outputPath: str = "") -> Result:
        if isinstance(lfns, list) and lfns:
            self.attributes["OutputData"] = _multi(list(lfns))
        elif isinstance(lfns, str):
            self.attributes["OutputData"] = lfns
        else:
            return self._reportError(
                "Expected file name string or list of file names for output data",
                "setOutputData")
        if outputSE:
            if not isinstance(outputSE, str | list):
                return self._reportError("Expected string or list for OutputSE",
                                         "setOutputData")
            ses = [outputSE] if isinstance(outputSE, str) else outputSE
            self.attributes["OutputSE"] = _multi([s.strip() for s in ses])
        if outputPath:
            if not isinstance(outputPath, str):
                return self._reportError("Expected string for OutputPath", "setOutputData")
            self.attributes["OutputPath"] = outputPath.lstrip("/")
        return S_OK()

    def setParameterSequence(self, name: str, parameterList: list[Any],
                             addToWorkflow: bool | str = False) -> Result:
        """Values of ``%(name)s`` for a parametric job (all sequences of one length)."""
        if self.numberOfParameters == 0:
            self.numberOfParameters = len(parameterList)
        elif self.numberOfParameters != len(parameterList):
            return self._reportError("Parameter sequences of different length",
                                     "setParameterSequence")
        self.parameterSeqs[name] = list(parameterList)
        return S_OK()

    # -- the JDL -------------------------------------------------------------------------

    def _command(self) -> tuple[str, str]:
        if len(self.steps) == 1 and not self.steps[0][2]:
            return self.steps[0][0], self.steps[0][1]
        parts = []
        for command, arguments, log, local in self.steps:
            text = f"{shlex.quote('./' + command if local else command)} {arguments}".strip()
            if log:
                text = f"( {text} ) > {shlex.quote(log)} 2>&1"
            parts.append(text)
        return "/bin/sh", "-c " + shlex.quote(" && ".join(parts))

    def _to_jdl(self) -> JDL:
        """The job description as a :class:`JDL` (with parameter sequences applied)."""
        jdl = self.attributes.copy()
        if self.steps:
            jdl["Executable"], arguments = self._command()
            if arguments:
                jdl["Arguments"] = arguments
        inputs = [*jdl.get_list("InputSandbox"), *self.addToInputSandbox]
        if inputs:
            jdl["InputSandbox"] = list(dict.fromkeys(inputs))
        outputs = [*jdl.get_list("OutputSandbox"), *self.addToOutputSandbox, self.stderr,
                   self.stdout]
        jdl["OutputSandbox"] = list(dict.fromkeys(outputs))
        if self.numberOfParameters:
            for name, values in self.parameterSeqs.items():
                placeholder = f"%({name})s"
                if name == "InputSandbox":
                    jdl["InputSandbox"] = [*jdl.get_list("InputSandbox"), placeholder]
                    vector: list[JDLValue] = list(values)
                elif name in jdl and isinstance(jdl[name], list):
                    current = jdl.get_list(name)
                    vector = [[*current, *(v if isinstance(v, list) else [v])] for v in values]
                    jdl[name] = placeholder
                else:
                    vector = list(values)
                    jdl[name] = placeholder
                jdl[f"Parameters.{name}"] = vector
            jdl["Parameters"] = self.numberOfParameters
        return jdl

    def _toJDL(self, xmlFile: str = "", jobDescriptionObject: Any = None) -> str:
        """The JDL text (DIRAC's method name; with the outer brackets)."""
        return self._to_jdl().to_text()


def _check_ids(job_id: Any, multiple: bool) -> list[int]:
    if isinstance(job_id, list | tuple | dict):
        if not multiple:
            raise ValueError("Expected int or string, not list")
        return job_ids([str(j) for j in job_id])
    if isinstance(job_id, bool) or not isinstance(job_id, int | str):
        raise ValueError("Expected (list of) integer or string for existing jobID")
    return job_ids([str(job_id)])


def _jdl_parameters(text: str) -> dict[str, Any]:
    """DIRAC's ``getJobJDL`` dictionary: lists of strings (``LFN:`` dropped), other values as
    unquoted text, nested records as JDL text."""
    out: dict[str, Any] = {}
    for name, value in parse_jdl(text).items():
        if isinstance(value, list):
            out[name] = [_plain(v).replace("LFN:", "") for v in value]
        else:
            out[name] = _plain(value)
    return out


def _plain(value: JDLValue) -> str:
    if isinstance(value, JDL):
        return value.to_text()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Expr | str):
        return str(value)
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value)
    return str(value)


class Dirac:
    """DIRAC's ``Dirac`` API for jobs; results are DIRAC's dictionaries."""

    def __init__(self, useCertificates: bool = False, vo: str | None = None,
                 *, client: WMSClient | None = None) -> None:
        self._client = client

    @property
    def wms(self) -> WMSClient:
        if self._client is None:
            self._client = WMSClient()
        return self._client

    def _call(self, func: Callable[[], T]) -> Result:
        try:
            return S_OK(func())
        except PilotWMSError as exc:
            return _from_exception(exc)
        except ValueError as exc:
            return S_ERROR(str(exc))

    # -- submission ----------------------------------------------------------------------

    def submitJob(self, job: Job | str, mode: str = "wms") -> Result:
        """Submit a :class:`Job`, a JDL text or a JDL file: ``Value`` is the job ID, or the
        list of IDs of a parametric job."""
        if mode.lower() != "wms":
            return S_ERROR(f"submission mode {mode!r} is not supported (only 'wms')")
        if isinstance(job, Job):
            if job.errorDict:
                return S_ERROR("; ".join(f"{method}: {', '.join(errors)}"
                                         for method, errors in job.errorDict.items()))
            if not job.steps:
                return S_ERROR("the job has no executable: call setExecutable first")
            jdl = job._to_jdl()
        else:
            text = Path(job).read_text() if os.path.exists(job) else job
            try:
                jdl = parse_jdl(text)
            except PilotWMSError as exc:
                return _from_exception(exc)
        parametric = is_parametric(jdl)
        result = self._call(lambda: self.wms.submit(jdl))
        if result["OK"]:
            ids = result["Value"]
            result["Value"] = ids if parametric else ids[0]
            result["JobID"] = result["Value"]
            result["requireProxyUpload"] = False
        return result

    # -- actions -------------------------------------------------------------------------

    def _filtered_action(self, jobID: Any, targets: tuple[str, ...],
                         action: Callable[[list[int]], list[int]]) -> Result:
        """DIRAC's way: only the jobs whose status may change to one of ``targets``."""
        try:
            ids = _check_ids(jobID, multiple=True)
        except ValueError as exc:
            return S_ERROR(str(exc))

        def run() -> list[int]:
            statuses = self.wms.status(ids)
            chosen = [j for j in ids if j in statuses
                      and any(allowed(statuses[j], t) and statuses[j] != t for t in targets)]
            return action(chosen) if chosen else []

        return self._call(run)

    def killJob(self, jobID: Any) -> Result:
        return self._filtered_action(jobID, ("Killed", "Deleted"), self.wms.kill)

    def deleteJob(self, jobID: Any) -> Result:
        return self._filtered_action(jobID, ("Killed", "Deleted"), self.wms.delete)

    def rescheduleJob(self, jobID: Any) -> Result:
        return self._filtered_action(jobID, ("Rescheduled",), self.wms.reschedule)

    # -- monitoring ----------------------------------------------------------------------

    def _one(self, jobID: Any) -> int:
        return _check_ids(jobID, multiple=False)[0]

    def getJobStatus(self, jobID: Any) -> Result:
        """{jobID: {Status, MinorStatus, ApplicationStatus, Site}}."""
        def run() -> dict[int, dict[str, Any]]:
            ids = _check_ids(jobID, multiple=True)
            states = self.wms.states(ids)
            sites = self.wms.sites(ids)
            return {job: {**value, "Site": sites.get(job, "")} for job, value in states.items()}
        return self._call(run)

    def getJobSummary(self, jobID: Any, outputFile: str | None = None,
                      printOutput: bool = False) -> Result:
        def run() -> dict[int, dict[str, Any]]:
            ids = _check_ids(jobID, multiple=True)
            found = self.wms.summary(ids)
            summary = {job: {key: found.get(job, {}).get(key, "None") for key in
                             SUMMARY_HEADERS} for job in ids}
            if outputFile:
                if os.path.exists(outputFile):
                    raise ValueError(f"Output file {outputFile} already exists")
                lines = ["JobID".ljust(12) + "".join(h.ljust(35) for h in SUMMARY_HEADERS)]
                for job, values in summary.items():
                    lines.append(str(job).ljust(12) + "".join(
                        str(values[h]).ljust(35) for h in SUMMARY_HEADERS))
                Path(outputFile).write_text("\n".join(lines) + "\n")
            if printOutput:
                pprint.pprint(summary)
            return summary
        return self._call(run)

    def getJobAttributes(self, jobID: Any, printOutput: bool = False) -> Result:
        def run() -> dict[str, Any]:
            value = self.wms.attributes(self._one(jobID))
            if printOutput:
                pprint.pprint(value)
            return value
        return self._call(run)

    def getJobParameters(self, jobID: Any, printOutput: bool = False) -> Result:
        try:
            job = self._one(jobID)
        except ValueError as exc:
            return S_ERROR(str(exc))
        result = self._call(lambda: self.wms.parameters([job]))
        if not result["OK"]:
            return result
        if job not in result["Value"]:
            return S_ERROR(f"Failed to get job parameters for {job}")
        params = dict(result["Value"][job])
        params.pop("StandardOutput", None)
        if printOutput:
            pprint.pprint(params)
        return S_OK(params)

    def getJobLoggingInfo(self, jobID: Any, printOutput: bool = False) -> Result:
        """[(Status, MinorStatus, ApplicationStatus, DateTime, Source), ...]."""
        def run() -> list[tuple[Any, ...]]:
            rows = [tuple(r) for r in self.wms.logging_info(self._one(jobID))]
            if printOutput:
                for row in rows:
                    print(f"{row[4]}  {row[0]}  {row[1]}  {row[2]}  {row[3]}")
            return rows
        return self._call(run)

    def peekJob(self, jobID: Any, printOutput: bool = False) -> Result:
        """The standard output reported so far (``StandardOutput``), else DIRAC's
        "Not available yet."."""
        def run() -> str:
            job = self._one(jobID)
            params = self.wms.parameters([job], ["StandardOutput"])
            if job not in params:
                raise ValueError(f"Could not retrieve job attributes of job {job}")
            stdout = params[job].get("StandardOutput") or NOT_AVAILABLE
            if printOutput:
                print(stdout)
            return stdout
        return self._call(run)

    def getJobJDL(self, jobID: Any, original: bool = False,
                  printOutput: bool = False) -> Result:
        """The JDL as DIRAC's dictionary of parameters."""
        def run() -> dict[str, Any]:
            value = _jdl_parameters(self.wms.jdl(self._one(jobID), original))
            if printOutput:
                pprint.pprint(value)
            return value
        return self._call(run)

    def getJobInputData(self, jobID: Any) -> Result:
        def run() -> dict[int, list[str]]:
            out: dict[int, list[str]] = {}
            for job in _check_ids(jobID, multiple=True):
                try:
                    out[job] = self.wms.input_data(job)
                except PilotWMSError:
                    out[job] = []
            return out
        return self._call(run)

    def selectJobs(self, status: str | None = None, minorStatus: str | None = None,
                   applicationStatus: str | None = None, site: str | None = None,
                   owner: str | None = None, ownerGroup: str | None = None,
                   jobGroup: str | None = None, date: str | date | None = None,
                   printErrors: bool = True) -> Result:
        """IDs (as strings, DIRAC's way) of the jobs last updated since ``date`` (default
        today, UTC) matching the conditions; none selected is an error when ``printErrors``."""
        options = {"Status": status, "MinorStatus": minorStatus,
                   "ApplicationStatus": applicationStatus, "Owner": owner, "Site": site,
                   "JobGroup": jobGroup, "OwnerGroup": ownerGroup}
        conditions = {key: str(value) for key, value in options.items() if value}
        cut = date or datetime.now(timezone.utc).date()
        result = self._call(lambda: [str(j) for j in self.wms.select(conditions, cut)])
        if result["OK"] and printErrors and not result["Value"]:
            return S_ERROR("No jobs selected")
        return result

    # -- sandboxes -----------------------------------------------------------------------

    def _download(self, job: int, sb_type: str, directory: Path) -> list[int]:
        made = not directory.exists()
        try:
            entries = self.wms.download_job_sandbox(job, sb_type, directory)
        except PilotWMSError:
            if made and directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()
            raise
        sizes = 0
        for entry in entries:
            files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
            sizes += sum(p.stat().st_size for p in files)
        return [sizes]

    def getOutputSandbox(self, jobID: Any, outputDir: str | None = None,
                         oversized: bool = True, noJobDir: bool = False,
                         unpack: bool = True) -> Result:
        """Unpack the job's output sandbox into ``<outputDir or cwd>/<jobID>``."""
        try:
            job = self._one(jobID)
        except ValueError as exc:
            return S_ERROR(str(exc))
        if outputDir:
            directory = Path(outputDir) if noJobDir else Path(outputDir) / str(job)
        else:
            directory = Path.cwd() / str(job)
            if directory.exists():
                return S_ERROR(f"Job output directory {directory} already exists")
        return self._call(lambda: self._download(job, "Output", directory))

    def getInputSandbox(self, jobID: Any, outputDir: str | None = None) -> Result:
        """Unpack the job's input sandbox into ``<outputDir or cwd>/InputSandbox<jobID>``."""
        try:
            job = self._one(jobID)
        except ValueError as exc:
            return S_ERROR(str(exc))
        directory = Path(outputDir or Path.cwd()) / f"InputSandbox{job}"
        if directory.exists():
            return S_ERROR(f"Job input sandbox directory {directory} already exists")
        return self._call(lambda: self._download(job, "Input", directory))
