"""The examples in the monitoring modules' docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["monitoring.types", "monitoring.db", "monitoring.db.base", "monitoring.db.sql",
           "monitoring.db.tables", "monitoring.logic.accounting", "monitoring.logic.cycles",
           "monitoring.logic.history", "monitoring.logic.plots", "monitoring.logic.reports",
           "monitoring.logic.transfers", "monitoring.jobparams", "wms.logic.parameter_store",
           "monitoring.service.common", "monitoring.metrics", "core.metrics",
           "core.config.monitoring", "core.components", "monitoring.components",
           "wms.metrics", "wms.db.outbox", "wms.cli._summary",
           "pilot.benchmark"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no example"
