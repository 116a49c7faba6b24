"""Monitoring agents: accounting shipping and WMS/pilot history, on a shared base that owns
the monitoring cycles (:class:`monitoring.logic.cycles.Cycles`) and closes them on exit."""

from __future__ import annotations

from core.agent import Agent
from monitoring.db import SYSTEM
from monitoring.logic.cycles import Cycles


class MonitoringAgent(Agent):
    system = "WorkloadManagement"
    _cycles: Cycles | None = None

    @property
    def cycles(self) -> Cycles:
        if self._cycles is None:
            self._cycles = Cycles(self.config, self.engine(), self.engine(SYSTEM),
                                  rms=self.engine("RequestManagement"),
                                  xfer=self.engine("Transfer"))
        return self._cycles

    def run(self, *, once: bool = False) -> None:
        try:
            super().run(once=once)
        finally:
            if self._cycles is not None:
                self._cycles.close()
                self._cycles = None
