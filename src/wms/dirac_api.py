"""DIRAC's ``Dirac`` and ``Job`` API on pilotwms: change the imports, keep the script.

It keeps DIRAC's camelCase names and result dictionaries (:func:`S_OK`/:func:`S_ERROR` exist
only here); new code should use :class:`wms.client.WMSClient`, which raises exceptions.

Difference: DIRAC's ``Job`` runs ``dirac-jobexec`` with a workflow XML; this one writes the real
command: ``Executable``/``Arguments`` for one ``setExecutable`` (a relative script path is
uploaded and run by base name; absolute paths are the worker node's, as with ``dsub``), else
``/bin/sh -c`` running the steps in order up to the first failure, each into its ``logFile``
(added to the output sandbox) or std.out (no ``Script<n>_*.log`` files). Parameter sequences
give ``Parameters.<name>`` and ``%(name)s`` (``addToWorkflow`` is ignored). No default
``JobGroup`` (DIRAC: the VO); sites and platforms are not checked against a configuration.

Example::

    from wms.dirac_api import Dirac, Job          # was: from DIRAC.Interfaces.API...
    job = Job()
    job.setExecutable("/bin/echo", arguments="hello world")
    result = Dirac().submitJob(job)               # {'OK': True, 'Value': 12, 'JobID': 12}
"""

# DIRAC's camelCase names are the point of this module:
# ruff: noqa: N802, N803, N815

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
from wms.logic.jdl import JDL, JDLValue, format_value, parse_jdl
from wms.logic.job_description import LOG_LEVELS
from wms.logic.parametric import is_parametric
from wms.logic.states import allowed

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
    """DIRAC's client's result for a server error (extra keys kept)."""
    result = {"OK": False, "Message": exc.wire_message(), "Errno": exc.errno}
    result.update(exc.extra)
    return result


class BadJobParameterError(ValueError):
    """Contradictory ``setNumberOfProcessors`` arguments (DIRAC's exception)."""


def _multi(values: list[str]) -> JDLValue:
    """One value as a scalar, several as a list (as DIRAC writes them)."""
    return values[0] if len(values) == 1 else list(values)


def _names(value: str | list[str]) -> list[str]:
    items = value.split(";") if isinstance(value, str) else value
    return [str(item).strip() for item in items if str(item).strip()]


