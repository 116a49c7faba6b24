"""A real NorduGrid ARC CE for the tests: Debian 12's A-REX 6.17 (REST interface 1.0) with the
fork LRMS, on 127.0.0.1 and a free port, no systemd.

``scripts/test.sh`` installs ``nordugrid-arc-arex`` (with a temporary ``policy-rc.d``, so that
the package does not start the stock service on port 443). This module does what the
packaged units would, with the workarounds a private, loopback-only instance needs:

* a private ``arc.conf`` (control, session and log directories in a throw-away directory
  under /tmp: the session directories must be reachable by the mapped account, which pytest's
  0700 temporary directories are not);
* the host certificate from the test CA (``localhost`` and ``127.0.0.1``) and that CA as the
  only trusted one; the test user's DN is the only one authorised, mapped to a dedicated
  local account (:data:`USER`, created when missing) under which the jobs run;
* patched copies of ``arc-arex-ws-start`` (arc.conf cannot set the listen address: the
  generated XML gets ``<tcp:Interface>127.0.0.1``) and of ``arc-arex-start`` (the info
  provider, whose output is where the REST job states come from, runs every
  :data:`INFO_PERIOD` tenths of a second instead of every 60 s);
* a pre-made ``dhparam.pem``, else the WS start-up forks ``openssl dhparam 4096`` (minutes of
  CPU).

Both ``arched`` daemons are stopped by PID, and so is whatever the fork LRMS leaves running as
the mapped account (A-REX's fork ``cancel`` kills only the job's watcher shell).

Example::

    with AREX(ca_dir, host_cert, host_key, allowed_dns=[alice_dn]) as arex:
        ce = ARCComputingElement("arc", {"Host": "127.0.0.1", "Port": arex.port,
                                         "CADir": str(arex.ca_dir), "Proxy": proxy})
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.support.mariadb import free_port

START = Path("/usr/share/arc/arc-arex-start")
WS_START = Path("/usr/share/arc/arc-arex-ws-start")
#: the local account the authorised DN is mapped to (the jobs run as this user)
USER = "pwarcuser"
#: seconds between info-provider runs, in tenths (the REST job states lag by up to this)
INFO_PERIOD = 30


def available() -> str | None:
    """Why A-REX cannot run here (None when it can)."""
    if not START.exists() or not WS_START.exists():
        return "nordugrid-arc-arex is not installed (scripts/test.sh installs it)"
    if os.geteuid() != 0:
        return "A-REX runs as root (it maps users)"
    return None


class AREX:
    def __init__(self, ca_dir: Path, host_cert: Path, host_key: Path, *,
                 allowed_dns: Iterable[str], user: str = USER) -> None:
        reason = available()
        if reason:
            raise RuntimeError(reason)
        self.base = Path(tempfile.mkdtemp(prefix="pilotwms-arex-", dir="/tmp"))
        self.base.chmod(0o755)
        self.port = free_port()
        self.user = user
        self.created_user = False
        self.ca_dir = self.base / "pki" / "certificates"
        self._pki(ca_dir, host_cert, host_key)
        self.allowed_dns = list(allowed_dns)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/arex"

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.user).pw_uid

    def _pki(self, ca_dir: Path, host_cert: Path, host_key: Path) -> None:
        pki = self.base / "pki"
        shutil.copytree(ca_dir, self.ca_dir, symlinks=True)
        for cert in self.ca_dir.glob("*.0"):  # Globus-style policy beside each CA
            subject = subprocess.run(
                ["openssl", "x509", "-in", str(cert), "-noout", "-subject", "-nameopt",
                 "compat"], capture_output=True, text=True, check=True).stdout
            subject = subject.strip().removeprefix("subject=")
            (cert.with_suffix(".signing_policy")).write_text(
                f"access_id_CA X509 '{subject}'\npos_rights globus CA:sign\n"
                f"cond_subjects globus '\"*\"'\n")
        shutil.copy(host_cert, pki / "hostcert.pem")
        shutil.copy(host_key, pki / "hostkey.pem")
        (pki / "hostcert.pem").chmod(0o644)  # arc-config-check insists on these modes
        (pki / "hostkey.pem").chmod(0o400)
        pki.chmod(0o755)

    def _config(self) -> None:
        d = self.base
        for sub in ("control", "session", "log", "tmp"):
            (d / sub).mkdir(exist_ok=True)
        (d / "session").chmod(0o755)
        (d / "tmp").chmod(0o1777)  # arc-config-check wants a sticky, writable tmpdir
        subjects = "\n".join(f"subject = {dn}" for dn in self.allowed_dns)
        (d / "arc.conf").write_text(f"""[common]
