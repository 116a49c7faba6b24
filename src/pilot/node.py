"""Worker-node checks: OS, processors, memory, disk, GPUs and the batch slot's time left.

Example::

    >>> info = check_node(".", max_time=3600)
    >>> info.processors >= 1 and 0 < info.time_left <= 3600
    True
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from typing import Any

#: CPUTime offered when the batch system sets no limit (DIRAC's largest CPU-time bucket)
UNLIMITED_TIME = 1080000


@dataclass
class NodeInfo:
    host: str
    os_name: str
    platform: str
    processors: int
    memory_mb: int
    disk_free_mb: int
    gpus: list[str] = field(default_factory=list)
    #: the IDs of those GPUs (CUDA_VISIBLE_DEVICES values), in the same order
    gpu_ids: list[str] = field(default_factory=list)
    time_left: int = UNLIMITED_TIME
    python: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def os_name() -> str:
    """``PRETTY_NAME`` from /etc/os-release, else ``uname -sr``."""
    try:
        with open("/etc/os-release", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}"


def default_platform() -> str:
    """DIRAC-style platform, e.g. ``Linux_x86_64_glibc-2.35``."""
    libc, version = platform.libc_ver()
    suffix = f"_{libc}-{version}" if libc and version else ""
    return f"{platform.system()}_{platform.machine()}{suffix}"


def processor_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def memory_mb() -> int:
    """MemTotal from /proc/meminfo in MB (0 when unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def disk_free_mb(path: str) -> int:
    return shutil.disk_usage(path).free // (1024 * 1024)


def _allocated(env: dict[str, str]) -> list[str] | None:
    """The GPUs the batch system gave this job (``CUDA_VISIBLE_DEVICES``, which Slurm sets
    from the job's gres; else ``SLURM_GPUS_ON_NODE``): their IDs, None when it says nothing."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        if visible.strip() in ("", "NoDevFiles", "-1"):
            return []
        return [x.strip() for x in visible.split(",") if x.strip()]
    count = env.get("SLURM_GPUS_ON_NODE", "")
    if count.isdigit():
        return [str(i) for i in range(int(count))]
    return None


def gpu_devices(environ: dict[str, str] | None = None, model_hint: str = ""
                ) -> list[tuple[str, str]]:
    """(device ID, model name) of the GPUs this pilot may use.

    ``nvidia-smi`` names the node's GPUs; when the batch system allocated some
    (``CUDA_VISIBLE_DEVICES``), only those count, with the IDs it gave. Without ``nvidia-smi``,
    the batch allocation gives the devices and ``model_hint`` (the queue's declared model) the
    names.

    >>> gpu_devices({"CUDA_VISIBLE_DEVICES": "2,3", "PATH": "/nonexistent"}, "A100")
    [('2', 'A100'), ('3', 'A100')]
    """
    env = dict(os.environ) if environ is None else environ
    allocated = _allocated(env)
    exe = shutil.which("nvidia-smi", path=env.get("PATH"))
    if exe:
        try:
            out = subprocess.run(  # noqa: S603
                [exe, "--query-gpu=index,name", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=30, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        found = []
        for line in out.splitlines():
            index, _, name = line.partition(",")
            if name.strip():
                found.append((index.strip(), name.strip()))
        if allocated is not None:
            if all(a.isdigit() for a in allocated):
                found = [(i, n) for i, n in found if i in allocated]
            else:  # UUIDs: the allocation's IDs, nvidia-smi's names
                names = [n for _, n in found]
                found = [(a, names[i]) for i, a in enumerate(allocated) if i < len(names)]
        if found or allocated is None:
            return found
    return [(device, model_hint) for device in allocated or []]


def gpus(environ: dict[str, str] | None = None, model_hint: str = "") -> list[str]:
    """The model names of the GPUs this pilot may use (see :func:`gpu_devices`).

    >>> gpus({"CUDA_VISIBLE_DEVICES": "0,1", "PATH": "/nonexistent"}, "A100")
    ['A100', 'A100']
    >>> gpus({"CUDA_VISIBLE_DEVICES": "NoDevFiles", "PATH": "/nonexistent"}, "A100")
    []
    """
    return [name for _, name in gpu_devices(environ, model_hint)]


def gpu_models(names: list[str]) -> list[str]:
    """The model names a node's GPUs answer to: the full name, without its vendor, and the
    first word of that (so ``GPUModel = "A100"`` matches an "NVIDIA A100-SXM4-40GB").

    >>> gpu_models(["NVIDIA A100-SXM4-40GB"])
    ['NVIDIA A100-SXM4-40GB', 'A100-SXM4-40GB', 'A100']
    """
    out: list[str] = []
    for name in names:
        if not name:
            continue
        out.append(name)
        words = name.split()
        if len(words) > 1 and words[0].lower() in ("nvidia", "amd", "intel", "tesla"):
            words = words[1:]
            out.append(" ".join(words))
        if words:
            out.append(words[0].split("-")[0])
    return list(dict.fromkeys(out))


def parse_slurm_time(text: str) -> int | None:
    """``squeue %L`` text -> seconds (None for UNLIMITED or junk).

    >>> parse_slurm_time("1-02:00:03"), parse_slurm_time("05:00"), parse_slurm_time("UNLIMITED")
    (93603, 300, None)
    """
    text = text.strip()
    days = 0
    if "-" in text:
        head, text = text.split("-", 1)
        if not head.isdigit():
            return None
        days = int(head)
    parts = text.split(":")
    if not all(p.isdigit() for p in parts) or not 1 <= len(parts) <= 3:
        return None
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + int(part)
    if len(parts) == 2 and days == 0:
        return seconds  # MM:SS
    return days * 86400 + seconds


def batch_time_left(environ: dict[str, str] | None = None) -> int | None:
    """Seconds left in the batch slot: ``$SLURM_JOB_END_TIME``, else ``squeue``; None if
    unknown."""
    env = os.environ if environ is None else environ
    end = env.get("SLURM_JOB_END_TIME", "")
    if end.isdigit():
        return max(0, int(end) - int(time.time()))
    job = env.get("SLURM_JOB_ID", "")
    exe = shutil.which("squeue")
    if job and exe:
        try:
            out = subprocess.run([exe, "-h", "-j", job, "-o", "%L"],  # noqa: S603
                                 capture_output=True,
                                 text=True, timeout=30, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        return parse_slurm_time(out)
    return None


def check_node(workdir: str, *, max_time: int | None = None, processors: int | None = None,
               max_ram_mb: int | None = None, platform_name: str | None = None,
               gpu_count: int | None = None, gpu_model: str = "") -> NodeInfo:
    """What this node offers; options override what is detected (``gpu_model`` only names
    allocated GPUs the node cannot name itself)."""
    left = batch_time_left()
    limits = [t for t in (left, max_time) if t is not None]
    devices = (gpu_devices(model_hint=gpu_model) if gpu_count is None
               else [(str(i), gpu_model) for i in range(gpu_count)])
    return NodeInfo(
        host=socket.getfqdn(), os_name=os_name(),
        platform=platform_name or default_platform(),
        processors=processors or processor_count(),
        memory_mb=max_ram_mb or memory_mb(), disk_free_mb=disk_free_mb(workdir),
        gpus=[name for _, name in devices], gpu_ids=[device for device, _ in devices],
        time_left=min(limits) if limits else UNLIMITED_TIME,
        python=platform.python_version())
