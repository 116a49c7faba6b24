"""A private single-node Slurm (slurmctld + slurmd + munged) for the tests.

Everything lives in a temp dir (mode 0755 so that another local user, the SSH test user, can
read ``slurm.conf`` and reach the munge socket): own munge key and socket, ``slurm.conf`` with
NodeName = the short hostname, free ports, no cgroups, no slurmdbd (``jobcomp/filetxt``, so
``sacct -c`` answers for finished jobs). Needs the Debian packages
``slurmctld slurmd slurm-client munge`` (scripts/test.sh installs them).

    >>> cluster = SlurmCluster(); cluster.start()          # doctest: +SKIP
    >>> cluster.env["SLURM_CONF"]                           # doctest: +SKIP

``SlurmCluster(gpus=2)`` declares GPUs without hardware: ``GresTypes=gpu``, the node's
``Gres=gpu:<n>`` and a ``gres.conf`` whose device files are links to ``/dev/null``, plus a
``gpu`` partition. Slurm then allocates them (``--gres=gpu:N``) and sets
``CUDA_VISIBLE_DEVICES`` in the job, as on a real GPU node.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.mariadb import free_port

BINARIES = {"slurmctld": "slurmctld", "slurmd": "slurmd", "sbatch": "slurm-client",
            "munged": "munge", "mungekey": "munge"}


def _which(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if Path(p).exists()), None)
    if path is None:
        raise RuntimeError(f"{name} not found: install the Debian package '{BINARIES[name]}' "
                           "(apt-get install slurmctld slurmd slurm-client munge; "
                           "scripts/test.sh does)")
    return path


class SlurmCluster:
    def __init__(self, *, gpus: int = 0) -> None:
        self.gpus = gpus
        self.base = Path(tempfile.mkdtemp(prefix="pwslurm-"))
        self.base.chmod(0o755)
        self.node = socket.gethostname().split(".")[0]
        self.cpus = os.cpu_count() or 1
        self.ctld_port = free_port()
        self.slurmd_port = free_port()
        self.conf = self.base / "slurm.conf"
        self.munge_socket = self.base / "munge" / "munge.socket.2"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {"SLURM_CONF": str(self.conf)}

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def start(self) -> None:
        bins = {name: _which(name) for name in BINARIES}
        for sub in ("state", "spool", "log", "munge", "jobs"):
            (self.base / sub).mkdir(mode=0o755)
        (self.base / "jobs").chmod(0o1777)
        key = self.base / "munge" / "munge.key"
        subprocess.run([bins["mungekey"], "--create", f"--keyfile={key}"], check=True,
                       capture_output=True)
        subprocess.run(
            [bins["munged"], f"--socket={self.munge_socket}", f"--key-file={key}",
             f"--log-file={self.base / 'munge' / 'munged.log'}",
             f"--pid-file={self.base / 'munge' / 'munged.pid'}",
             f"--seed-file={self.base / 'munge' / 'munged.seed'}"],
            check=True, capture_output=True,
        )
        user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
        b = self.base
        gres_types, node_gres, gpu_partition = "", "", ""
        if self.gpus:
            (b / "dev").mkdir(mode=0o755)
            for index in range(self.gpus):
                (b / "dev" / f"nvidia{index}").symlink_to("/dev/null")
            (b / "gres.conf").write_text(
                f"NodeName={self.node} Name=gpu File={b}/dev/nvidia[0-{self.gpus - 1}]\n")
            (b / "gres.conf").chmod(0o644)
            gres_types = "GresTypes=gpu\n"
            node_gres = f" Gres=gpu:{self.gpus}"
            gpu_partition = (f"PartitionName=gpu Nodes={self.node} MaxTime=INFINITE "
                             "State=UP\n")
        self.conf.write_text(f"""ClusterName=pwtest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
SlurmUser={user}
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
StateSaveLocation={b}/state
SlurmdSpoolDir={b}/spool/slurmd-%n
SlurmctldPidFile={b}/slurmctld.pid
SlurmdPidFile={b}/slurmd.pid
SlurmctldLogFile={b}/log/slurmctld.log
SlurmdLogFile={b}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc={b}/log/jobcomp.txt
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=600
KillWait=2
MpiDefault=none
{gres_types}NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory=2000\
{node_gres} State=UNKNOWN
PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
PartitionName=short Nodes={self.node} MaxTime=5 State=UP
{gpu_partition}""")
        self.conf.chmod(0o644)
        for name, args in (("slurmctld", ["-D", "-i"]), ("slurmd", ["-D"])):
            out = open(b / "log" / f"{name}.out", "wb")  # noqa: SIM115 - kept for the process
            self.procs.append(subprocess.Popen([bins[name], *args], stdout=out,
                                               stderr=subprocess.STDOUT, env=self._env()))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args[0]} exited: {self.logs()}")
            res = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True,
                                 text=True, env=self._env())
            if res.returncode == 0 and res.stdout.split()[:1] in (["idle"], ["mixed"]):
                return
            time.sleep(0.3)
        raise RuntimeError(f"slurm did not become ready within 60 s: {self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-2000:]}"
                         for p in sorted((self.base / "log").glob("*")))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        pid_file = self.base / "munge" / "munged.pid"
        if pid_file.exists():
            try:
                pid = int(pid_file.read_text().strip())
                os.kill(pid, 15)
                # munged writes its seed file on the way out: wait before removing the dir
                deadline = time.monotonic() + 10
                while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                    time.sleep(0.1)
            except (ProcessLookupError, ValueError):
                pass
        shutil.rmtree(self.base, ignore_errors=True)
