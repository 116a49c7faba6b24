"""The job wrapper: run one matched job in a private directory, reporting as DIRAC does.

Running/"Job Initialization" -> ("Downloading InputSandbox") -> "Application" -> "Application
Finished Successfully" | "... With Errors" (ApplicationStatus "Exit code N") -> "Uploading Output
Sandbox" -> "Output Sandbox Uploaded" -> Done/"Execution Complete" or Failed/"Application
Finished With Errors". A watchdog kill ends Failed with its reason; a Kill command leaves the
job Killed. Calls about the job use the match's ``JobToken`` when there is one.

DIRAC ``Job`` API jobs (``Executable = "dirac-jobexec"``, a workflow XML in the sandbox) run
through :mod:`pilot.jobexec` when every step is DIRAC's ``Script`` module; its application
statuses ("Executing RunScriptStep1", "echo successful", "'cat' Exited With Status 3") are
relayed as they come and the last one stays. A workflow with other module types runs with a
real ``dirac-jobexec`` found on the node's ``PATH``, else the job fails ("Workflow module not
supported", the module named in the application status and ``ApplicationError``); an XML the
parser refuses (too big, a DTD or entity, not well-formed) fails it with "Invalid workflow
description".

Example::

    match = rpc.call("WorkloadManagement/Matcher", "requestJob", resource)
    status = JobWrapper(match, rpc, WrapperOptions(workdir="/scratch/pilot")).run()
"""

from __future__ import annotations

import functools
import glob
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from pilot import payload
from pilot.archive import extract
from pilot.data import URLS_FILE, DataError, DataMover, output_lfn, strip_lfn
from pilot.jdl import as_list, parse_jdl
from pilot.payload import DIRAC_JOBEXEC, WORKFLOW_STATUS, PayloadRefusedError
from pilot.rpc import RpcClient, RpcError
from pilot.watchdog import (
    CPU_LIMIT,
    JOB_NOT_ACTIVE,
    KILL_SIGNAL,
    KILLED,
    NOT_OURS,
    WALL_LIMIT,
    Watchdog,
    kill_tree,
    tail,
)

STATE = "WorkloadManagement/JobStateUpdate"
MANAGER = "WorkloadManagement/JobManager"
SANDBOX = "WorkloadManagement/SandboxStore"
SOURCE = "JobWrapper"
SANDBOX_TOO_BIG = "Sandbox is too big. Please upload it to a grid storage element"
__all__ = ["CPU_LIMIT", "DIRAC_JOBEXEC", "KILL_SIGNAL", "WALL_LIMIT", "WORKFLOW_STATUS",
           "JobWrapper", "PayloadRefusedError", "WrapperOptions"]


@dataclass
class WrapperOptions:
    workdir: str = "."
    heartbeat: float = 60.0
    check: float = 5.0
    cpu_limit_factor: float = 1.2  # DIRAC's 20% margin over the job's CPUTime
    max_wall: float | None = None
    max_sandbox_mib: float = 10.0
    keep_jobdirs: bool = False
    processors: int = 1
    #: the node's HS23 factor per core (pilot.benchmark); 0 when unknown
    cpu_normalization: float = 0.0
    #: the GPUs given to the job (CUDA_VISIBLE_DEVICES); None: the pilot has none to give
    gpu_ids: list[str] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    log: Callable[[str], None] = print
    #: seconds the job's reports (statuses, outputs) keep being retried while the server
    #: cannot be reached; heartbeats are never retried (the next one comes soon)
    outage: float = 900.0
    #: the pilot's pilot.heartbeats.HeartbeatBatcher when it runs several jobs at once
    beats: Any = None


