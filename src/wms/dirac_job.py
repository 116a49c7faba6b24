"""DIRAC's ``Job`` API: a job description made with DIRAC's ``Job`` methods, as a JDL.

Part of the DIRAC-compatible facade (:mod:`wms.dirac_api` imports everything here, and the
users' scripts import it from there): DIRAC's camelCase names, and its result dictionaries
(:func:`S_OK`/:func:`S_ERROR` exist only in this facade). What differs from DIRAC is in the
docstring of :mod:`wms.dirac_api`.

Example::

    >>> job = Job()
    >>> job.setExecutable("/bin/echo", arguments="hello world")
    {'OK': True, 'Value': 1}
    >>> job._to_jdl()["Executable"], job._to_jdl()["Arguments"]
    ('/bin/echo', 'hello world')
    >>> job.setNumberOfProcessors(numberOfProcessors=4, minNumberOfProcessors=8)
    Traceback (most recent call last):
    ...
    wms.dirac_job.BadJobParameterError: ...
"""

# DIRAC's camelCase names are the point of this module:
# ruff: noqa: N802, N803, N815

from __future__ import annotations

import glob
import os
import shlex
from typing import Any
from urllib.parse import quote

from wms.logic.jdl import JDL, JDLValue
from wms.logic.job_description import LOG_LEVELS

Result = dict[str, Any]


def S_OK(value: Any = None) -> Result:
    """DIRAC's success result."""
    return {"OK": True, "Value": value}


def S_ERROR(message: str | int = "", payload: str = "") -> Result:
    """DIRAC's error result: ``S_ERROR("msg")`` or ``S_ERROR(errno, "msg")``."""
    if isinstance(message, int):
        return {"OK": False, "Message": payload, "Errno": message}
    return {"OK": False, "Message": message, "Errno": 0}


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


