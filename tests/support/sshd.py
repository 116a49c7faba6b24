"""A private OpenSSH server on 127.0.0.1 and a free port, for a local test user: key-only by
default, key and password when ``password`` is given (sftp associations of the transfer tests).

The user ``pwmsce`` is created when absent, with its home in ``/var/tmp/pwmsce-home``, and kept
afterwards: several test sessions on one machine (helpers, CI) share it, and removing it under
another session's feet broke that session. Its password field is set to ``*`` (not locked:
with ``UsePAM no`` a locked ``!`` account refuses even keys). Host key, client key, the
server's own ``authorized_keys`` (``AuthorizedKeysFile`` points there, so concurrent servers
never overwrite each other's key; ``StrictModes no`` as it lives under /tmp) and the pinned
``known_hosts`` live in a temp dir. ``home`` is this server's own directory of the user
(``<home>/<temp dir name>``), removed when the server stops: put remote work there. sshd is
started by absolute path (it re-executes itself). Needs ``openssh-server`` and
``openssh-client`` (scripts/test.sh installs them) and root (useradd).

Password login uses a user of its own (never ``pwmsce``, whose password stays ``*``): its
password is made once per machine by :func:`machine_password` (a root-only file beside its
home), so concurrent test sessions agree on it.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.mariadb import free_port

USER = "pwmsce"
HOME = "/var/tmp/pwmsce-home"
SSHD = "/usr/sbin/sshd"


def home_of(user: str) -> str:
    return HOME if user == USER else f"/var/tmp/{user}-home"


def machine_password(user: str) -> str:
    """The password of test user ``user`` on this machine (made once, kept root-only)."""
    path = Path(f"/var/tmp/{user}-password")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another session is writing it
            text = path.read_text().strip()
            if text:
                return text
            time.sleep(0.1)
        raise RuntimeError(f"{path} stays empty") from None
    with os.fdopen(fd, "w") as stream:
        stream.write(secrets.token_urlsafe(18) + "\n")
    return path.read_text().strip()


class SSHServer:
    def __init__(self, user: str = USER, password: str | None = None) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="pwsshd-"))
        self.base.chmod(0o755)
        self.port = free_port()
        self.user = user
        self.password = password
        if password is not None and user == USER:
            raise ValueError(f"password login needs a user other than {USER}")
        self.key = self.base / "client_ed25519"
        self.known_hosts = self.base / "known_hosts"
        self.proc: subprocess.Popen[bytes] | None = None
        self.created_user = False
        self.home = Path()

    @property
    def settings(self) -> dict[str, object]:
        """SSH CE settings to log in to this server."""
        return {"Host": "127.0.0.1", "Port": self.port, "User": self.user,
                "KeyFile": str(self.key), "KnownHosts": str(self.known_hosts),
                "ConnectTimeout": 5}

    def start(self) -> None:
        for tool, package in ((SSHD, "openssh-server"), ("ssh", "openssh-client"),
                              ("ssh-keygen", "openssh-client")):
            if not (Path(tool).exists() or shutil.which(tool)):
                raise RuntimeError(f"{tool} not found: install the Debian package '{package}' "
                                   "(scripts/test.sh does)")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        home = home_of(self.user)
        try:
            pwd.getpwnam(self.user)
        except KeyError:
            subprocess.run(["useradd", "-m", "-d", home, "-s", "/bin/bash", self.user],
                           check=True, capture_output=True)
            self.created_user = True
        if self.password is None:
            subprocess.run(["usermod", "-p", "*", self.user], check=True, capture_output=True)
        else:
            subprocess.run(["chpasswd"], input=f"{self.user}:{self.password}\n".encode(),
                           check=True, capture_output=True)
        if pwd.getpwnam(self.user).pw_dir != home:  # made by an older version, home in a temp dir
            subprocess.run(["usermod", "-d", home, self.user], capture_output=True)
        entry = pwd.getpwnam(self.user)
        # this server's own directory of the user (removed by stop(): the home is shared)
        self.home = Path(entry.pw_dir) / self.base.name
        for path in (self.home.parent, self.home):
            if not path.is_dir():
                path.mkdir(mode=0o755, parents=True)
                shutil.chown(path, entry.pw_uid, entry.pw_gid)
        for name in ("host_ed25519", "client_ed25519"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            str(self.base / name)], check=True, capture_output=True)
        auth = self.base / "authorized_keys"
        auth.write_text((self.base / "client_ed25519.pub").read_text())
        auth.chmod(0o644)
        cfg = self.base / "sshd_config"
        cfg.write_text(f"""ListenAddress 127.0.0.1
Port {self.port}
HostKey {self.base / 'host_ed25519'}
PidFile {self.base / 'sshd.pid'}
AuthorizedKeysFile {auth}
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication {"yes" if self.password is not None else "no"}
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
AllowUsers {self.user}
X11Forwarding no
PrintMotd no
MaxSessions 50
Subsystem sftp internal-sftp
MaxStartups 50:30:100
LogLevel VERBOSE
""")
        subprocess.run([SSHD, "-t", "-f", str(cfg)], check=True, capture_output=True)
        log = open(self.base / "sshd.log", "wb")  # noqa: SIM115 - kept for the process life
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stdout=log,
                                     stderr=subprocess.STDOUT)
        host_pub = (self.base / "host_ed25519.pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.base / 'sshd.log').read_text()}")
            res = subprocess.run(
                ["ssh", "-p", str(self.port), "-i", str(self.key), "-o", "IdentitiesOnly=yes",
                 "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
                 "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5",
                 f"{self.user}@127.0.0.1", "true"],
                capture_output=True, stdin=subprocess.DEVNULL,
            )
            if res.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"sshd not usable within 20 s: {(self.base / 'sshd.log').read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.home.name == self.base.name:
            shutil.rmtree(self.home, ignore_errors=True)
        shutil.rmtree(self.base, ignore_errors=True)