class JobWrapper:
    def __init__(self, match: dict[str, Any], rpc: RpcClient, options: WrapperOptions) -> None:
        self.match = match
        self.job_id = int(match["JobID"])
        self.jdl = parse_jdl(str(match.get("JDL", "")))
        token = match.get("JobToken")
        self.token = str(token) if token else None
        self.rpc = (rpc.with_token(str(token), retry_for=options.outage) if token
                    else rpc.with_options(retry_for=options.outage))
        self.beat_rpc = self.rpc.with_options(retries=0, retry_for=0.0)
        self.opts = options
        self.dir = os.path.join(os.path.abspath(options.workdir), str(self.job_id))
        self.lines: list[str] = []
        #: what a failed preparation left the job in
        self.outcome = "Failed"
        self.watchdog: Watchdog | None = None
        #: (CPU seconds, peak RSS kB, wall seconds) of the payload once it ended
        self.usage: tuple[float, int, float] | None = None
        #: the payload is our workflow runner: it sets the application statuses itself
        self.workflow_run = False
        self.last_app_status = ""
        self._statuses = payload.StatusReader(os.path.join(self.dir, WORKFLOW_STATUS))

    # -- reporting ------------------------------------------------------------------------

    def log(self, message: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        self.lines.append(f"{stamp} UTC job {self.job_id}: {message}")
        self.opts.log(f"job {self.job_id}: {message}")

    def report(self, status: str = "", minor: str = "") -> None:
        self.log(f"status {status or '-'} / {minor}")
        self.rpc.call(STATE, "setJobStatus", self.job_id, status, minor, SOURCE)

    def app_status(self, text: str) -> None:
        self.last_app_status = text[:255]
        self.rpc.call(STATE, "setJobApplicationStatus", self.job_id, text[:255], SOURCE)

    def parameters(self, pairs: dict[str, Any]) -> None:
        self.rpc.call(STATE, "setJobParameters", self.job_id,
                      [[k, str(v)] for k, v in pairs.items()])

    # -- the job ------------------------------------------------------------------------

    def run(self) -> str:
        """Run the job; returns the final status reported (``Killed`` for a Kill command,
        ``Refused`` when the server no longer counts the job as this pilot's)."""
        try:
            return self._run()
        except RpcError as exc:
            if exc.errno != JOB_NOT_ACTIVE:
                return self._failed(exc)
            self.log(f"the server refused a report: {exc}; the job is no longer ours")
            if self.watchdog is not None:
                self.watchdog.terminate(NOT_OURS)
            return "Refused"
        except Exception as exc:  # noqa: BLE001 - whatever happens, the job must end
            return self._failed(exc)
        finally:
            self._send_log()
            if not self.opts.keep_jobdirs:
                shutil.rmtree(self.dir, ignore_errors=True)

    def _failed(self, exc: Exception) -> str:
        self.log(f"exception: {exc}\n{traceback.format_exc()}")
        if self.watchdog is not None:
            self.watchdog.terminate("Exception During Execution")
        try:
            self.report("Failed", "Exception During Execution")
        except RpcError as again:
            self.log(f"cannot report the failure: {again}")
        return "Failed"

    def _run(self) -> str:
        if not self.prepare():
            return self.outcome
        try:
            cmd = self.payload_command()
        except PayloadRefusedError as exc:
            return self.refuse(exc)
        self.report("", "Application")
        code = self.execute(cmd)
        self.send_usage()
        return self.finish(code, self.watchdog.reason if self.watchdog else None)

    def initial_parameters(self) -> dict[str, Any]:
        return dict(self.opts.parameters, NumberOfProcessors=self.opts.processors,
                    CPUNormalizationFactor=self.opts.cpu_normalization or 1,
                    JobWrapperPID=os.getpid())

    def send_usage(self) -> None:
        """DIRAC's accounting parameters, before the final status (the accounting record is
        built from them once the job is final): TotalCPUTime(s), NormCPUTime(s) (CPU x the
        node's HS23 factor), WallClockTime(s), MemoryUsed(kb) (peak RSS)."""
        if self.usage is None:
            return
        cpu, rss_kb, wall = self.usage
        params: dict[str, Any] = {"TotalCPUTime(s)": round(cpu, 2),
                                  "WallClockTime(s)": round(wall, 2),
                                  "MemoryUsed(kb)": rss_kb}
        if self.opts.cpu_normalization:
            params["NormCPUTime(s)"] = round(cpu * self.opts.cpu_normalization, 2)
        try:
            self.parameters(params)
        except RpcError as exc:  # the heartbeats' last values are the accounting's fallback
            self.log(f"cannot send the usage parameters: {exc}")

    def prepare(self) -> bool:
        """Running/"Job Initialization", first parameters, input sandboxes unpacked in
        :attr:`dir`; False (and the job reported Failed) when a sandbox cannot be had."""
        os.makedirs(self.dir, exist_ok=True)
        self.report("Running", "Job Initialization")
        self.parameters(self.initial_parameters())
        sandboxes = [s for s in as_list(self.jdl.get("InputSandbox")) if s.startswith("SB:")]
        if sandboxes:
            self.report("", "Downloading InputSandbox")
            try:
                for url in sandboxes:
                    self.download(url)
            except (RpcError, OSError, tarfile.TarError, ValueError) as exc:
                self.log(f"input sandbox: {exc}")
                self.report("Failed", "Failed Downloading InputSandbox")
                return False
        return self.fetch_input_data()

    # -- data -------------------------------------------------------------------------------

    def mover(self) -> DataMover:
        return DataMover(self.rpc, site=str(self.opts.parameters.get("Site", "")),
                         workdir=self.dir, log=self.log)

    def fetch_input_data(self) -> bool:
        """``InputData`` downloaded into :attr:`dir` (or, with a "Protocol" InputDataPolicy,
        their URLs given to the payload); False (job Failed) when a file cannot be had."""
        lfns = [strip_lfn(x) for x in as_list(self.jdl.get("InputData"))]
        if not lfns:
            return True
        self.report("", "Input Data Resolution")
        by_protocol = "protocol" in str(self.jdl.get("InputDataPolicy", "")).lower()
        try:
            self.mover().fetch_inputs(lfns, download=not by_protocol)
        except (DataError, RpcError, OSError) as exc:
            self.log(f"input data: {exc}")
            self.parameters({"InputDataError": str(exc)[:2000]})
            self.reschedule("Input Data Resolution")
            return False
        return True

    def reschedule(self, minor: str) -> None:
        """What DIRAC's wrapper does when the worker node, not the job, is at fault: the job
        goes back to the queue (up to the server's rescheduling limit, then Failed); when the
        server refuses, the job is Failed with ``minor``."""
        self.app_status(f"{minor} failed")
        try:
            self.rpc.call(MANAGER, "rescheduleJob", self.job_id)
            self.log(f"{minor} failed: job rescheduled")
            self.outcome = "Rescheduled"
        except RpcError as exc:
            self.log(f"cannot reschedule ({exc}): the job fails")
            self.report("Failed", minor)

    def store_output_data(self) -> bool:
        """Upload and register ``OutputData`` (to ``OutputSE``, under ``OutputPath``); the
        job parameter ``UploadedOutputData`` lists the LFNs. False when a file is lost."""
        entries = as_list(self.jdl.get("OutputData"))
        if not entries:
            return True
        self.report("", "Uploading Output Data")
        owner = str(self.match.get("Owner") or self.jdl.get("Owner", ""))
        vo = str(self.jdl.get("VirtualOrganization", ""))
        files: dict[str, str] = {}
        missing = []
        root = os.path.realpath(self.dir) + os.sep
        for entry in entries:
            lfn = strip_lfn(entry)
            given = lfn != entry  # "LFN:/full/path": the local file is its base name
            found = sorted(glob.glob(os.path.join(self.dir, os.path.basename(lfn) if given
                                                  else entry)))
            found = [p for p in found
                     if os.path.isfile(p) and os.path.realpath(p).startswith(root)]
            if not found:
                missing.append(entry)
            for path in found:
                name = entry if given else os.path.basename(path)
                files[output_lfn(name, vo=vo, owner=owner, job_id=self.job_id,
                                 output_path=str(self.jdl.get("OutputPath", "")))] = path
        try:
            result = self.mover().store_outputs(
                files, ses=as_list(self.jdl.get("OutputSE")), job_id=self.job_id)
        except (DataError, RpcError, OSError) as exc:
            self.log(f"output data: {exc}")
            self.parameters({"OutputDataError": str(exc)[:2000]})
            return False
        kept = [*result.stored, *result.failover]
        if kept:
            self.parameters({"UploadedOutputData": ",".join(kept)})
        problems = {**{m: "no such file" for m in missing}, **result.lost}
        if problems:
            self.log(f"output data lost: {problems}")
            self.parameters({"OutputDataError": "; ".join(
                f"{k}: {v}" for k, v in problems.items())[:2000]})
            return False
        self.report("", "Output Data Uploaded")
        return True

    def finish(self, code: int | None, reason: str | None) -> str:
        """Report how the payload ended (exit ``code``, None: could not start; ``reason``: a
        watchdog's), upload the output sandbox from :attr:`dir`; the final status reported.

        Shared by the pilot and push mode (which runs the payload elsewhere and calls this
        once the outputs are back in :attr:`dir`)."""
        if reason == KILLED:
            self.log("killed on the server's request; the job stays Killed")
            return "Killed"
        if reason == NOT_OURS:
            self.log("the server no longer counts the job as ours: nothing more is reported")
            return "Refused"
        if reason is not None:
            if not self.workflow_run:
                self.app_status(f"Exit code {code}")
            self.report("Failed", reason)
            return "Failed"
        if code is None:
            self.report("Failed", "Application not found")
            return "Failed"
        if not self.workflow_run:
            self.app_status(f"Exit code {code}")
        elif code:  # the workflow's last status names the step's exit status
            self.parameters({"ApplicationError": self.last_app_status or f"Exit code {code}"})
        self.report("", "Application Finished Successfully" if code == 0
                    else "Application Finished With Errors")
        uploaded = self.upload_outputs()
        if code == 0 and not self.store_output_data():
            self.report("Failed", "Uploading Output Data")
            return "Failed"
        if code == 0 and uploaded:
            self.report("Done", "Execution Complete")
            return "Done"
        self.report("Failed", "Application Finished With Errors" if code else
                    "Uploading Output Sandbox")
        return "Failed"

    def download(self, url: str) -> None:
        data = self.rpc.call(SANDBOX, "streamToClient", url, "", raw=True)
        if not isinstance(data, bytes):
            raise ValueError(f"{url}: not an archive")
        extract(data, self.dir)
        self.log(f"input sandbox {url}: {len(data)} bytes")

    def command(self) -> list[str]:
        return payload.command(self.jdl, self.dir)

    def workflow_plan(self) -> tuple[list[str], list[tuple[str, str]]] | None:
        """:func:`pilot.payload.workflow_plan` of this job."""
        return payload.workflow_plan(self.jdl, self.dir)

    def payload_command(self) -> list[str]:
        """:func:`pilot.payload.payload_command` of this job (notes whether it is the pilot's
        workflow runner, whose statuses :meth:`relay_statuses` sends)."""
        cmd, self.workflow_run = payload.payload_command(self.jdl, self.dir, self.log)
        return cmd

    def refuse(self, exc: PayloadRefusedError) -> str:
        """The payload cannot run: say why (std.err, application status, ApplicationError),
        upload the output sandbox, end Failed with ``exc.minor``."""
        message = str(exc)
        self.log(message)
        err_name = str(self.jdl.get("StdError", "std.err"))
        with open(os.path.join(self.dir, err_name), "a", encoding="utf-8") as err:
            err.write(message + "\n")
        self.app_status(message)
        self.parameters({"ApplicationError": message[:2000]})
        self.upload_outputs()
        self.report("Failed", exc.minor)
        return "Failed"

    def relay_statuses(self) -> None:
        """Send the application statuses :mod:`pilot.jobexec` wrote since the last call."""
        for text in self._statuses.read():
            try:
                self.app_status(text)
            except RpcError as exc:
                self.log(f"cannot relay the application status {text!r}: {exc}")

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"DIRACJOBID": str(self.job_id), "JOBID": str(self.job_id),
                    "DIRAC_PROCESSORS": str(self.opts.processors)})
        if self.opts.gpu_ids is not None:  # a job sees its own GPUs only
            env["CUDA_VISIBLE_DEVICES"] = ",".join(self.opts.gpu_ids)
            env["PILOTWMS_GPUS"] = str(len(self.opts.gpu_ids))
        urls = os.path.join(self.dir, URLS_FILE)
        if os.path.exists(urls):  # the "Protocol" input data policy
            env["PILOTWMS_INPUT_DATA"] = urls
        for item in as_list(self.jdl.get("ExecutionEnvironment")):
            name, _, value = item.partition("=")
            if name:
                env[name] = value
        return env

    def cpu_limit(self) -> float | None:
        try:
            cpu_time = float(self.jdl.get("CPUTime", 0))
        except (TypeError, ValueError):
            return None
        if cpu_time <= 0:
            return None
        return cpu_time * self.opts.cpu_limit_factor * self.opts.processors

    def execute(self, cmd: list[str] | None = None) -> int | None:
        """Run the payload (``cmd``, default :meth:`command`) under the watchdog; its exit
        code (None: could not start)."""
        out_name = str(self.jdl.get("StdOutput", "std.out"))
        err_name = str(self.jdl.get("StdError", "std.err"))
        cmd = cmd or self.command()
        self.log(f"running {cmd}")
        with open(os.path.join(self.dir, out_name), "ab") as out:
            err = out if err_name == out_name else open(  # noqa: SIM115 - closed below
                os.path.join(self.dir, err_name), "ab")
            try:
                proc = subprocess.Popen(cmd, cwd=self.dir,  # noqa: S603 - the job's payload
                                        env=self.environment(),
                                        stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        start_new_session=True)
            except OSError as exc:
                self.log(f"cannot start {cmd[0]!r}: {exc}")
                err.write(f"cannot start {cmd[0]!r}: {exc}\n".encode())
                return None
            finally:
                if err is not out:
                    err.close()
        self.watchdog = Watchdog(
            proc.pid, heartbeat=self.heartbeat, workdir=self.dir, period=self.opts.heartbeat,
            check=self.opts.check, cpu_limit=self.cpu_limit(), wall_limit=self.opts.max_wall,
            log=self.log, peek=functools.partial(tail, os.path.join(self.dir, out_name)),
            align=self.opts.beats is not None)
        self.watchdog.start()
        started = time.monotonic()
        try:
            while True:
                # wait4, not poll(): the ended payload's own CPU and memory (with the
                # descendants it waited for), which a last watchdog sample may miss
                pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    break
                if self.opts.stop.wait(0.05):
                    self.watchdog.terminate(KILL_SIGNAL)
                if self.workflow_run:
                    self.relay_statuses()
            if self.workflow_run:
                self.relay_statuses()
            wall = time.monotonic() - started
            cpu = max(self.watchdog.cpu, rusage.ru_utime + rusage.ru_stime)
            rss_kb = max(self.watchdog.max_rss // 1024, rusage.ru_maxrss)
            self.usage = (cpu, rss_kb, wall)
            return proc.returncode
        finally:
            self.watchdog.stop()
            self.watchdog.join(30)
            kill_tree(proc.pid, proc.pid, grace=0.5)  # leftovers of a finished payload
            proc.wait()

    def heartbeat(self, dynamic: dict[str, Any], static: dict[str, Any]) -> dict[str, Any]:
        if self.opts.beats is not None:  # with the other jobs of the pilot, in one call
            return self.opts.beats.send(self.job_id, dynamic, static, token=self.token,
                                        single=lambda: self._heartbeat(dynamic, static))
        return self._heartbeat(dynamic, static)

    def _heartbeat(self, dynamic: dict[str, Any], static: dict[str, Any]) -> dict[str, Any]:
        reply = self.beat_rpc.call(STATE, "sendHeartBeat", self.job_id, dynamic, static)
        return reply if isinstance(reply, dict) else {}

    # -- outputs --------------------------------------------------------------------------

    def output_files(self) -> list[str]:
        names = [str(self.jdl.get("StdOutput", "std.out")), str(self.jdl.get("StdError",
                                                                                "std.err"))]
        for name in as_list(self.jdl.get("OutputSandbox")):
            if name.startswith("LFN:"):
                continue
            found = glob.glob(os.path.join(self.dir, name))
            names.extend(os.path.relpath(p, self.dir) for p in sorted(found))
        result: list[str] = []
        for name in names:
            path = os.path.normpath(os.path.join(self.dir, name))
            if path.startswith(self.dir + os.sep) and os.path.exists(path) \
                    and name not in result:
                result.append(name)
        return result

    def upload_outputs(self) -> bool:
        files = self.output_files()
        if not files:
            return True
        self.report("", "Uploading Output Sandbox")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:bz2") as tar:
            for name in files:
                tar.add(os.path.join(self.dir, name), arcname=name)
        data = buffer.getvalue()
        if len(data) > self.opts.max_sandbox_mib * 1024 * 1024:
            return self._too_big(f"{len(data)} bytes")
        md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - DIRAC's content key
        try:
            url = self.rpc.call(SANDBOX, "streamFromClient",
                                [f"{md5}.tar.bz2", {f"Job:{self.job_id}": "Output"}], "",
                                len(data), data)
        except RpcError as exc:
            if "too big" in str(exc):
                return self._too_big(str(exc))
            self.log(f"output sandbox upload failed: {exc}")
            self.parameters({"OutputSandbox": f"upload failed: {exc}"})
            return False
        self.log(f"output sandbox {url}: {', '.join(files)}")
        self.report("", "Output Sandbox Uploaded")
        return True

    def _too_big(self, detail: str) -> bool:
        self.log(f"output sandbox not uploaded ({detail}): {SANDBOX_TOO_BIG}")
        self.parameters({"OutputSandbox": SANDBOX_TOO_BIG})
        return False

    def _send_log(self) -> None:
        """The wrapper's own log as job parameter ``JobWrapperLog`` (last 16 kB)."""
        text = "\n".join(self.lines)[-16384:]
        try:
            self.parameters({"JobWrapperLog": text})
        except RpcError as exc:
            self.opts.log(f"job {self.job_id}: cannot send the wrapper log: {exc}")


