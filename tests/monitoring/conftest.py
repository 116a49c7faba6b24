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
from tests.support.osmem import OsmemServer


@pytest.fixture(scope="session")
def osmem(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OsmemServer]:
    with OsmemServer(tmp_path_factory.mktemp("osmem")) as server:
        yield server


@pytest.fixture(params=["sql", "opensearch"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def backend(backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest
            ) -> Iterator[Backend]:
    made: Backend
    if backend_kind == "sql":
        made = SQLBackend(make_engine(f"sqlite:///{tmp_path / 'mon.db'}"))
    else:
        server = request.getfixturevalue("osmem")
        made = OpenSearchBackend([server.url], prefix=prefix())
    made.setup()
    yield made
    made.close()
