"""``Production/ProductionManager``: productions of linked transformation steps.

Methods: ``addProduction(description)`` (the whole production as a dict: ``Name``,
``Description``, ``Steps``: ``[{Name, Parents, Transformation}]``; links and overlaps are
checked and nothing is created when anything is wrong), ``getProductions(condDict)``,
``getProduction(prod)``, ``startProduction``/``stopProduction``/``cleanProduction(prod)``,
``getProductionSummary(prod)`` (per step: files by status, tasks by status, % done).
Rights as for transformations: ``ProductionManagement`` creates and changes anything,
``ProductionSharing``/``ProductionUser`` their group's/their own, the author may stop their
own, the VO reads. The tables live in the Transformation database.

Example::

    from transformation.client import ProductionClient
    pid = ProductionClient.from_config().create(yaml.safe_load(open("prod.yaml")))
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from core.rpc.service import Call, Service, rpc_method
from transformation.logic import production as logic
from transformation.logic import transformations as trans_logic
from transformation.service.common import SYSTEM, actor_of, catalog_of, known_ses

CREATORS = list(trans_logic.CREATORS)


class ProductionManagerService(Service):
    system = "Production"
    name = "ProductionManager"

    @property
    def engine(self) -> Engine:
        return self.ctx.engine(SYSTEM)

    @rpc_method("addProduction", rights=CREATORS)
    def add_production(self, call: Call, description: dict) -> int:
        return logic.create(self.engine, catalog_of(self.ctx),
                            self.ctx.config.operations.transformations,
                            actor_of(call.identity), description,
                            known_ses=known_ses(self.ctx.config))

    @rpc_method("getProductions")
    def get_productions(self, call: Call, cond: dict | None = None) -> list[dict[str, Any]]:
        found = logic.listing(self.engine, call.identity.vo or None)
        for key, value in (cond or {}).items():
            wanted = value if isinstance(value, list) else [value]
            found = [p for p in found if p.get(key) in wanted]
        return found

    @rpc_method("getProduction")
    def get_production(self, call: Call, prod: int | str) -> dict[str, Any]:
        return logic.to_wire(self.engine, logic.find(self.engine, prod,
                                                     call.identity.vo or None))

    @rpc_method("startProduction")
    def start_production(self, call: Call, prod: int | str) -> None:
        logic.start(self.engine, actor_of(call.identity), prod)

    @rpc_method("stopProduction")
    def stop_production(self, call: Call, prod: int | str) -> None:
        logic.stop(self.engine, actor_of(call.identity), prod)

    @rpc_method("cleanProduction")
    def clean_production(self, call: Call, prod: int | str) -> None:
        logic.clean(self.engine, actor_of(call.identity), prod)

    @rpc_method("getProductionSummary")
    def get_production_summary(self, call: Call, prod: int | str) -> list[dict[str, Any]]:
        return logic.summary(self.engine, prod, call.identity.vo or None,
                             self.ctx.config.operations.transformations.all_job_types)
