"""What the transformation agents share: engines of the systems they touch, the catalog
view, the transformations to look at, split between live copies with :meth:`Agent.mine`.

Example::

    >>> from core.config.schema import Config
    >>> agent = TransformationAgentBase(Config.model_validate({"Database": "sqlite://"}))
    >>> agent.settings.files_max_reset_counter
    10
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.engine import Engine, Row

from core.agent import Agent
from core.db import init_schema
from transformation.db import queries as db
from transformation.db.schema import SYSTEM, TRANSFORMATION_SCHEMA
from transformation.db.tables import transformations as trans_t
from transformation.logic.catalog import CatalogView, catalog_settings


class TransformationAgentBase(Agent):
    name = "TransformationAgentBase"
    system = SYSTEM
    period = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ready = False

    def run_once(self) -> bool:  # pragma: no cover - subclasses do the work
        return True

    @property
    def settings(self) -> Any:
        return self.config.operations.transformations

    def ts(self) -> Engine:
        engine = self.engine(SYSTEM)
        if not self._ready:
            init_schema(engine, TRANSFORMATION_SCHEMA)
            self._ready = True
        return engine

    def catalog(self) -> CatalogView:
        return CatalogView(self.engine("DataManagement"), catalog_settings(self.config))

    def se_sites(self) -> dict[str, str]:
        return {se: site for site, conf in sorted(self.config.resources.sites.items())
                for se in conf.ses}

    def transformations(self, statuses: Iterable[str], types: Iterable[str] | None = None
                        ) -> list[Row[Any]]:
        """This copy's share of the transformations in ``statuses`` (of ``types``)."""
        where: list[Any] = [trans_t.c.status.in_(sorted(statuses))]
        if types is not None:
            where.append(trans_t.c.type.in_(sorted(types)))
        with self.ts().connect() as conn:
            rows = db.find_transformations(conn, where)
        return [r for r in rows if self.mine(r.transformation_id)]
