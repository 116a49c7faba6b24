"""Fixtures of the transformation tests: one database (both backends) holding the catalog,
the WMS, the RMS and the transformation tables, a configuration with a production manager,
and helpers to register files and declare metadata as the catalog does."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from core.config.schema import Config
from core.db import init_schema, make_engine
from dms.db.rms import REQUEST_SCHEMA
from dms.db.schema import DMS_SCHEMA
from dms.logic import metadata, namespace
from dms.logic.rights import CatalogSettings, Requester
from transformation.db.schema import TRANSFORMATION_SCHEMA
from transformation.logic.catalog import CatalogView
from transformation.logic.transformations import Actor
from wms.db.schema import WMS_SCHEMA

CFG = CatalogSettings(vo_groups={"demo": "demo_user"})
DM_ADMIN = Requester("admin", "dm_admin", "demo", admin=True)
ALICE = Requester("alice", "demo_user", "demo")
MANAGER = Actor("admin", "demo_prod", "demo", frozenset({"ProductionManagement"}))
USER = Actor("alice", "demo_user", "demo", frozenset({"NormalUser"}))
DATA = "/demo/data"


def config_for(db_url: str, **transformations: Any) -> Config:
    return Config.model_validate({
        "Database": db_url,
        "Registry": {
            "VOs": {"demo": {"DefaultGroup": "demo_user"}},
            "Users": {"alice": {"DNs": ["/O=pilotwms/CN=alice"]},
                      "admin": {"DNs": ["/O=pilotwms/CN=admin"]}},
            "Groups": {"demo_user": {"VO": "demo", "Users": ["alice", "admin"],
                                     "Properties": ["NormalUser"]},
                       "demo_prod": {"VO": "demo", "Users": ["admin"],
                                     "Properties": ["NormalUser", "ProductionManagement"]}}},
        "Systems": {"DataManagement": {}},
        "Resources": {"Sites": {"LCG.Here.org": {"SEs": ["DISK-B"]},
                                "LCG.There.org": {"SEs": ["DISK-A"]}}},
        "Operations": {"Transformations": transformations},
    })


@dataclass
class World:
    engine: Engine
    config: Config
    catalog: CatalogView

    @property
    def settings(self) -> Any:
        return self.config.operations.transformations

    def register(self, lfns: list[str], se: str = "DISK-A", size: int = 10) -> None:
        result = namespace.add_files(self.engine, CFG, DM_ADMIN, {
            lfn: {"Size": size, "SE": se, "GUID": f"g-{lfn}"} for lfn in lfns})
        assert result.failed == {}

    def meta(self, path: str, values: dict[str, Any]) -> None:
        metadata.set_metadata(self.engine, DM_ADMIN, path, values)

    def field(self, name: str, kind: str) -> None:
        metadata.add_field(self.engine, DM_ADMIN, name, kind)


def make_world(db_url: str) -> World:
    engine = make_engine(db_url)
    for schema in (DMS_SCHEMA, WMS_SCHEMA, REQUEST_SCHEMA, TRANSFORMATION_SCHEMA):
        init_schema(engine, schema)
    config = config_for(db_url, FilesMaxResetCounter=2, ReservedTimeout=1)
    return World(engine, config, CatalogView(engine, CFG))


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    """Both databases."""
    made = make_world(db_url)
    yield made
    made.engine.dispose()


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[World]:
    """SQLite only: for rules that do not depend on the database."""
    made = make_world(f"sqlite:///{tmp_path / 'ts.db'}")
    yield made
    made.engine.dispose()
