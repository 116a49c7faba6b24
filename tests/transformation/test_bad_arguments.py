"""Bad listing arguments of the transformation system (found by the RPC fuzzer,
tests/fuzz/test_rpc_methods.py) refused with InvalidArgumentError naming the argument, on both
databases; the accepted date forms still select what they should.

Regression: ``getTransformationTasks({}, None, [], '')`` was an HTTP 500 (a list compared
with a DATETIME column); a negative ``limit`` or ``offset`` was a syntax error on MariaDB.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest

from core.exceptions import InvalidArgumentError
from tests.transformation.conftest import MANAGER, World
from transformation.logic import files as files_logic
from transformation.logic import transformations as logic

MC = {"Name": "mc", "Type": "MCSimulation", "Body": '[Executable = "sim";]'}

BAD_DATES: list[tuple[Any, str]] = [
    ([], "newer must be a date .*not list"),
    ({}, "newer must be a date .*not dict"),
    (5, "newer must be a date .*not int"),
    (1.5, "newer must be a date .*not float"),
    (True, "newer must be a date .*not bool"),
    ("yesterday", "newer: bad date 'yesterday'"),
    ("\ud800", "newer: bad date"),
    ("9999-12-31T23:59:59-05:00", "newer: date .* is out of range"),
    ("0001-01-01T00:00:00+05:00", "newer: date .* is out of range"),
]


def listings(world: World, **kwargs: Any) -> list[Any]:
    """Each listing with ``kwargs``: tasks, files, transformations."""
    return [logic.get_tasks(world.engine, "demo", {}, **kwargs),
            files_logic.get_files(world.engine, world.catalog, "demo", {}, **kwargs),
            logic.listing(world.engine, "demo", {}, **kwargs)]


@pytest.mark.parametrize("value, message", BAD_DATES, ids=[repr(v)[:30] for v, _ in BAD_DATES])
def test_a_bad_date_bound_is_refused_by_every_listing(world: World, value: Any,
                                                      message: str) -> None:
    for listing in (logic.get_tasks, logic.listing):
        with pytest.raises(InvalidArgumentError, match=message):
            listing(world.engine, "demo", {}, newer=value)
        with pytest.raises(InvalidArgumentError, match=message.replace("newer", "older")):
            listing(world.engine, "demo", {}, older=value)
    with pytest.raises(InvalidArgumentError, match=message):
        files_logic.get_files(world.engine, world.catalog, "demo", {}, newer=value)


@pytest.mark.parametrize("page", [{"limit": -1}, {"offset": -1}, {"limit": -(2**63)},
                                  {"limit": 1.5}, {"offset": True}])
def test_a_negative_or_fractional_page_is_refused(world: World, page: dict[str, Any]) -> None:
    name = next(iter(page))
    for listing in (logic.get_tasks, logic.listing):
        with pytest.raises(InvalidArgumentError, match=f"{name} must be a whole number >= 0"):
            listing(world.engine, "demo", {}, **page)
    with pytest.raises(InvalidArgumentError, match=f"{name} must be a whole number >= 0"):
        files_logic.get_files(world.engine, world.catalog, "demo", {}, **page)


def test_the_accepted_date_forms_select_by_time(world: World) -> None:
    tid = logic.create(world.engine, world.catalog, world.settings, MANAGER, MC)
    logic.set_status(world.engine, MANAGER, tid, "Active")
    assert logic.extend(world.engine, MANAGER, tid, 2) == [1, 2]
    now = datetime.now(timezone.utc)
    past, future = now - timedelta(days=2), now + timedelta(days=2)
    tasks = [1, 2]
    for bound, expect_newer, expect_older in [
        (past, tasks, []), (future, [], tasks),
        (past.replace(tzinfo=None), tasks, []),  # naive: UTC
        (past.date(), tasks, []), (date(9999, 12, 31), [], tasks),
        (past.strftime("%Y-%m-%d %H:%M:%S"), tasks, []),
        (future.isoformat(), [], tasks),
        (future.astimezone(timezone(timedelta(hours=-5))).isoformat(), [], tasks),
    ]:
        newer = logic.get_tasks(world.engine, "demo", {"TransformationID": tid}, newer=bound)
        older = logic.get_tasks(world.engine, "demo", {"TransformationID": tid}, older=bound)
        assert ([t["TaskID"] for t in newer], [t["TaskID"] for t in older]) == \
            (expect_newer, expect_older), bound
    # no bound: None, "" or blanks; limit 0 is no limit
    for blank in (None, "", "  "):
        assert len(logic.get_tasks(world.engine, "demo", {}, older=blank, newer=blank,
                                   limit=0, offset=0)) == 2
    assert [t["TaskID"] for t in logic.get_tasks(world.engine, "demo", {}, limit=1,
                                                 offset=1)] == [2]
    assert [len(x) for x in listings(world, older=future, newer=past)] == [2, 0, 1]
