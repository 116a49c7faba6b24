"""What the configured queues can run: capacity checks at submission, and the queue list.

Each queue of ``Resources.Sites.<site>.CEs.<ce>.Queues`` declares its capacity: processors,
whole nodes, RAM (MB, 0 = unknown), GPUs (count and model), CPU and wall time, platform, tags
and required tags (docs/queues.md). A job is *possible* on a queue when the queue could match it
(the matcher's rules, on the declared figures): its site, CE and platform wishes, its CPU time
bucket, every tag it needs (processors, whole node, RAM, GPUs, GPU model, the user's tags) and
the queue's required tags. Pilots then offer what their node really has; the declaration is
the upper bound used here.

A job possible on no queue is refused at submission with the reason ("no queue offers 2 GPUs
with 16000 MB") unless its JDL says ``WaitForResources = true`` (sites that will come later),
or ``Operations.JobScheduling.RefuseImpossibleJobs`` is off, or no queue is configured at all.

Example::

    >>> from core.config.schema import Config
    >>> from wms.logic.jdl import parse_jdl
    >>> from wms.logic.job_description import describe_job
    >>> cfg = Config.model_validate({"Resources": {"Sites": {"LCG.G.org": {"CEs": {"ce": {
    ...     "CEType": "Local", "Queues": {"gpu": {"NumberOfGPUs": 1, "MaxRAM": 8000}}}}}}}})
    >>> job = describe_job(parse_jdl('[Executable="x"; NumberOfGPUs=2; MinRAM=16000;]'),
    ...                    owner="a", owner_group="g", vo="v")
    >>> impossible(queues_of(cfg), job)
    'no queue offers 2 GPUs with 16000 MB'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from core.config.schema import Config, QueueConfig
from core.exceptions import JobSubmissionError
from wms.logic.job_description import JobDescription
from wms.logic.task_queues import cpu_bucket, offered_tags

WAIT_ATTRIBUTE = "WaitForResources"
_PROCESSORS = re.compile(r"(\d+)Processors")
_GB = re.compile(r"(\d+)GB")
_GPUS = re.compile(r"(\d+)GPUs")


@dataclass(frozen=True)
class QueueCapacity:
    """One configured queue and what it declares."""

    site: str
    ce: str
    queue: str
    ce_type: str
    push_mode: bool
    config: QueueConfig

    @property
    def name(self) -> str:
        return f"{self.site}/{self.ce}/{self.queue}"

    @property
    def cpu_time(self) -> int:
        """The CPU time its pilots offer (bounded by the wall time, as a pilot's offer is)."""
        q = self.config
        return min(q.max_cpu_time, q.max_wall_time or q.max_cpu_time)

    def tags(self) -> set[str]:
        q = self.config
        return set(offered_tags(list(q.tags) + list(q.required_tags), q.number_of_processors,
                                q.max_ram or None, q.whole_node, gpus=q.number_of_gpus,
                                gpu_models=[q.gpu_model] if q.gpu_model else []))

    def describe(self) -> dict[str, object]:
        """The queue's capacity as ``dqueues`` shows it (DIRAC-style keys)."""
        q = self.config
        return {"Site": self.site, "CE": self.ce, "Queue": self.queue, "CEType": self.ce_type,
                "PushMode": self.push_mode, "NumberOfProcessors": q.number_of_processors,
                "WholeNode": q.whole_node, "MaxRAM": q.max_ram, "NumberOfGPUs": q.number_of_gpus,
                "GPUModel": q.gpu_model or "", "MaxCPUTime": q.max_cpu_time,
                "MaxWallTime": q.max_wall_time, "Platform": q.platform or "",
                "Tags": list(q.tags), "RequiredTags": list(q.required_tags)}


def queues_of(config: Config) -> list[QueueCapacity]:
    """Every configured queue, sorted by site, CE and queue."""
    return [QueueCapacity(site, ce_name, q_name, ce.ce_type, ce.push_mode, q)
            for site, site_conf in sorted(config.resources.sites.items())
            for ce_name, ce in sorted(site_conf.ces.items())
            for q_name, q in sorted(ce.queues.items())]


def unmet(queue: QueueCapacity, desc: JobDescription) -> list[str]:
    """Why ``queue`` could never run the job (empty: it could)."""
    reasons = []
    if desc.sites and queue.site not in desc.sites:
        reasons.append(f"site {queue.site} not wanted")
    if queue.site in desc.banned_sites:
        reasons.append(f"site {queue.site} banned")
    if desc.grid_ces and queue.ce not in desc.grid_ces:
        reasons.append(f"CE {queue.ce} not wanted")
    if desc.platforms and queue.config.platform not in desc.platforms:
        reasons.append(f"platform {queue.config.platform or 'unknown'}")
    if cpu_bucket(desc.cpu_time) > queue.cpu_time:
        reasons.append(f"CPU time {queue.cpu_time} s")
    needed = set(desc.requirement_tags)
    offered = queue.tags()
    missing = {t for t in needed - offered
               if not (_GB.fullmatch(t) and not queue.config.max_ram)}  # RAM 0 = unknown
    reasons += sorted(f"tag {t}" for t in missing)
    required = set(queue.config.required_tags) - needed
    reasons += sorted(f"requires tag {t}" for t in required)
    return reasons


def requirements_text(desc: JobDescription) -> str:
    """The job's wishes in words, most specific first.

    >>> from wms.logic.jdl import parse_jdl
    >>> from wms.logic.job_description import describe_job
    >>> requirements_text(describe_job(parse_jdl(
    ...     '[Executable="x"; NumberOfProcessors=8; Tags={"GPU", "ssd"}; MaxRAM=4000;]'),
    ...     owner="a", owner_group="g", vo="v"))
    '8 processors with 1 GPU with 4000 MB with tag ssd'
    """
    parts: list[str] = []
    tags = desc.requirement_tags
    procs = [int(m.group(1)) for t in tags if (m := _PROCESSORS.fullmatch(t))]
    if procs:
        parts.append(f"{max(procs)} processors")
    elif "MultiProcessor" in tags:
        parts.append("several processors")
    if "WholeNode" in tags:
        parts.append("whole nodes")
    if desc.number_of_gpus or desc.gpu_model or "GPU" in tags:
        count = desc.number_of_gpus or 1
        model = f" {desc.gpu_model}" if desc.gpu_model else ""
        parts.append(f"{count}{model} GPU" + ("s" if count > 1 else ""))
    if desc.ram_needed:
        parts.append(f"{desc.ram_needed} MB")
    if desc.platforms:
        parts.append(f"platform {' or '.join(desc.platforms)}")
    derived = {"MultiProcessor", "WholeNode", "GPU"}
    user = [t for t in desc.tags if t not in derived and not _PROCESSORS.fullmatch(t)
            and not _GB.fullmatch(t) and not _GPUS.fullmatch(t) and not t.startswith("GPU:")]
    parts += [f"tag {t}" for t in user]
    return " with ".join(parts) if parts else "what this job needs"


def impossible(queues: Iterable[QueueCapacity], desc: JobDescription) -> str | None:
    """None when some queue could run the job, else the reason it is refused."""
    queues = list(queues)
    if not queues or desc.extra.get_bool(WAIT_ATTRIBUTE, False):
        return None
    verdicts = {q.name: unmet(q, desc) for q in queues}
    if any(not reasons for reasons in verdicts.values()):
        return None
    where = ""
    if desc.sites:
        where = f" at {', '.join(desc.sites)}"
        if not any(q.site in desc.sites for q in queues):
            return f"no queue is configured at {', '.join(desc.sites)}"
    fits_but_time = [q for q, r in verdicts.items() if r and all(x.startswith("CPU time")
                                                                   for x in r)]
    if fits_but_time:
        return (f"no queue{where} offers {desc.cpu_time} s of CPU time "
                f"for {requirements_text(desc)}")
    return f"no queue{where} offers {requirements_text(desc)}"


def check_jobs(config: Config, descriptions: Iterable[JobDescription]) -> None:
    """Raise :class:`~core.exceptions.JobSubmissionError` with the reason when one of the
    jobs could run on no configured queue (see the module docstring)."""
    if not config.operations.job_scheduling.refuse_impossible_jobs:
        return
    queues = queues_of(config)
    if not queues:
        return
    seen: set[tuple[object, ...]] = set()
    for desc in descriptions:  # parametric children mostly share their requirements
        key = (tuple(desc.requirement_tags), tuple(desc.sites), tuple(desc.banned_sites),
               tuple(desc.grid_ces), tuple(desc.platforms), cpu_bucket(desc.cpu_time),
               desc.extra.get_bool(WAIT_ATTRIBUTE, False))
        if key in seen:
            continue
        seen.add(key)
        reason = impossible(queues, desc)
        if reason is not None:
            raise JobSubmissionError(
                f"{reason} (WaitForResources = true keeps such a job Waiting)")


# -- the queue list (dqueues) -----------------------------------------------------------------


def queue_resource(q: QueueCapacity) -> dict[str, object]:
    """The resource description a pilot of this queue would send (to count its jobs): the
    declared figures, its CPU time bounded by the wall time."""
    c = q.config
    resource: dict[str, object] = {
        "Site": q.site, "GridCE": q.ce, "Queue": q.queue, "CPUTime": q.cpu_time,
        "NumberOfProcessors": c.number_of_processors, "Tag": list(c.tags),
        "RequiredTag": list(c.required_tags)}
    if c.max_ram:
        resource["MaxRAM"] = c.max_ram
    if c.platform:
        resource["Platform"] = c.platform
    if c.whole_node:
        resource["WholeNode"] = True
    if c.number_of_gpus:
        resource["NumberOfGPUs"] = c.number_of_gpus
        if c.gpu_model:
            resource["GPUModel"] = c.gpu_model
    return resource


def select_queues(queues: Iterable[QueueCapacity], *, site: str | None = None,
                  tag: str | None = None) -> list[QueueCapacity]:
    """Queues of ``site`` and/or offering ``tag`` (a declared tag or one its capacity gives,
    e.g. ``GPU``, ``4Processors``, ``WholeNode``)."""
    out = []
    for q in queues:
        if site is not None and q.site != site:
            continue
        if tag is not None and tag not in q.tags():
            continue
        out.append(q)
    return out
