"""A real 3-node MariaDB Galera cluster on 127.0.0.1 for the tests and benchmarks.

Debian's ``mariadb-server`` 10.11 and ``galera-4`` (scripts/test.sh installs them). Every node is
a ``mariadbd`` started directly (no systemd) with its own datadir, SQL port, group-communication
port, IST port and rsync SST port, all free ports on 127.0.0.1. Run as root, the nodes run as the
``mysql`` user: a root ``mariadbd`` starts the rsync SST daemon as root, which then drops to
``nobody`` and cannot enter the datadir (the joiner never receives its state).

Dead nodes are evicted after ~3 s (``evs.*`` timeouts shortened; the default is ~6 s). A node
killed with SIGKILL rejoins with :meth:`GaleraCluster.restart` (no ``--wsrep-new-cluster``:
``--wsrep-recover`` finds its last committed position, then IST from a donor).

Example (not run here: it needs the packages and ~15 s)::

    with GaleraCluster() as cluster:
        url = cluster.url(0, failover=True)   # node 1, then nodes 2 and 3
        cluster.kill(0); cluster.wait_size(1, 2); cluster.restart(0)
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.mariadb import free_port

USER = "pwgalera"
PASSWORD = "pwgalera-pass"
DATABASE = "pilotwms"
PROVIDER = "/usr/lib/galera/libgalera_smm.so"


def available() -> str | None:
    """None when a cluster can start here, else why not."""
    if not (shutil.which("mariadbd") or Path("/usr/sbin/mariadbd").exists()):
        return "mariadbd is not installed (apt-get install mariadb-server)"
    if not Path(PROVIDER).exists():
        return "galera-4 is not installed (apt-get install galera-4)"
    if not shutil.which("rsync"):
        return "rsync is not installed (needed for state transfers)"
    return None


class GaleraCluster:
    """Three Galera nodes (index 0, 1, 2) on free 127.0.0.1 ports."""

    def __init__(self, nodes: int = 3, name: str = "pwtest") -> None:
        self.count = nodes
        self.name = name
        self.base = Path(tempfile.mkdtemp(prefix="pilotwms-galera-"))
        os.chmod(self.base, 0o755)  # noqa: S103 - the mysql user must reach its datadirs
        self.os_user = "mysql" if os.getuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
        self.sql_ports = [free_port() for _ in range(nodes)]
        self.gcomm_ports = [free_port() for _ in range(nodes)]
        self.ist_ports = [free_port() for _ in range(nodes)]
        self.sst_ports = [free_port() for _ in range(nodes)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * nodes
        self.mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"

    # -- paths and options ----------------------------------------------------------------------

    def dir(self, i: int) -> Path:
        return self.base / f"n{i + 1}"

    def socket(self, i: int) -> Path:
        return self.dir(i) / "sock"

    def args(self, i: int) -> list[str]:
        d = self.dir(i)
        cluster = ",".join(f"127.0.0.1:{p}" for p in self.gcomm_ports)
        provider_options = ";".join([
            f"gmcast.listen_addr=tcp://127.0.0.1:{self.gcomm_ports[i]}",
            f"ist.recv_addr=127.0.0.1:{self.ist_ports[i]}", "gcache.size=32M",
            # evict a dead node after ~3 s instead of ~6 s (writes stall until then)
            "evs.keepalive_period=PT0.5S", "evs.suspect_timeout=PT2S",
            "evs.inactive_timeout=PT3S"])
        return [
            self.mariadbd, "--no-defaults", f"--user={self.os_user}", f"--datadir={d / 'data'}",
            f"--port={self.sql_ports[i]}", f"--socket={self.socket(i)}",
            "--bind-address=127.0.0.1", f"--pid-file={d / 'mariadbd.pid'}",
            f"--log-error={d / 'error.log'}", "--skip-name-resolve",
            "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci",
            "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=32M",
            "--innodb-flush-log-at-trx-commit=2", "--max-connections=300",
            "--binlog-format=ROW", "--default-storage-engine=InnoDB",
            "--innodb-autoinc-lock-mode=2", "--wsrep-on=ON", f"--wsrep-provider={PROVIDER}",
            f"--wsrep-cluster-name={self.name}", f"--wsrep-cluster-address=gcomm://{cluster}",
            f"--wsrep-provider-options={provider_options}",
            f"--wsrep-node-address=127.0.0.1:{self.gcomm_ports[i]}",
            f"--wsrep-node-name=n{i + 1}",
            f"--wsrep-node-incoming-address=127.0.0.1:{self.sql_ports[i]}",
            f"--wsrep-sst-receive-address=127.0.0.1:{self.sst_ports[i]}",
            "--wsrep-sst-method=rsync",
        ]

    def url(self, i: int, *, failover: bool = False, database: str = DATABASE) -> str:
        """A pymysql URL of node ``i``; with ``failover`` the other nodes follow it."""
        url = f"mysql+pymysql://{USER}:{PASSWORD}@127.0.0.1:{self.sql_ports[i]}/{database}"
        if failover:
            others = [f"127.0.0.1:{self.sql_ports[j]}" for j in range(self.count) if j != i]
            url += "?failover=" + ",".join(others[i % len(others):] + others[:i % len(others)])
        return url

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> GaleraCluster:
        install = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
        for i in range(self.count):
            d = self.dir(i)
            d.mkdir()
            shutil.chown(d, self.os_user, self.os_user)
            done = subprocess.run(
                [install, "--no-defaults", f"--user={self.os_user}", f"--datadir={d / 'data'}",
                 "--innodb-log-file-size=32M", "--auth-root-authentication-method=socket",
                 "--skip-test-db"], capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                raise RuntimeError(f"mariadb-install-db failed: {done.stdout[-1500:]}"
                                   f"{done.stderr[-1500:]}")
        self._launch(0, "--wsrep-new-cluster")
        self.wait_synced(0)
        for i in range(1, self.count):  # one at a time: a donor serves one transfer at a time
            self._join(i)
        self.sql(0, f"CREATE DATABASE IF NOT EXISTS {DATABASE} CHARACTER SET utf8mb4; "
                    f"CREATE USER IF NOT EXISTS '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';"
                    f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'127.0.0.1';")
        return self

    def _launch(self, i: int, *extra: str) -> None:
        log = open(self.dir(i) / "stdout.log", "ab")  # noqa: SIM115 - kept for the process
        self.procs[i] = subprocess.Popen([*self.args(i), *extra], stdout=log,
                                         stderr=subprocess.STDOUT)

    def _join(self, i: int, *extra: str, timeout: float = 120, tries: int = 3) -> None:
        """Start node ``i`` and wait until it is Synced. A state transfer that fails (seen on
        a machine loaded to 90: "State transfer ... failed: No message of desired type", the
        joiner aborts) is tried again on fresh transfer ports."""
        for attempt in range(tries):
            self._launch(i, *extra)
            try:
                self.wait_synced(i, timeout)
                return
            except RuntimeError:
                if attempt + 1 >= tries:
                    raise
                self.kill(i)
                self.sst_ports[i], self.ist_ports[i] = free_port(), free_port()
                time.sleep(1)

    def kill(self, i: int) -> None:
        """SIGKILL node ``i`` (no clean shutdown: the other nodes evict it after ~3 s)."""
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)

    def restart(self, i: int, timeout: float = 120) -> str:
        """Rejoin a killed node at its recovered position; returns "IST" or "SST"."""
        log = self.dir(i) / "recover.log"
        log.unlink(missing_ok=True)
        subprocess.run([*self.args(i), f"--log-error={log}", "--wsrep-recover"],
                       capture_output=True, timeout=120)
        found = re.findall(r"WSREP: Recovered position: *(\S+)", log.read_text(errors="replace"))
        lines = len((self.dir(i) / "error.log").read_text(errors="replace").splitlines())
        self._join(i, *([f"--wsrep-start-position={found[-1]}"] if found else []),
                   timeout=timeout)
        new = "\n".join((self.dir(i) / "error.log").read_text(errors="replace")
                        .splitlines()[lines:])
        return "SST" if "rsync SST completed on joiner" in new else "IST"

    def stop(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            if proc is not None:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=30)
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> GaleraCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- state ---------------------------------------------------------------------------------

    def sql(self, i: int, statement: str) -> str:
        """Run SQL on node ``i`` as root over its unix socket; the output (tab-separated)."""
        proc = subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={self.socket(i)}", "-uroot", "-N", "-B",
             "-e", statement], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"node {i + 1}: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def status(self, i: int, name: str) -> str:
        out = self.sql(i, f"SHOW STATUS LIKE '{name}'")
        return out.split("\t", 1)[1] if "\t" in out else ""

    def wait_synced(self, i: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            proc = self.procs[i]
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"node {i + 1} exited: {self.log_tail(i)}")
            try:
                state = self.status(i, "wsrep_local_state_comment")
            except RuntimeError:
                state = "not answering"
            if state == "Synced":
                return
            time.sleep(0.2)
        raise RuntimeError(f"node {i + 1} not Synced after {timeout} s ({state}): "
                           f"{self.log_tail(i)}")

    def wait_size(self, i: int, size: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.status(i, "wsrep_cluster_size") == str(size):
                return
            time.sleep(0.1)
        raise RuntimeError(f"cluster size seen by node {i + 1} never became {size}")

    def log_tail(self, i: int, lines: int = 20) -> str:
        path = self.dir(i) / "error.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) \
            if path.exists() else ""
