"""Both monitoring backends for the same tests: SQL (SQLite file) and OpenSearch (a real
``osmem-server`` process, one per session, each test with its own index prefix)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.db import make_engine
from monitoring.db.base import Backend
from monitoring.db.search import OpenSearchBackend
from monitoring.db.sql import SQLBackend
from tests.support.mariadb import fresh_database
from tests.support.osmem import OsmemServer


@pytest.fixture(scope="session")
def osmem(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OsmemServer]:
    with OsmemServer(tmp_path_factory.mktemp("osmem")) as server:
        yield server


@pytest.fixture
def mariadb_url(request: pytest.FixtureRequest) -> Iterator[str]:
    with fresh_database(request.getfixturevalue("mariadb_admin_url")) as url:
        yield url


@pytest.fixture(params=["sql", pytest.param("mariadb", marks=pytest.mark.mariadb),
                        "opensearch"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    """SQL on SQLite and on MariaDB, and the OpenSearch stand-in."""
    return str(request.param)


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def backend(backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest
            ) -> Iterator[Backend]:
    made: Backend
    if backend_kind == "sql":
        made = SQLBackend(make_engine(f"sqlite:///{tmp_path / 'mon.db'}"))
    elif backend_kind == "mariadb":
        url = request.getfixturevalue("mariadb_url")
        made = SQLBackend(make_engine(url))
    else:
        server = request.getfixturevalue("osmem")
        made = OpenSearchBackend([server.url], prefix=prefix())
    made.setup()
    yield made
    made.close()
