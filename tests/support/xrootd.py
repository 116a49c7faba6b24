"""A real XRootD data server (Debian's ``xrootd-server``) on 127.0.0.1 and a free port.

xrootd has no listen-address option: a tiny ``bind()`` shim (compiled with gcc, loaded with
``LD_PRELOAD``) turns its wildcard binds into loopback binds, so nothing listens outside.
xrootd refuses to run as root: as root the server runs as the ``xrootd`` user the package
makes. Checksums: ``xrootd.chksum adler32``. No authentication (``sec`` is not configured);
the pilotwms plugin under test does not depend on any.

Example (pytest)::

    def test_x(xrootd_server):
        url = xrootd_server.url          # root://127.0.0.1:PORT
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>
int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real_bind)(int, const struct sockaddr *, socklen_t);
    if (!real_bind) real_bind = (int (*)(int, const struct sockaddr *, socklen_t))
        dlsym(RTLD_NEXT, "bind");
    if (addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in a; memcpy(&a, addr, sizeof a);
        if (a.sin_addr.s_addr == htonl(INADDR_ANY)) {
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return real_bind(fd, (struct sockaddr *)&a, sizeof a);
        }
    } else if (addr && addr->sa_family == AF_INET6
               && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 a; memcpy(&a, addr, sizeof a);
        if (memcmp(&a.sin6_addr, &in6addr_any, sizeof a.sin6_addr) == 0) {
            static const unsigned char lo[16] = {0,0,0,0,0,0,0,0,0,0,0xff,0xff,127,0,0,1};
            memcpy(&a.sin6_addr, lo, 16);
            return real_bind(fd, (struct sockaddr *)&a, sizeof a);
        }
    }
    return real_bind(fd, addr, len);
}
"""

#: fail fast instead of xrdcp's minutes of retries against a dead server
CLIENT_ENV = {"XRD_CONNECTIONWINDOW": "2", "XRD_CONNECTIONRETRY": "1",
              "XRD_REQUESTTIMEOUT": "15", "XRD_STREAMTIMEOUT": "15"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class XRootDServer:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="pilotwms-xrd-"))
        self.base.chmod(0o755)
        self.data = self.base / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"root://127.0.0.1:{self.port}"

    def start(self) -> XRootDServer:
        for tool in ("xrootd", "xrdcp", "xrdfs", "gcc"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} is missing: apt-get install xrootd-server "
                                   "xrootd-client gcc (scripts/test.sh does it)")
        for sub in ("data", "admin", "run", "log", "shim"):
            (self.base / sub).mkdir()
        shim_c = self.base / "shim" / "bind_lo.c"
        shim_c.write_text(SHIM)
        shim = self.base / "shim" / "bind_lo.so"
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(shim), str(shim_c), "-ldl"],
                       check=True, capture_output=True)
        cfg = self.base / "xrootd.cfg"
        cfg.write_text(
            f"all.export /\noss.localroot {self.data}\nall.adminpath {self.base / 'admin'}\n"
            f"all.pidpath {self.base / 'run'}\nxrd.port {self.port}\n"
            "xrootd.chksum adler32\nxrootd.trace emsg login stall\n")
        cmd = ["xrootd", "-c", str(cfg), "-l", str(self.base / "log" / "xrootd.log"),
               "-n", "pilotwms"]
        if os.getuid() == 0:
            user = pwd.getpwnam("xrootd")
            for sub in ("data", "admin", "run", "log"):
                os.chown(self.base / sub, user.pw_uid, user.pw_gid)
            cmd += ["-R", "xrootd"]
        env = dict(os.environ, LD_PRELOAD=str(shim))
        self.proc = subprocess.Popen(  # noqa: S603 - fixed command line
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"xrootd exited: {self.log()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"xrootd did not listen: {self.log()[-2000:]}")

    def log(self) -> str:
        try:
            return (self.base / "log" / "xrootd.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.base, ignore_errors=True)
