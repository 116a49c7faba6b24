"""The typed Python client of the WMS: submit, follow, kill and fetch the sandboxes of jobs.

Methods are snake_case, return plain values and raise the server's exception classes
(:class:`~core.exceptions.JobManagementError` with ``InvalidJobIDs``, ``NonauthorizedJobIDs``
and ``FailedJobIDs`` in ``exc.extra``, ...). Job IDs come back as ``int`` everywhere, also as
dictionary keys (they travel as strings on the wire).

:meth:`WMSClient.submit` does what DIRAC's ``WMSClient.submitJob`` does on the client side:
local files of the ``InputSandbox`` are packed, uploaded to the SandboxStore and the sandbox
URL is appended to the list; parametric submissions are confirmed (``confirmBulkSubmission``).
The server checks the ``SB:`` references and assigns them to the new jobs.

Example::

    from wms.client import WMSClient
    with WMSClient() as wms:                       # $PILOTWMS_CLIENT_CONFIG, your credentials
        [job] = wms.submit('[Executable = "/bin/echo"; Arguments = "hi";]')
        wms.status([job])                          # {12: 'Waiting'}
        wms.kill(job)                              # [12]
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import requests

from core.client_config import ClientConfig, find_credentials, load_client_config, make_client
from core.exceptions import (
    InvalidArgumentError,
    InvalidJDLError,
    JobSubmissionError,
    NotFoundError,
    PilotWMSError,
    ServiceUnavailableError,
)
from core.rpc.client import Credentials, RPCClient, error_from_reply
from core.rpc.jencode import decode, encode
from wms import sandbox_client
from wms.logic.jdl import JDL, parse_jdl

SYSTEM = "WorkloadManagement"
#: InputSandbox entries that are not local files (DIRAC's list, plus parametric placeholders)
NOT_LOCAL = ("lfn:", "LFN:", "SB:", "%s", "%(")
CONFIRM_ATTEMPTS = 3
_CHUNK = 1024 * 1024

#: progress callback: (bytes done, total bytes or None when unknown)
Progress = Callable[[int, int | None], None]
JobIDs = int | str | Iterable[int | str]


class LoggingRecord(NamedTuple):
    """One line of a job's history (DIRAC's tuple order)."""

    status: str
    minor_status: str
    application_status: str
    time: datetime
    source: str


def job_ids(ids: JobIDs) -> list[int]:
    """One ID, a comma-separated string or an iterable of IDs, as a list of ints.

    >>> job_ids("3,4"), job_ids(5), job_ids(["6", 7])
    ([3, 4], [5], [6, 7])
    """
    items: Iterable[Any]
    if isinstance(ids, str):
        items = [part for part in ids.split(",") if part.strip()]
    elif isinstance(ids, int):
        items = [ids]
    else:
        items = ids
    out: list[int] = []
    for item in items:
        if isinstance(item, bool):
            raise InvalidArgumentError(f"not a job ID: {item!r}")
        try:
            out.append(int(str(item).strip()))
        except ValueError:
            raise InvalidArgumentError(f"not a job ID: {item!r}") from None
    return out


def _int_keys(value: Mapping[str, Any] | None) -> dict[int, Any]:
    return {int(key): item for key, item in (value or {}).items()}


def _cut(value: datetime | date | str | None) -> datetime | str | None:
    """A cut date as the service takes it: aware datetime or 'YYYY-mm-dd [HH:MM:SS]'."""
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return value.strftime("%Y-%m-%d")


def local_sandbox_files(jdl: JDL) -> list[str]:
    """The InputSandbox entries that name local files (to be uploaded)."""
    return [str(item) for item in jdl.get_list("InputSandbox")
            if isinstance(item, str) and item and not item.startswith(NOT_LOCAL)]


class WMSClient:
    """Client of JobManager, JobMonitoring and SandboxStore (one connection pool each)."""

    def __init__(self, cfg: ClientConfig | None = None,
                 credentials: Credentials | None = None) -> None:
        self.cfg = cfg or load_client_config()
        self.credentials = credentials or find_credentials(self.cfg)
        self._clients: dict[str, RPCClient] = {}

    def rpc(self, service: str) -> RPCClient:
        """The RPC client of ``WorkloadManagement/<service>`` (or ``System/Service``)."""
        name = service if "/" in service else f"{SYSTEM}/{service}"
        if name not in self._clients:
            self._clients[name] = make_client(name, self.cfg, self.credentials)
        return self._clients[name]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def __enter__(self) -> WMSClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def whoami(self) -> dict[str, Any]:
        """The caller as the server sees it (``username``, ``group``, ...)."""
        value = self.rpc("Framework/Registry").call("whoami")
        return dict(value or {})

    # -- submission --------------------------------------------------------------------------

    def submit(self, jdl: str | JDL, *, progress: Progress | None = None) -> list[int]:
        """Submit a JDL (text or :class:`JDL`); returns the new job IDs (several when
        parametric, already confirmed). Local InputSandbox files are uploaded first."""
        desc = parse_jdl(jdl) if isinstance(jdl, str) else jdl.copy()
        local = local_sandbox_files(desc)
        missing = [name for name in local if not Path(name).exists()]
        if missing:
            raise InvalidJDLError("Input Sandbox is not valid: not found: " + ", ".join(missing),
                                  BadFile=missing)
        sb_url = None
        if local:
            sb_url = self.upload_sandbox(local, progress=progress)
            name = desc.name_of("InputSandbox") or "InputSandbox"
            desc[name] = [*desc.get_list("InputSandbox"), sb_url]
        value = self.rpc("JobManager").call("submitJob", desc.to_text())
        if isinstance(value, list):
            ids = [int(v) for v in value]
            self._confirm(ids)
            return ids
        return [int(value)]

    def submit_dataset(self, jdl: str | JDL, files_per_job: int, *,
                       dataset: str | None = None, query: Mapping[str, Any] | None = None,
                       path: str = "/", progress: Progress | None = None) -> list[int]:
        """One job per ``files_per_job`` files of a catalog ``dataset`` or of a metadata
        ``query`` under ``path`` (each with InputData set); local sandbox files uploaded."""
        if (dataset is None) == (query is None):
            raise InvalidArgumentError("give a dataset or a query")
        desc = self.with_sandbox(jdl, progress)
        source: dict[str, Any] = ({"Dataset": dataset} if dataset is not None
                                  else {"Query": dict(query or {}), "Path": path})
        value = self.rpc("JobManager").call("submitDatasetJobs", desc.to_text(), source,
                                            int(files_per_job))
        return [int(v) for v in value]

    def restart(self, job_id: int | str) -> int:
        """A new job with the same description and input sandbox as a finished one; the job
        parameter ``RestartOf`` of the new job names the old one."""
        return int(self.rpc("JobManager").call("restartJob", job_ids(job_id)[0]))

    def with_sandbox(self, jdl: str | JDL, progress: Progress | None = None) -> JDL:
        """The JDL with its local InputSandbox files uploaded (an ``SB:`` entry added)."""
        desc = parse_jdl(jdl) if isinstance(jdl, str) else jdl.copy()
        local = local_sandbox_files(desc)
        missing = [name for name in local if not Path(name).exists()]
        if missing:
            raise InvalidJDLError("Input Sandbox is not valid: not found: " + ", ".join(missing),
                                  BadFile=missing)
        if local:
            sb_url = self.upload_sandbox(local, progress=progress)
            name = desc.name_of("InputSandbox") or "InputSandbox"
            desc[name] = [*desc.get_list("InputSandbox"), sb_url]
        return desc

    def _confirm(self, ids: list[int]) -> None:
        error: PilotWMSError | None = None
        for attempt in range(CONFIRM_ATTEMPTS):
            try:
                self.rpc("JobManager").call("confirmBulkSubmission", ids)
                return
            except PilotWMSError as exc:
                error = exc
                if attempt + 1 < CONFIRM_ATTEMPTS:
                    time.sleep(1)
        try:  # unconfirmed jobs stay in Submitting: take them away
            self.delete(ids)
        except PilotWMSError:
            pass
        raise JobSubmissionError(
            f"Job submission failed to confirm bulk transaction: {error.message if error else ''}")

    # -- actions -----------------------------------------------------------------------------

    def _action(self, method: str, ids: JobIDs) -> list[int]:
        wanted = job_ids(ids)
        if not wanted:
            return []
        done = self.rpc("JobManager").call(method, wanted)
        return [int(v) for v in (done if isinstance(done, list) else [done])]

    def kill(self, ids: JobIDs) -> list[int]:
        """Kill jobs; returns those killed (failures raise JobManagementError)."""
        return self._action("killJob", ids)

    def delete(self, ids: JobIDs) -> list[int]:
        return self._action("deleteJob", ids)

    def reschedule(self, ids: JobIDs) -> list[int]:
        return self._action("rescheduleJob", ids)

    # -- monitoring --------------------------------------------------------------------------

    def search(self, filters: Sequence[tuple[str, str, Any]], columns: Sequence[str], *,
               per_page: int = 10_000) -> list[dict[str, Any]]:
        """Every job matching ``filters`` ([(Attribute, operator, value)], operators eq, neq,
        in, not in, like, gt, lt, ge, le) with only ``columns``, sorted by JobID, fetched a
        page of ``per_page`` at a time by keyset (each call asks for JobIDs above the last one
        received, so a late page costs what the first does and needs no total), records
        travelling as lists of values."""
        names = list(columns)
        return [dict(zip(names, row, strict=True))
                for row in self.search_rows(filters, columns, per_page=per_page)]

    def search_rows(self, filters: Sequence[tuple[str, str, Any]], columns: Sequence[str], *,
                    per_page: int = 10_000, datetimes_as_text: bool = False
                    ) -> list[list[Any]]:
        """:meth:`search`'s jobs as rows of values in ``columns`` order, as they arrive (no
        record built per job: what a table of 100,000 jobs wants); ``datetimes_as_text``
        gives datetimes as their UTC text ``YYYY-mm-dd HH:MM:SS``, as tables show them."""
        search = [{"parameter": name, "operator": op, "value": value}
                  for name, op, value in filters]
        added = "JobID" not in columns
        wanted = ["JobID", *columns] if added else list(columns)
        position = wanted.index("JobID")
        monitoring = self.rpc("JobMonitoring")
        rows: list[list[Any]] = []
        after: list[dict[str, Any]] = []
        while True:
            reply = monitoring.call("search", wanted, search + after,
                                    [{"parameter": "JobID", "direction": "asc"}], 1, per_page,
                                    False, True, datetimes_as_text=datetimes_as_text)
            page = reply["Records"]
            rows.extend([row[1:] for row in page] if added else page)
            if len(page) < per_page:
                return rows
            after = [{"parameter": "JobID", "operator": "gt", "value": page[-1][position]}]

    def _per_job(self, method: str, ids: JobIDs) -> dict[int, Any]:
        wanted = job_ids(ids)
        if not wanted:
            return {}
        return _int_keys(self.rpc("JobMonitoring").call(method, wanted))

    def status(self, ids: JobIDs) -> dict[int, str]:
        """{job: Status} of the jobs you may see (others are absent)."""
        return {job: str(v["Status"]) for job, v in self._per_job("getJobsStatus", ids).items()}

    def states(self, ids: JobIDs) -> dict[int, dict[str, str]]:
        """{job: {Status, MinorStatus, ApplicationStatus}}."""
        return self._per_job("getJobsStates", ids)

    def sites(self, ids: JobIDs) -> dict[int, str]:
        return {job: str(v["Site"]) for job, v in self._per_job("getJobsSites", ids).items()}

    def summary(self, ids: JobIDs) -> dict[int, dict[str, Any]]:
        """{job: every job attribute} (DIRAC's ``getJobsSummary``)."""
        return self._per_job("getJobsSummary", ids)

    def attributes(self, job_id: int | str, names: Sequence[str] | None = None
                   ) -> dict[str, Any]:
        [jid] = job_ids(job_id)
        return dict(self.rpc("JobMonitoring").call("getJobAttributes", jid, list(names or [])))

    def select(self, conditions: Mapping[str, Any] | None = None,
               cut_date: datetime | date | str | None = None, *,
               owner: str | None = None, owner_group: str | None = None,
               status: str | Sequence[str] | None = None, minor_status: str | None = None,
               application_status: str | None = None, site: str | None = None,
               job_group: str | None = None, job_name: str | None = None) -> list[int]:
        """IDs of the jobs matching ``conditions`` ({Attribute: value or [values]}) and the
        keyword filters, last updated at or after ``cut_date``; sorted."""
        cond: dict[str, Any] = dict(conditions or {})
        named = {"Owner": owner, "OwnerGroup": owner_group, "Status": status,
                 "MinorStatus": minor_status, "ApplicationStatus": application_status,
                 "Site": site, "JobGroup": job_group, "JobName": job_name}
        for key, value in named.items():
            if value is not None:
                cond[key] = list(value) if isinstance(value, list | tuple) else value
        found = self.rpc("JobMonitoring").call("getJobs", cond, _cut(cut_date))
        return sorted(int(v) for v in found or [])

    def logging_info(self, job_id: int | str) -> list[LoggingRecord]:
        """The job's history, oldest first."""
        [jid] = job_ids(job_id)
        rows = self.rpc("JobMonitoring").call("getJobLoggingInfo", jid)
        return [LoggingRecord(*row) for row in rows or []]

    def jdl(self, job_id: int | str, original: bool = False) -> str:
        """The JDL as the server keeps it (``original``: as submitted)."""
        [jid] = job_ids(job_id)
        return str(self.rpc("JobMonitoring").call("getJobJDL", jid, original))

    def parameters(self, ids: JobIDs, names: Sequence[str] | None = None
                   ) -> dict[int, dict[str, str]]:
        """{job: {parameter: value}} (what running jobs reported)."""
        wanted = job_ids(ids)
        if not wanted:
            return {}
        value = self.rpc("JobMonitoring").call("getJobParameters", wanted,
                                               list(names) if names else None)
        return _int_keys(value)

    def input_data(self, job_id: int | str) -> list[str]:
        [jid] = job_ids(job_id)
        return list(self.rpc("JobMonitoring").call("getInputData", jid) or [])

    # -- sandboxes ---------------------------------------------------------------------------

    def upload_sandbox(self, paths: Iterable[str | os.PathLike[str]], *,
                       progress: Progress | None = None) -> str:
        """Pack and upload files; returns ``SB:<SE>|<path>``. ``progress`` is told the size
        before and after (the upload itself is one request)."""
        files = [Path(p) for p in paths]
        total = sum(_size(p) for p in files)
        if progress:
            progress(0, total)
        url = sandbox_client.upload_sandbox(self.rpc("SandboxStore"), files)
        if progress:
            progress(total, total)
        return url

    def assign_sandboxes(self, ids: JobIDs, sb_url: str, sb_type: str) -> None:
        """Assign a sandbox to jobs as their ``Input`` or ``Output`` sandbox."""
        assignments = {f"Job:{job}": [[sb_url, sb_type]] for job in job_ids(ids)}
        self.rpc("SandboxStore").call("assignSandboxesToEntities", assignments)

    def sandboxes(self, job_id: int | str) -> dict[str, list[str]]:
        """{"Input": [urls], "Output": [urls]} assigned to the job."""
        [jid] = job_ids(job_id)
        value = self.rpc("SandboxStore").call("getSandboxesAssignedToEntity", f"Job:{jid}")
        return {str(k): [str(u) for u in v] for k, v in (value or {}).items()}

    def download_sandbox(self, sb_url: str, dest_dir: str | os.PathLike[str], *,
                         progress: Progress | None = None) -> list[Path]:
        """Fetch and unpack one sandbox; returns the top-level entries unpacked."""
        if progress is None:
            return sandbox_client.download_sandbox(self.rpc("SandboxStore"), sb_url, dest_dir)
        with tempfile.TemporaryFile() as tmp:
            self._fetch_raw(sb_url, tmp, progress)
            tmp.seek(0)
            return sandbox_client.unpack(tmp, dest_dir)

    def download_job_sandbox(self, job_id: int | str, sb_type: str,
                             dest_dir: str | os.PathLike[str], *,
                             progress: Progress | None = None) -> list[Path]:
        """Download and unpack every ``sb_type`` ("Input"/"Output") sandbox of a job."""
        [jid] = job_ids(job_id)
        urls = self.sandboxes(jid).get(sb_type, [])
        if not urls:
            raise NotFoundError(
                f"No {sb_type} sandbox found for job {jid}. Possible causes are: the job does "
                "not exist, no sandbox was registered or you do not have permission to "
                "access it.")
        out: list[Path] = []
        for url in urls:
            out.extend(self.download_sandbox(url, dest_dir, progress=progress))
        return out

    def _fetch_raw(self, sb_url: str, sink: Any, progress: Progress) -> None:
        """``streamToClient`` raw, streamed into ``sink`` with progress reports."""
        client = self.rpc("SandboxStore")
        data = {"method": "streamToClient", "args": encode([sb_url, ""]), "rawContent": "true"}
        if client.client_vo:
            data["clientVO"] = client.client_vo
        errors: list[str] = []
        for url in client.urls:
            try:
                response = client.session.post(url, data=data, timeout=client.timeout,
                                               verify=client.verify, stream=True)
            except (requests.exceptions.ConnectionError, requests.exceptions.SSLError) as exc:
                errors.append(f"{url}: {type(exc).__name__}")
                continue
            with response:
                if response.status_code in (404, 502, 503, 504):
                    errors.append(f"{url}: HTTP {response.status_code}")
                    continue
                kind = response.headers.get("Content-Type", "")
                if not kind.startswith("application/octet-stream"):
                    reply = decode(response.content)
                    if isinstance(reply, dict) and not reply.get("OK", True):
                        raise error_from_reply(reply)
                    raise PilotWMSError("streamToClient did not return raw content")
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                done = 0
                progress(0, total)
                for chunk in response.iter_content(_CHUNK):
                    sink.write(chunk)
                    done += len(chunk)
                    progress(done, total)
                return
        raise ServiceUnavailableError("sandbox download: no server answered: "
                                      + "; ".join(errors))


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0
