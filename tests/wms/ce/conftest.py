"""Session fixtures: a real single-node Slurm and a real sshd, started once, stopped after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support.slurm import SlurmCluster
from tests.support.sshd import SSHServer


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    cluster = SlurmCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def sshd_server() -> Iterator[SSHServer]:
    server = SSHServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
