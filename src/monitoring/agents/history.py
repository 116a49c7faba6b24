"""``WMSHistoryAgent``: WMS and pilot history snapshots every ``Monitoring.HistoryPeriod``
seconds, missed intervals filled in, retention applied (:mod:`monitoring.logic.history`).
DIRAC's ``StatesAccountingAgent``.

Example::

    pilotwms agent WMSHistoryAgent --config /srv/pilotwms/config.yaml
"""

from __future__ import annotations

from core.agent import Agent
from core.config.schema import Config
from monitoring.db import SYSTEM
from monitoring.logic.cycles import Cycles


class WMSHistoryAgent(Agent):
    name = "WMSHistoryAgent"
    system = "WorkloadManagement"

    def __init__(self, config: Config, *, instance: str | None = None,
                 period: float | None = None) -> None:
        super().__init__(config, instance=instance, period=period)
        if period is None:
            # wake often enough to hit every interval
            self.period = max(10.0, config.monitoring.history_period / 5)
        self.cycles: Cycles | None = None

    def run_once(self) -> bool:
        if self.cycles is None:
            self.cycles = Cycles(self.config, self.engine(), self.engine(SYSTEM))
        self.cycles.history()
        return True

    def run(self, *, once: bool = False) -> None:
        try:
            super().run(once=once)
        finally:
            if self.cycles is not None:
                self.cycles.close()
                self.cycles = None
