"""A private MariaDB server for the tests: own datadir, 127.0.0.1, a free port.

Used when ``PILOTWMS_TEST_MYSQL_URL`` is not set (scripts/test.sh installs the Debian package
``mariadb-server``; this module starts ``mariadbd`` itself, no systemd). Each test gets its own
database, dropped afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

USER = "pwtest"
PASSWORD = "pwtest-pass"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MariaDBServer:
    def __init__(self, buffer_pool: str = "128M") -> None:
        #: InnoDB buffer pool (the tests' data is small; benchmarks of large tables want more)
        self.buffer_pool = buffer_pool
        self.base = Path(tempfile.mkdtemp(prefix="pilotwms-mariadb-"))
        self.port = free_port()
        self.socket = self.base / "mysqld.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def admin_url(self) -> str:
        return f"mysql+pymysql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/mysql"

    def start(self) -> None:
        mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        install = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
        if not Path(mariadbd).exists():
            raise RuntimeError(
                "mariadbd not found: install it with 'apt-get install mariadb-server' "
                "(scripts/test.sh does) or set PILOTWMS_TEST_MYSQL_URL"
            )
        user = os.environ.get("USER") or "root"
        subprocess.run(
            [install, "--no-defaults", f"--user={user}", f"--datadir={self.base / 'data'}",
             "--auth-root-authentication-method=socket", "--skip-test-db"],
            check=True, capture_output=True, timeout=120,
        )
        self._launch(mariadbd, user)
        sql = (
            f"CREATE USER IF NOT EXISTS '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';"
            f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'127.0.0.1'; FLUSH PRIVILEGES;"
        )
        subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "-e", sql],
            check=True, capture_output=True,
        )

    def _launch(self, mariadbd: str, user: str) -> None:
        """Start ``mariadbd`` on the existing datadir and wait until it answers."""
        log = open(self.base / "stdout.log", "ab")  # noqa: SIM115 - kept for the process life
        # a private tmpdir: implicit temporary tables (multi-table UPDATEs, sorts) live there,
        # and a shared /tmp is cleaned by others (a bench once failed with "Error on delete
        # of '/tmp/#sql-update-...MAI'")
        (self.base / "tmp").mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [mariadbd, "--no-defaults", f"--user={user}", f"--datadir={self.base / 'data'}",
             "--bind-address=127.0.0.1", f"--port={self.port}", f"--socket={self.socket}",
             f"--pid-file={self.base / 'mariadbd.pid'}",
             f"--log-error={self.base / 'error.log'}", "--skip-name-resolve",
             f"--innodb-buffer-pool-size={self.buffer_pool}", "--max-connections=500",
             "--innodb-flush-log-at-trx-commit=2", "--skip-log-bin",
             f"--tmpdir={self.base / 'tmp'}"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited: {(self.base / 'error.log').read_text()}")
            ping = subprocess.run(
                ["mariadb-admin", "--no-defaults", f"--socket={self.socket}", "-uroot", "ping"],
                capture_output=True,
            )
            if ping.returncode == 0:
                break
            time.sleep(0.3)
        else:
            raise RuntimeError("mariadbd did not start within 60 s")

    def crash(self) -> None:
        """SIGKILL the server (its datadir stays; :meth:`restart` recovers it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def restart(self) -> None:
        """Start the server again on the same port and datadir (InnoDB crash recovery)."""
        self.crash()
        self._launch(shutil.which("mariadbd") or "/usr/sbin/mariadbd",
                     os.environ.get("USER") or "root")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.base, ignore_errors=True)


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new empty database on the server of ``admin_url``; dropped on exit."""
    name = f"pwtest_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    url = sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


def with_driver(url: str, driver: str) -> str:
    """``url`` (a MariaDB URL) with the SQLAlchemy driver ``driver`` (pymysql or mysqldb).

    >>> with_driver("mysql+pymysql://u:p@127.0.0.1:3306/db", "mysqldb")
    'mysql+mysqldb://u:p@127.0.0.1:3306/db'
    """
    parsed = sa.engine.make_url(url)
    return parsed.set(drivername=f"{parsed.get_backend_name()}+{driver}").render_as_string(
        hide_password=False)