hostname = localhost
x509_host_key = {d}/pki/hostkey.pem
x509_host_cert = {d}/pki/hostcert.pem
x509_cert_dir = {self.ca_dir}

[authgroup:testers]
{subjects}

[mapping]
map_to_user = testers {self.user}:{self.user}

[lrms]
lrms = fork

[arex]
loglevel = 3
logfile = {d}/log/arex.log
joblog = {d}/log/arex-jobs.log
helperlog = {d}/log/job.helper.errors
pidfile = {d}/arched-arex.pid
controldir = {d}/control
sessiondir = {d}/session
tmpdir = {d}/tmp
wakeupperiod = 5

[arex/ws]
wsurl = {self.url}
logfile = {d}/log/ws-interface.log
pidfile = {d}/arched-arex-ws.pid

[arex/ws/jobs]
allowaccess = testers

[infosys]
logfile = {d}/log/infoprovider.log

[infosys/glue2]

[infosys/cluster]

[queue:fork]
""")
        listen = "<tcp:Listen><tcp:Port>$arex_port</tcp:Port></tcp:Listen>"
        ws = WS_START.read_text()
        assert listen in ws, "arc-arex-ws-start changed: cannot set the listen address"
        (d / "arc-arex-ws-start").write_text(ws.replace(
            listen, "<tcp:Listen><tcp:Interface>127.0.0.1</tcp:Interface>"
                    "<tcp:Port>$arex_port</tcp:Port></tcp:Listen>"))
        gm = "<arex:gmconfig>$ARC_RUNTIME_CONFIG</arex:gmconfig>"
        start = START.read_text()
        assert gm in start, "arc-arex-start changed: cannot set the info provider period"
        (d / "arc-arex-start").write_text(start.replace(
            gm, gm + f"\n      <arex:InfoproviderWakeupPeriod>{INFO_PERIOD}"
                     "</arex:InfoproviderWakeupPeriod>"))
        for script in ("arc-arex-start", "arc-arex-ws-start"):
            (d / script).chmod(0o755)
        subprocess.run(["openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt",
                        "group:ffdhe2048", "-out", str(d / "control" / "dhparam.pem")],
                       check=True, capture_output=True, timeout=60)
        (d / "control" / "dhparam.pem").chmod(0o600)

    def _ensure_user(self) -> None:
        try:
            pwd.getpwnam(self.user)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir",
                            "/nonexistent", "--shell", "/bin/sh", self.user], check=True,
                           capture_output=True, timeout=60)
            self.created_user = True

    def start(self) -> AREX:
        self._ensure_user()
        self._config()
        env = dict(os.environ, ARC_CONFIG=str(self.base / "arc.conf"))
        for script, log in (("arc-arex-start", "start-arex.out"),
                            ("arc-arex-ws-start", "start-ws.out")):
            with (self.base / "log" / log).open("wb") as out:
                done = subprocess.run([str(self.base / script)], env=env, stdout=out,
                                      stderr=subprocess.STDOUT, cwd=self.base, timeout=120)
            if done.returncode:
                text = (self.base / "log" / log).read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"{script} failed ({done.returncode}):\n{text}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.3)
        log = (self.base / "log" / "ws-interface.log")
        text = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        self.stop()
        raise RuntimeError(f"A-REX is not listening on 127.0.0.1:{self.port}:\n{text}")

    def logs(self) -> str:
        """The tail of A-REX's logs (for assertion messages)."""
        parts = []
        for name in ("arex.log", "ws-interface.log"):
            path = self.base / "log" / name
            if path.exists():
                parts.append(f"--- {name}\n" + path.read_text(errors="replace")[-2000:])
        return "\n".join(parts)

    def job_processes(self) -> list[int]:
        """Processes running as the mapped account (the jobs and what they left)."""
        try:
            uid = self.uid
        except KeyError:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if entry.stat().st_uid == uid:
                        found.append(int(entry.name))
                except OSError:
                    continue
        return found

    def kill_job_processes(self) -> None:
        for pid in self.job_processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _stop_pid(self, pidfile: Path) -> None:
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        self._stop_pid(self.base / "arched-arex-ws.pid")
        self._stop_pid(self.base / "arched-arex.pid")
        self.kill_job_processes()
        if self.created_user:
            subprocess.run(["userdel", self.user], capture_output=True, timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> AREX:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
