"""Element statuses for DIRAC's RSS clients, from the site mask and the SE configuration
(DIRAC's own client reads them in tests/interop/test_dirac_rpc.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from core.config.schema import Config
from core.exceptions import InvalidArgumentError
from wms.logic.resource_status import COLUMNS, element_rows, select

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
CONFIG = Config.model_validate({"Resources": {
    "Sites": {"LCG.A.org": {"CEs": {"ce-a": {"CEType": "Local"}}, "SEs": ["DISK"]},
              "LCG.B.org": {"CEs": {"ce-b1": {"CEType": "Local"}, "ce-b2": {"CEType": "SSH"}}}},
    "StorageElements": {
        "DISK": {"Protocols": [{"Plugin": "File", "Path": "/d"}]},
        "TAPE": {"Protocols": [{"Plugin": "File", "Path": "/t"}], "ReadAccess": False,
                 "RemoveAccess": False}}}})


def rows(mask: dict | None = None) -> list:
    return element_rows(CONFIG, mask or {}, sandbox_se="ProductionSandboxSE", now=NOW)


def test_sites_ces_and_ses() -> None:
    banned = {"LCG.B.org": ("Banned", NOW - timedelta(hours=1), "downtime"),
              "LCG.Only.Mask": ("Active", NOW, "")}
    value, columns = select(rows(banned), "SiteStatus",
                            {"Meta": {"columns": ["Name", "Status", "VO"]}, "VO": "all"})
    assert columns == ["name", "status", "vo"]
    assert value == [["LCG.A.org", "Active", "all"], ["LCG.B.org", "Banned", "all"],
                     ["LCG.Only.Mask", "Active", "all"]]
    value, _ = select(rows(banned), "ResourceStatus", {"ElementType": "ComputingElement",
                                                       "Meta": {"columns": ["Name", "Status"]}})
    assert value == [["ce-a", "Active"], ["ce-b1", "Banned"], ["ce-b2", "Banned"]]
    value, _ = select(rows(), "ResourceStatus", {"Name": ["TAPE", "ProductionSandboxSE"],
                                                 "StatusType": "ReadAccess"})
    by_name = {r[0]: r for r in value}
    assert by_name["TAPE"][2] == "Banned" and by_name["ProductionSandboxSE"][2] == "Active"
    assert len(by_name["TAPE"]) == len(COLUMNS)  # whole rows in DIRAC's column order


def test_meta_options_and_errors() -> None:
    value, _ = select(rows(), "ResourceStatus", {"ElementType": "StorageElement", "Meta": {
        "columns": ["Name", "StatusType"], "order": ["Name", "DESC"], "limit": 2}})
    assert value == [["TAPE", "ReadAccess"], ["TAPE", "WriteAccess"]]
    old = {"LCG.A.org": ("Banned", NOW - timedelta(days=2), "")}
    value, _ = select(rows(old), "SiteStatus", {"Meta": {
        "columns": ["Name"], "older": ["DateEffective", NOW - timedelta(days=1)]}})
    assert value == [["LCG.A.org"]]
    assert select(rows(), "SiteLog", {})[0] == []
    with pytest.raises(InvalidArgumentError, match="unknown table"):
        select(rows(), "Nope", {})
    with pytest.raises(InvalidArgumentError, match="no column"):
        select(rows(), "SiteStatus", {"Colour": "red"})
