"""Bad listing arguments of the transformation system (found by the RPC fuzzer,
tests/fuzz/test_rpc_methods.py) refused with InvalidArgumentError naming the argument, on both
databases; the accepted date forms still select what they should.

Regression: ``getTransformationTasks({}, None, [], '')`` was an HTTP 500 (a list compared
with a DATETIME column); a negative ``limit`` or ``offset`` was a syntax error on MariaDB;
transName ``"²"`` or ``"9" * 19``, and ``getTransformationSummaryWeb(None, [[]])``, were HTTP
500s too.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from core.exceptions import InvalidArgumentError, NotFoundError
from tests.transformation.conftest import MANAGER, World
from transformation.logic import files as files_logic
from transformation.logic import monitor, production, selection
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


NO_IDS: list[int | str] = ["²", "٣", "9" * 19, "1" * 25, -1, 2**63, 2**70]


@pytest.mark.parametrize("ident", NO_IDS, ids=[repr(i)[:12] for i in NO_IDS])
def test_an_ident_that_is_no_id_is_a_name_not_found(world: World, ident: int | str) -> None:
    """Found by the RPC fuzzer: transName ``"²"`` (``"²".isdigit()`` is true, ``int("²")``
    fails) and ``"9" * 19`` (beyond the ID column) were HTTP 500s in every method taking a
    transformation or a production."""
    logic.create(world.engine, world.catalog, world.settings, MANAGER, MC)
    with pytest.raises(NotFoundError, match="Transformation .* does not exist"):
        logic.find(world.engine, ident, "demo")
    with pytest.raises(NotFoundError, match="Transformation .* does not exist"):
        logic.extend(world.engine, MANAGER, ident, 1)
    with pytest.raises(NotFoundError, match="Production .* does not exist"):
        production.find(world.engine, ident, "demo")
    assert logic.find(world.engine, "1", "demo").name == "mc"  # an ID as text still works


@pytest.mark.parametrize("sort, message", [
    ([[]], "sort must be"), ([{}], "sort must be"), ([5], "sort must be"),
    ([["Status", "DESC", "x"]], "sort must be"), ([["Status", "down"]], "ASC or DESC"),
    ([["Status", None]], "ASC or DESC"), ("Status", "sort must be a list")])
def test_a_bad_web_sort_is_refused(sort: Any, message: str) -> None:
    """Found by the RPC fuzzer: ``getTransformationSummaryWeb(None, [[]])`` was an HTTP 500."""
    with pytest.raises(InvalidArgumentError, match=message):
        selection.sort_order(sort)


def test_good_web_sorts() -> None:
    assert [selection.sort_order(s) for s in (None, [], [["Status"]], ["Status"],
                                              [["Status", "desc"], ["Other", "ASC"]])] == \
        [None, None, ("Status", False), ("Status", False), ("Status", True)]


def test_a_date_column_selection_takes_dates(world: World) -> None:
    tid = logic.create(world.engine, world.catalog, world.settings, MANAGER, MC)
    created = logic.get(world.engine, tid, "demo")["CreationDate"]
    assert [t["TransformationID"] for t in logic.listing(
        world.engine, "demo", {"CreationDate": [created, "2001-01-01"]})] == [tid]
    for bad in (5, "soon", [1.5]):
        with pytest.raises(InvalidArgumentError, match="selection 'CreationDate'"):
            logic.listing(world.engine, "demo", {"CreationDate": bad})
    with pytest.raises(InvalidArgumentError, match="bad timeStamp 'TaskID'"):
        logic.get_tasks(world.engine, "demo", {}, time_stamp="TaskID", older="2026-01-01")


def test_the_monitor_skips_external_ids_that_are_no_job_ids(world: World) -> None:
    """ExternalID is set by hand with setTaskStatusAndWmsID: ``"²"`` or 19 nines crashed the
    monitor's and the cleaning agent's every cycle (``int()``, then an ID column overflow)."""
    tasks: Any = [SimpleNamespace(external_id=e, task_id=i)
                  for i, e in enumerate(["²", "9" * 19, "", "12"])]
    assert monitor.outputs_of(world.engine, tasks) == {}
    assert monitor.job_statuses(world.engine)(["²", "9" * 19, "12"]) == {"12": "Lost"}


@pytest.mark.parametrize("value", [False, [False, -1], [True], {"a": 1}, [[1]]])
def test_a_selection_value_must_be_text_or_a_number(world: World, value: Any) -> None:
    """Found by the RPC fuzzer: ``getTransformationWithStatus([False, -1])`` was an HTTP 500
    (a boolean in the IN list of a text column)."""
    with pytest.raises(InvalidArgumentError, match="selection 'Status': a value or a list"):
        logic.listing(world.engine, "demo", {"Status": value})
    with pytest.raises(InvalidArgumentError, match="selection 'Status': a value or a list"):
        files_logic.get_files(world.engine, world.catalog, "demo", {"Status": value})


def test_selection_values_take_the_column_type(world: World) -> None:
    """Found by the RPC fuzzer: ``getTransformationWithStatus([0.0, ""])`` was an HTTP 500
    (numbers and text mixed in the IN list of a text column)."""
    tid = logic.create(world.engine, world.catalog, world.settings, MANAGER, MC)
    assert logic.listing(world.engine, "demo", {"Status": [0.0, "", "New"]})[0][
        "TransformationID"] == tid
    for wanted in ([str(tid), 999], [float(tid)], f" {tid} "):
        assert [t["TransformationID"] for t in logic.listing(
            world.engine, "demo", {"TransformationID": wanted})] == [tid]
    for bad in ("x", "²", "9" * 19, 1.5):
        with pytest.raises(InvalidArgumentError, match="is not a whole number"):
            logic.listing(world.engine, "demo", {"TransformationID": [bad]})