class Job:
    """A job description made with DIRAC's ``Job`` methods."""

    def __init__(self, script: str | None = None, stdout: str = "std.out",
                 stderr: str = "std.err") -> None:
        self.stdout, self.stderr = stdout, stderr
        self.errorDict: dict[str, list[str]] = {}
        self.numberOfParameters = 0
        self.parameterSeqs: dict[str, list[Any]] = {}
        self.steps: list[tuple[str, str, str, bool]] = []  # command, arguments, log, local
        self.addToInputSandbox: list[str] = []
        self.addToOutputSandbox: list[str] = []
        self.attributes = JDL({"JobType": "User", "Priority": 1, "JobName": "Name",
                               "StdOutput": stdout, "StdError": stderr, "LogLevel": "INFO"})
        if script is not None:
            self._reportError("workflow XML is not supported", "__init__")

    def _reportError(self, message: str, method: str = "Job", **_kw: Any) -> Result:
        self.errorDict.setdefault(method, []).append(message)
        return S_ERROR(message)

    def _set(self, name: str, value: JDLValue) -> Result:
        self.attributes[name] = value
        return S_OK()

    def setExecutable(self, executable: str, arguments: str = "", logFile: str = "",
                      modulesList: Any = None, parameters: Any = None, paramValues: Any = None,
                      includeInSandbox: bool = True) -> Result:
        """A command, or a local script named by a relative path (uploaded, as with dsub;
        DIRAC also uploads existing absolute paths). Several calls run in sequence."""
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
        env = [f"{key}={quote(str(value))}" for key, value in environmentDict.items()]
        return self._set("ExecutionEnvironment", _multi(env)) if env else S_OK()

    def _text(self, name: str, value: Any, method: str) -> Result:
        if not isinstance(value, str):
            return self._reportError(f"Expected string for {name}", method)
        return self._set(name, value)

    def setName(self, jobName: str) -> Result:
        return self._text("JobName", jobName, "setName")

    def setJobGroup(self, jobGroup: str) -> Result:
        return self._text("JobGroup", jobGroup, "setJobGroup")

    def setType(self, jobType: str) -> Result:
        return self._text("JobType", jobType, "setType")

    def setPriority(self, priority: int) -> Result:
        if not isinstance(priority, int) or isinstance(priority, bool):
            return self._reportError("Expected int for priority", "setPriority")
        return self._set("Priority", priority)

    def setCPUTime(self, timeInSecs: int | str) -> Result:
        try:
            return self._set("CPUTime", int(timeInSecs))
        except (TypeError, ValueError):
            return self._reportError("Expected numerical string or int for CPU time in seconds",
                                     "setCPUTime")

    def setLogLevel(self, logLevel: str) -> Result:
        if not isinstance(logLevel, str) or logLevel.upper() not in LOG_LEVELS:
            return self._reportError(f'Error Level "{logLevel}" not valid', "setLogLevel")
        return self._set("LogLevel", logLevel)

    def setPlatform(self, platform: str) -> Result:
        if not isinstance(platform, str):
            return self._reportError("Expected string for platform", "setPlatform")
        return self._set("Platform", platform) if platform.lower() != "any" else S_OK()

    def _names(self, name: str, value: Any, method: str) -> Result:
        if not isinstance(value, str | list) or not value:
            return self._reportError(f"Expected string or list for {name}", method)
        return self._set(name, _multi(_names(value)))

    def setTag(self, tags: str | list[str]) -> Result:
        return self._names("Tags", tags, "setTag")

    def setBannedSites(self, sites: str | list[str]) -> Result:
        return self._names("BannedSites", sites, "setBannedSites")

    def setDestination(self, destination: str | list[str]) -> Result:
        if isinstance(destination, str):
            destination = destination.replace(" ", "").split(",")
        if not isinstance(destination, list):
            return self._reportError("Invalid destination site, expected string or list",
                                     "setDestination")
        sites = sorted({s for s in destination if s.lower() not in ("any", "")})
        return self._set("Site", _multi(sites)) if sites else S_OK()

    def setNumberOfProcessors(self, numberOfProcessors: int = 0, minNumberOfProcessors: int = 0,
                              maxNumberOfProcessors: int = 0) -> Result:
        """DIRAC's rules; contradictions raise :class:`BadJobParameterError`."""
        number, low, high = (numberOfProcessors or 0, minNumberOfProcessors or 0,
                             maxNumberOfProcessors or 0)
        if low and low == high:
            number, low, high = low, 0, 0
        if number:
            for other, label in ((low, "min"), (high, "max")):
                if other:
                    raise BadJobParameterError(
                        f"{label}NumberOfProcessors cannot be used with numberOfProcessors")
            self._set("NumberOfProcessors", number)
            return self._set("MaxNumberOfProcessors", number)
        if not low and not high:
            return S_OK()
        low = low or 1
        if high:
            if high < low:
                raise BadJobParameterError(
                    "minNumberOfProcessors must be less than or equal to maxNumberOfProcessors")
            self._set("MaxNumberOfProcessors", high)
        return self._set("MinNumberOfProcessors", low)

    def setRAMRequirements(self, ramRequired: int = 0, maxRAM: int = 0) -> Result:
        if ramRequired and maxRAM and ramRequired > maxRAM:
            return self._reportError("Invalid settings, ramRequired is higher than maxRAM",
                                     "setRAMRequirements")
        for name, value in (("MinRAM", ramRequired), ("MaxRAM", maxRAM)):
            if value:
                self._set(name, value)
        return S_OK()

    def setNumberOfGPUs(self, numberOfGPUs: int, model: str = "") -> Result:
        """pilotwms: the job needs this many GPUs (of ``model``, e.g. "A100")."""
        if isinstance(numberOfGPUs, bool) or not isinstance(numberOfGPUs, int) \
                or numberOfGPUs < 1:
            return self._reportError("Expected a positive number of GPUs", "setNumberOfGPUs")
        if model:
            self._set("GPUModel", model)
        return self._set("NumberOfGPUs", numberOfGPUs)

    def setEvent(self, event: str) -> Result:
        """pilotwms: subscribe the job to an event; it waits in ``Standby`` until the event
        is notified, then runs with the notification's variables, and a copy waits again."""
        return self._text("Event", event, "setEvent")

    def _files(self, name: str, files: Any, method: str) -> list[str]:
        files = [files] if isinstance(files, str) else files
        if not isinstance(files, list) or not files:
            self._reportError(f"Expected file string or list of files for {name}", method)
            return []
        return [str(f) for f in files]

    def setInputSandbox(self, files: str | list[str]) -> Result:
        resolved: list[JDLValue] = []
        for name in self._files("InputSandbox", files, "setInputSandbox"):
            resolved.extend(m.rstrip("/") for m in (sorted(glob.glob(name)) if "*" in name
                                                     else [name]))
        return self._set("InputSandbox", resolved) if resolved else S_ERROR("no files")

    def setOutputSandbox(self, files: str | list[str]) -> Result:
        names: list[JDLValue] = list(self._files("OutputSandbox", files, "setOutputSandbox"))
        return self._set("OutputSandbox", names) if names else S_ERROR("no files")

    def setInputData(self, lfns: str | list[str]) -> Result:
        if isinstance(lfns, list) and lfns:
            return self._set("InputData", ["LFN:" + x.replace("LFN:", "") for x in lfns])
        if isinstance(lfns, str):
            return self._set("InputData", lfns)
        return self._reportError("Expected lfn string or list of lfns for input data",
                                 "setInputData")

    def setOutputData(self, lfns: str | list[str], outputSE: str | list[str] | None = None,
                      outputPath: str = "") -> Result:
        names = self._files("OutputData", lfns, "setOutputData")
        if not names:
            return S_ERROR("no files")
        self._set("OutputData", _multi(names))
        if outputSE:
            ses = [outputSE] if isinstance(outputSE, str) else outputSE
            if not isinstance(ses, list):
                return self._reportError("Expected string or list for OutputSE",
                                         "setOutputData")
            self._set("OutputSE", _multi([s.strip() for s in ses]))
        if outputPath:
            if not isinstance(outputPath, str):
                return self._reportError("Expected string for OutputPath", "setOutputData")
            self._set("OutputPath", outputPath.lstrip("/"))
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

    def _command(self) -> tuple[str, str]:
        if len(self.steps) == 1 and not self.steps[0][2]:
            return self.steps[0][0], self.steps[0][1]
        parts = []
        for command, arguments, log, local in self.steps:
            text = f"{shlex.quote('./' + command if local else command)} {arguments}".strip()
            parts.append(f"( {text} ) > {shlex.quote(log)} 2>&1" if log else text)
        return "/bin/sh", "-c " + shlex.quote(" && ".join(parts))

    def _to_jdl(self) -> JDL:
        """The job description as a :class:`JDL`."""
        jdl = self.attributes.copy()
        if self.steps:
            jdl["Executable"], arguments = self._command()
            if arguments:
                jdl["Arguments"] = arguments
        inputs = [*jdl.get_list("InputSandbox"), *self.addToInputSandbox]
        if inputs:
            jdl["InputSandbox"] = list(dict.fromkeys(inputs))
        jdl["OutputSandbox"] = list(dict.fromkeys([*jdl.get_list("OutputSandbox"),
                                                   *self.addToOutputSandbox, self.stderr,
                                                   self.stdout]))
        for name, values in self.parameterSeqs.items():
            placeholder = f"%({name})s"
            vector: list[JDLValue] = list(values)
            if name == "InputSandbox":
                jdl["InputSandbox"] = [*jdl.get_list("InputSandbox"), placeholder]
            else:
                if name in jdl and isinstance(jdl[name], list):
                    current = jdl.get_list(name)
                    vector = [[*current, *(v if isinstance(v, list) else [v])] for v in values]
                jdl[name] = placeholder
            jdl[f"Parameters.{name}"] = vector
        if self.numberOfParameters:
            jdl["Parameters"] = self.numberOfParameters
        return jdl

    def _toJDL(self, xmlFile: str = "", jobDescriptionObject: Any = None) -> str:
        """The JDL text (DIRAC's method name; with the outer brackets)."""
        return self._to_jdl().to_text()


