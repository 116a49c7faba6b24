"""``WMSHistoryAgent``: WMS and pilot history snapshots every ``Monitoring.HistoryPeriod``
seconds, missed intervals filled in, retention applied (:mod:`monitoring.logic.history`).
DIRAC's ``StatesAccountingAgent``.

Example::

    pilotwms agent WMSHistoryAgent --config /srv/pilotwms/config.yaml
"""

from __future__ import annotations

from core.config.schema import Config
from monitoring.agents import MonitoringAgent


class WMSHistoryAgent(MonitoringAgent):
    name = "WMSHistoryAgent"

    def __init__(self, config: Config, *, instance: str | None = None,
                 period: float | None = None) -> None:
        super().__init__(config, instance=instance, period=period)
        if period is None:  # wake often enough to hit every interval
            self.period = max(10.0, config.monitoring.history_period / 5)

    def run_once(self) -> bool:
        self.cycles.history()
        return True
