"""The examples in the docstrings of the event, schedule, capacity and dataset-job modules run
(the suite does not collect doctests by itself)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["wms.logic.events", "wms.logic.schedules", "wms.logic.capacity",
           "wms.logic.dataset_jobs", "wms.db.events", "wms.db.schedules", "wms.db.schema",
           "wms.db.scheduling_tables", "wms.service.wiring", "wms.agents.events",
           "wms.agents.schedules", "wms.cli.devent", "pilot.node", "wms.logic.task_queues",
           "wms.logic.job_description", "wms.logic.submission", "wms.logic.states"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0, result