def _check_ids(job_id: Any, multiple: bool) -> list[int]:
    if isinstance(job_id, list | tuple | dict) and not multiple:
        raise ValueError("Expected int or string, not list")
    items = job_id if isinstance(job_id, list | tuple | dict) else [job_id]
    return job_ids([str(j) for j in items])


def _jdl_parameters(text: str) -> dict[str, Any]:
    """DIRAC's ``getJobJDL`` dict: lists of strings (no ``LFN:``), other values as text."""
    out: dict[str, Any] = {}
    for name, value in parse_jdl(text).items():
        if isinstance(value, list):
            out[name] = [_plain(v).replace("LFN:", "") for v in value]
        else:
            out[name] = _plain(value)
    return out


def _plain(value: JDLValue) -> str:
    if isinstance(value, JDL | list | bool):
        return format_value(value)
    return str(value)


class Dirac:
    """DIRAC's ``Dirac`` API for jobs."""

    def __init__(self, useCertificates: bool = False, vo: str | None = None,
                 *, client: WMSClient | None = None) -> None:
        self._client = client

    @property
    def wms(self) -> WMSClient:
        if self._client is None:
            self._client = WMSClient()
        return self._client

    def _call(self, func: Callable[[], T], show: bool = False) -> Result:
        """S_OK(func()), or the error as DIRAC reports it; ``show``: ``printOutput``."""
        try:
            value = func()
        except PilotWMSError as exc:
            return _from_exception(exc)
        except ValueError as exc:
            return S_ERROR(str(exc))
        if show:
            pprint.pprint(value)
        return S_OK(value)

    def submitJob(self, job: Job | str, mode: str = "wms") -> Result:
        """Submit a :class:`Job`, JDL text or file: ``Value`` = job ID (list if parametric)."""
        if mode.lower() != "wms":
            return S_ERROR(f"submission mode {mode!r} is not supported (only 'wms')")
        if isinstance(job, Job):
            if job.errorDict:
                return S_ERROR("; ".join(f"{method}: {', '.join(errors)}"
                                         for method, errors in job.errorDict.items()))
            if not job.steps:
                return S_ERROR("the job has no executable: call setExecutable first")

        def run() -> int | list[int]:
            if isinstance(job, Job):
                jdl = job._to_jdl()
            else:
                jdl = parse_jdl(Path(job).read_text() if os.path.exists(job) else job)
            ids = self.wms.submit(jdl)
            return ids if is_parametric(jdl) else ids[0]

        result = self._call(run)
        if result["OK"]:
            result.update(JobID=result["Value"], requireProxyUpload=False)
        return result

    def _filtered(self, jobID: Any, targets: tuple[str, ...], action: str) -> Result:
        """DIRAC's way: act on the jobs whose status may change to one of ``targets``."""
        def run() -> list[int]:
            ids = _check_ids(jobID, multiple=True)
            now = self.wms.status(ids)
            chosen = [j for j in ids if j in now
                      and any(allowed(now[j], t) and now[j] != t for t in targets)]
            return list(getattr(self.wms, action)(chosen)) if chosen else []
        return self._call(run)

    def killJob(self, jobID: Any) -> Result:
        return self._filtered(jobID, ("Killed", "Deleted"), "kill")

    def deleteJob(self, jobID: Any) -> Result:
        return self._filtered(jobID, ("Killed", "Deleted"), "delete")

    def rescheduleJob(self, jobID: Any) -> Result:
        return self._filtered(jobID, ("Rescheduled",), "reschedule")

    def notifyEvent(self, event: str, environment: dict[str, Any] | None = None) -> Result:
        """pilotwms: release the jobs waiting for ``event`` (its owner only);
        ``{"NotificationID": n, "Released": count}``."""
        from wms.scheduling_client import EventClient

        return self._call(lambda: EventClient(self.wms).notify(
            event, {k: str(v) for k, v in (environment or {}).items()}))

    def restartJob(self, jobID: Any) -> Result:
        """pilotwms (ECaccess restart): a new job like a finished one; its ID."""
        return self._call(lambda: self.wms.restart(self._one(jobID)))

    def _one(self, jobID: Any) -> int:
        return _check_ids(jobID, multiple=False)[0]

    def getJobStatus(self, jobID: Any) -> Result:
        """{jobID: {Status, MinorStatus, ApplicationStatus, Site}}."""
        def run() -> dict[int, dict[str, Any]]:
            ids = _check_ids(jobID, multiple=True)
            states, sites = self.wms.states(ids), self.wms.sites(ids)
            return {job: {**value, "Site": sites.get(job, "")} for job, value in states.items()}
        return self._call(run)

    def getJobSummary(self, jobID: Any, outputFile: str | None = None,
                      printOutput: bool = False) -> Result:
        def run() -> dict[int, dict[str, Any]]:
            ids = _check_ids(jobID, multiple=True)
            found = self.wms.summary(ids)
            summary = {job: {key: found.get(job, {}).get(key, "None")
                             for key in SUMMARY_HEADERS} for job in ids}
            if outputFile:
                Path(outputFile).write_text(pprint.pformat(summary) + "\n")
            return summary
        return self._call(run, printOutput)

    def getJobAttributes(self, jobID: Any, printOutput: bool = False) -> Result:
        return self._call(lambda: self.wms.attributes(self._one(jobID)), printOutput)

    def getJobParameters(self, jobID: Any, printOutput: bool = False) -> Result:
        def run() -> dict[str, str]:
            job = self._one(jobID)
            found = self.wms.parameters([job])
            if job not in found:
                raise ValueError(f"Failed to get job parameters for {job}")
            return {k: v for k, v in found[job].items() if k != "StandardOutput"}
        return self._call(run, printOutput)

    def getJobLoggingInfo(self, jobID: Any, printOutput: bool = False) -> Result:
        """[(Status, MinorStatus, ApplicationStatus, DateTime, Source), ...]."""
        return self._call(lambda: [tuple(r) for r in self.wms.logging_info(self._one(jobID))],
                          printOutput)

    def peekJob(self, jobID: Any, printOutput: bool = False) -> Result:
        """``StandardOutput`` so far, else "Not available yet." (as DIRAC)."""
        def run() -> str:
            job = self._one(jobID)
            found = self.wms.parameters([job], ["StandardOutput"])
            if job not in found:
                raise ValueError(f"Could not retrieve job attributes of job {job}")
            return found[job].get("StandardOutput") or NOT_AVAILABLE
        return self._call(run, printOutput)

    def getJobJDL(self, jobID: Any, original: bool = False, printOutput: bool = False) -> Result:
        """The JDL as DIRAC's dictionary of parameters."""
        return self._call(lambda: _jdl_parameters(self.wms.jdl(self._one(jobID), original)),
                          printOutput)

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
        """IDs (strings, as DIRAC's) of matching jobs updated since ``date`` (default today)."""
        options = {"Status": status, "MinorStatus": minorStatus,
                   "ApplicationStatus": applicationStatus, "Owner": owner, "Site": site,
                   "JobGroup": jobGroup, "OwnerGroup": ownerGroup}
        conditions = {key: str(value) for key, value in options.items() if value}
        cut = date or datetime.now(timezone.utc).date()
        result = self._call(lambda: [str(j) for j in self.wms.select(conditions, cut)])
        if result["OK"] and printErrors and not result["Value"]:
            return S_ERROR("No jobs selected")
        return result

    def _download(self, jobID: Any, sb_type: str, place: Callable[[int], Path]) -> Result:
        """Unpack into ``place(job)`` (removed if made here and the download fails)."""
        def run() -> list[int]:
            job = self._one(jobID)
            directory = place(job)
            made = not directory.exists()
            try:
                entries = self.wms.download_job_sandbox(job, sb_type, directory)
            except PilotWMSError:
                if made and directory.is_dir() and not any(directory.iterdir()):
                    directory.rmdir()
                raise
            files = [p for e in entries for p in ([e] if e.is_file() else e.rglob("*"))]
            return [sum(p.stat().st_size for p in files if p.is_file())]
        return self._call(run)

    def getOutputSandbox(self, jobID: Any, outputDir: str | None = None,
                         oversized: bool = True, noJobDir: bool = False,
                         unpack: bool = True) -> Result:
        """Into ``<outputDir or cwd>/<jobID>``."""
        def place(job: int) -> Path:
            if outputDir:
                return Path(outputDir) if noJobDir else Path(outputDir) / str(job)
            if (Path.cwd() / str(job)).exists():
                raise ValueError(f"Job output directory {Path.cwd() / str(job)} already exists")
            return Path.cwd() / str(job)
        return self._download(jobID, "Output", place)

    def getInputSandbox(self, jobID: Any, outputDir: str | None = None) -> Result:
        """Into ``<outputDir or cwd>/InputSandbox<jobID>``."""
        def place(job: int) -> Path:
            directory = Path(outputDir or Path.cwd()) / f"InputSandbox{job}"
            if directory.exists():
                raise ValueError(f"Job input sandbox directory {directory} already exists")
            return directory
        return self._download(jobID, "Input", place)
