"""The job agent: register the pilot, then match and run jobs while time and work remain.

A pool fills the node: with the node empty and ``whole_node`` set it first asks for
``WholeNode`` jobs, then for multi-processor jobs (``RequiredTag: MultiProcessor``) with every
free processor, then for any job fitting what is left. A round of requests without a job is one
failed match: the agent sleeps ``poll * 2**(n-1)`` (at most ``max_sleep``) and stops after
``max_failed`` consecutive failures, when the drain file appears, or on SIGTERM.

Example::

    agent = Agent(rpc, AgentOptions(site="LCG.X.org", workdir="/scratch/p1"), node)
    agent.run()      # returns the number of jobs run
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from pilot.heartbeats import HeartbeatBatcher
from pilot.jdl import parse_jdl
from pilot.node import NodeInfo, gpu_models
from pilot.rpc import RpcClient, RpcError
from pilot.wrapper import JobWrapper, WrapperOptions

MATCHER = "WorkloadManagement/Matcher"
PILOTS = "WorkloadManagement/PilotManager"
NO_MATCH = 1510
log = logging.getLogger("pilot")


@dataclass
class AgentOptions:
    site: str = "ANY"
    ce: str = ""
    queue: str = ""
    pilot_reference: str = ""
    workdir: str = "."
    drain_file: str = ""
    max_failed: int = 10
    poll: float = 10.0
    max_sleep: float = 300.0
    min_time: int = 0
    whole_node: bool = False
    owner_group: str = ""
    tags: list[str] = field(default_factory=list)
    required_tags: list[str] = field(default_factory=list)
    wrapper: WrapperOptions = field(default_factory=WrapperOptions)

    def __post_init__(self) -> None:
        if not self.pilot_reference:
            self.pilot_reference = f"pilotwms://{os.uname().nodename}/{uuid.uuid4()}"
        if not self.drain_file:
            self.drain_file = os.path.join(self.workdir, ".drain")


class Agent:
    def __init__(self, rpc: RpcClient, options: AgentOptions, node: NodeInfo) -> None:
        self.rpc = rpc
        self.opts = options
        self.node = node
        self.started = time.monotonic()
        self.free = node.processors
        #: GPU IDs not given to a running job
        self.free_gpu_ids = list(node.gpu_ids or [str(i) for i in range(len(node.gpus))])
        self.cond = threading.Condition()
        self.threads: list[threading.Thread] = []
        self.jobs_run = 0
        self.results: dict[int, str] = {}
        self.stop_reason = ""
        #: several slots: the running jobs' heartbeats leave in one call per period
        self.beats = (HeartbeatBatcher(rpc, window=max(1.0, min(options.wrapper.check + 1,
                                                                options.wrapper.heartbeat)))
                      if node.processors > 1 else None)

    # -- registration -------------------------------------------------------------------

    def register(self) -> None:
        """Best effort ``PilotManager.registerPilot(reference, info)``."""
        info: dict[str, Any] = {"Site": self.opts.site, "CE": self.opts.ce,
                                "Queue": self.opts.queue, "Host": self.node.host}
        info.update({k: v for k, v in self.node.as_dict().items() if k != "host"})
        if self.opts.wrapper.cpu_normalization:
            info["CPUNormalizationFactor"] = self.opts.wrapper.cpu_normalization
        try:
            self.rpc.call(PILOTS, "registerPilot", self.opts.pilot_reference, info)
            log.info("registered as %s", self.opts.pilot_reference)
        except RpcError as exc:
            log.warning("registerPilot failed (HTTP %s), continuing: %s", exc.status, exc)

    # -- matching -----------------------------------------------------------------------

    def time_left(self) -> int:
        return int(self.node.time_left - (time.monotonic() - self.started))

    def resource(self, processors: int, *, whole_node: bool = False,
                 multi_only: bool = False) -> dict[str, Any]:
        tags = list(self.opts.tags)
        required = list(self.opts.required_tags)
        if multi_only:
            required.append("MultiProcessor")
        desc: dict[str, Any] = {
            "Site": self.opts.site, "GridCE": self.opts.ce or None,
            "Queue": self.opts.queue or None, "Platform": self.node.platform,
            "CPUTime": max(0, self.time_left()), "NumberOfProcessors": processors,
            "MaxRAM": self.node.memory_mb or None, "Tag": tags, "RequiredTag": required,
            "PilotReference": self.opts.pilot_reference, "WholeNode": whole_node,
            "OwnerGroup": self.opts.owner_group or None,
            "NumberOfGPUs": len(self.free_gpu_ids) or None,
            "GPUModels": (gpu_models(self.node.gpus) or None) if self.free_gpu_ids else None}
        return {k: v for k, v in desc.items() if v is not None}

    def request(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        try:
            match = self.rpc.call(MATCHER, "requestJob", resource)
        except RpcError as exc:
            if exc.errno != NO_MATCH:
                log.warning("requestJob: %s", exc)
            return None
        return match if isinstance(match, dict) and "JobID" in match else None

    def match_once(self) -> dict[str, Any] | None:
        """One round of requests with what is free, widest first."""
        free = self.free
        attempts: list[dict[str, Any]] = []
        if free == self.node.processors and self.opts.whole_node:
            attempts.append(self.resource(free, whole_node=True, multi_only=free > 1))
        if free > 1:
            attempts.append(self.resource(free, multi_only=True))
        attempts.append(self.resource(1 if free > 1 else free))
        for resource in attempts:
            match = self.request(resource)
            if match is not None:
                return match
        return None

    def job_processors(self, match: dict[str, Any]) -> int:
        try:
            jdl = parse_jdl(str(match.get("JDL", "")))
        except ValueError:
            return 1
        if str(jdl.get("WholeNode", "")).lower() == "true":
            return self.free
        for key in ("NumberOfProcessors", "MinNumberOfProcessors"):
            value = jdl.get(key)
            if isinstance(value, int) and value > 0:
                return max(1, min(value, self.free))
        return 1

    # -- the loop -----------------------------------------------------------------------

    def should_stop(self) -> str:
        if os.path.exists(self.opts.drain_file):
            return f"drain file {self.opts.drain_file}"
        if self.opts.wrapper.stop.is_set():
            return "signal"
        if self.time_left() <= self.opts.min_time:
            return "no time left"
        return ""

    def run(self) -> int:
        """Match and run jobs until told to stop; waits for the running ones. Returns the number
        of jobs run."""
        failures = 0
        while True:
            self.stop_reason = self.should_stop()
            if self.stop_reason:
                break
            with self.cond:
                while self.free == 0 and not self.opts.wrapper.stop.is_set():
                    self.cond.wait(1.0)
            match = self.match_once()
            if match is None:
                failures += 1
                if failures >= self.opts.max_failed:
                    self.stop_reason = f"{failures} failed matches"
                    break
                pause = min(self.opts.poll * 2 ** (failures - 1), self.opts.max_sleep)
                self._sleep(pause)
                continue
            failures = 0
            self.start_job(match)
        log.info("stopping: %s; waiting for %d running job(s)", self.stop_reason,
                 sum(t.is_alive() for t in self.threads))
        for thread in self.threads:
            thread.join()
        return self.jobs_run

    def _sleep(self, seconds: float) -> None:
        """Sleep, waking early for a drain file, a signal or a finished job."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.should_stop():
            self.opts.wrapper.stop.wait(min(0.2, max(0.0, deadline - time.monotonic())))

    def job_gpus(self, match: dict[str, Any]) -> int:
        try:
            jdl = parse_jdl(str(match.get("JDL", "")))
        except ValueError:
            return 0
        for key in ("NumberOfGPUs", "GPUs"):
            value = jdl.get(key)
            if isinstance(value, int) and value > 0:
                return min(value, len(self.free_gpu_ids))
        return 0

    def start_job(self, match: dict[str, Any]) -> None:
        processors = self.job_processors(match)
        count = self.job_gpus(match)
        with self.cond:
            self.free -= processors
            gpus, self.free_gpu_ids = self.free_gpu_ids[:count], self.free_gpu_ids[count:]
        self.jobs_run += 1
        job_id = int(match["JobID"])
        log.info("job %s matched (%d processor(s), owner %s)", job_id, processors,
                 match.get("Owner"))
        wrapper_opts = WrapperOptions(**{**self.opts.wrapper.__dict__,
                                         "processors": processors,
                                         "gpu_ids": gpus if self.node.gpus else None,
                                         "parameters": self.job_parameters(),
                                         "beats": self.beats})
        thread = threading.Thread(target=self._run_job,
                                  args=(match, wrapper_opts, processors, gpus),
                                  name=f"job-{job_id}", daemon=True)
        self.threads.append(thread)
        thread.start()

    def job_parameters(self) -> dict[str, Any]:
        return {"Pilot_Reference": self.opts.pilot_reference, "HostName": self.node.host,
                "Site": self.opts.site, "GridCE": self.opts.ce, "CEQueue": self.opts.queue,
                "LocalAccount": _user(), "Platform": self.node.platform}

    def _run_job(self, match: dict[str, Any], options: WrapperOptions, processors: int,
                 gpus: list[str] | None = None) -> None:
        beats = self.beats.running() if self.beats is not None else contextlib.nullcontext()
        try:
            with beats:
                status = JobWrapper(match, self.rpc, options).run()
            self.results[int(match["JobID"])] = status
            log.info("job %s ended %s", match["JobID"], status)
        finally:
            with self.cond:
                self.free += processors
                self.free_gpu_ids += gpus or []
                self.cond.notify_all()


def _user() -> str:
    try:
        import pwd
        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())
