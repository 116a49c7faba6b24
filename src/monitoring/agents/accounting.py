"""``AccountingAgent``: ships the WMS outbox into accounting records (one per finished job and
pilot) and finished data-management requests into data-operation records, see
:mod:`monitoring.logic.accounting` and :mod:`monitoring.logic.transfers`.

Example::

    pilotwms agent AccountingAgent --config /srv/pilotwms/config.yaml --period 60
"""

from __future__ import annotations

from monitoring.agents import MonitoringAgent


class AccountingAgent(MonitoringAgent):
    name = "AccountingAgent"
    period = 60.0

    def run_once(self) -> bool:
        result = self.cycles.ship()
        return result is None or not result.more
