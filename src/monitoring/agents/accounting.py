"""``AccountingAgent``: ships the WMS outbox into accounting records (one per finished job and
pilot), see :mod:`monitoring.logic.accounting`.

Example::

    pilotwms agent AccountingAgent --config /srv/pilotwms/config.yaml --period 60
"""

from __future__ import annotations

from core.agent import Agent
from core.config.schema import Config
from monitoring.db import SYSTEM
from monitoring.logic.cycles import Cycles


class AccountingAgent(Agent):
    name = "AccountingAgent"
    system = "WorkloadManagement"
    period = 60.0

    def __init__(self, config: Config, *, instance: str | None = None,
                 period: float | None = None) -> None:
        super().__init__(config, instance=instance, period=period)
        self.cycles: Cycles | None = None

    def _cycles(self) -> Cycles:
        if self.cycles is None:
            self.cycles = Cycles(self.config, self.engine(), self.engine(SYSTEM),
                                 rms=self.engine("RequestManagement"))
        return self.cycles

    def run_once(self) -> bool:
        result = self._cycles().ship()
        return result is None or not result.more

    def run(self, *, once: bool = False) -> None:
        try:
            super().run(once=once)
        finally:
            if self.cycles is not None:
                self.cycles.close()
                self.cycles = None
