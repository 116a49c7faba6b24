"""Shared fixtures: real MariaDB and SQLite databases, a real PKI, real servers.

* ``db_url``: every test using it runs twice, on SQLite (a file in tmp_path) and on MariaDB (a
  fresh database on the private server this session starts, or on
  ``$PILOTWMS_TEST_MYSQL_URL``, an admin URL allowed to create databases), with the pymysql
  driver, or mysqlclient's when ``PILOTWMS_TEST_MYSQL_DRIVER=mysqldb`` (the whole suite on it).
* ``db_url_all_drivers``: three runs, SQLite, MariaDB with pymysql and with mysqldb; the
  modules where driver-specific code is exercised (core DB, bulk, faults, heartbeats, bulk
  statements) alias their ``db_url`` to it, so both drivers are always covered there without
  doubling the MariaDB runs of the whole suite.
* ``instance``: a ``pilotwms init`` instance (dev CA, host cert, users alice and admin, token key)
  made once per session; tests must not modify it.
* ``slurm_cluster``, ``sshd_server``: a real single-node Slurm and a real sshd (session-wide,
  started on first use).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.cli.instance import Instance, create_instance
from core.config.loader import load_config
from core.config.schema import Config
from tests.support.credentials import Creds
from tests.support.mariadb import MariaDBServer, fresh_database, with_driver
from tests.support.oidc_idp import OIDCProvider
from tests.support.slurm import SlurmCluster
from tests.support.sshd import SSHServer


@pytest.fixture(scope="session")
def mariadb_admin_url() -> Iterator[str]:
    url = os.environ.get("PILOTWMS_TEST_MYSQL_URL")
    if url:
        yield url
        return
    server = MariaDBServer()
    try:
        server.start()
        yield server.admin_url
    finally:
        server.stop()


def _database(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    driver = kind.partition("-")[2] or os.environ.get("PILOTWMS_TEST_MYSQL_DRIVER", "pymysql")
    admin_url = request.getfixturevalue("mariadb_admin_url")
    with fresh_database(admin_url) as url:
        yield with_driver(url, driver)


@pytest.fixture(params=["sqlite", "mariadb"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from _database(request, tmp_path, request.param)


@pytest.fixture(params=["sqlite", "mariadb-pymysql", "mariadb-mysqldb"])
def db_url_all_drivers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Like ``db_url``, with both MariaDB drivers (pymysql and mysqlclient's MySQLdb)."""
    yield from _database(request, tmp_path, request.param)


@pytest.fixture(scope="session")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Instance:
    return create_instance(tmp_path_factory.mktemp("instance") / "inst", port=8443)


@pytest.fixture
def config(instance: Instance, tmp_path: Path) -> Config:
    """The instance's configuration with a private SQLite database for this test."""
    cfg = load_config(instance.config, environ={})
    return cfg.model_copy(update={"database": f"sqlite:///{tmp_path / 'pilotwms.db'}"})


@pytest.fixture(scope="session")
def creds(instance: Instance, tmp_path_factory: pytest.TempPathFactory) -> Creds:
    """Certificates, proxies and tokens of every kind (see tests/support/credentials.py)."""
    return Creds(instance, tmp_path_factory.mktemp("creds"), load_config(instance.config))


@pytest.fixture(scope="session")
def oidc_idp() -> Iterator[OIDCProvider]:
    """A real OpenID Connect provider on 127.0.0.1 (see tests/support/oidc_idp.py)."""
    with OIDCProvider() as idp:
        yield idp


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A real single-node Slurm (tests/support/slurm.py), started once per session."""
    cluster = SlurmCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def sshd_server() -> Iterator[SSHServer]:
    """A real sshd with key-only login for a test user (tests/support/sshd.py)."""
    server = SSHServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
