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

import os
import pprint
from collections.abc import Callable
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from core.exceptions import PilotWMSError
from wms.client import WMSClient, job_ids
from wms.dirac_job import S_ERROR, S_OK, BadJobParameterError, Job, Result
from wms.logic.jdl import JDL, JDLValue, format_value, parse_jdl
from wms.logic.parametric import is_parametric
from wms.logic.states import allowed

T = TypeVar("T")
__all__ = ["S_ERROR", "S_OK", "BadJobParameterError", "Dirac", "Job"]

SUMMARY_HEADERS = ["Status", "MinorStatus", "ApplicationStatus", "Site", "JobGroup",
                   "LastUpdateTime", "HeartBeatTime", "SubmissionTime", "Owner"]
NOT_AVAILABLE = "Not available yet."


def _from_exception(exc: PilotWMSError) -> Result:
    """DIRAC's client's result for a server error (extra keys kept)."""
    result = {"OK": False, "Message": exc.wire_message(), "Errno": exc.errno}
    result.update(exc.extra)
    return result


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
