"""Every registered RPC method with each edge value, deterministically, in each argument
position (the others plain): what a random run of tests/fuzz/test_rpc_methods.py reaches
only now and then, checked on every run.

The edges are the ones that broke methods before: digit texts that ``str.isdigit`` accepts
but ``int`` does not (``"²"``), decimal texts and numbers beyond a 64-bit ID column,
negative and fractional numbers, empty and lone-surrogate text, and the same inside a list
or a dict where the parameter takes one. Asserted as in test_rpc_methods.py: never HTTP 500,
always DIRAC's envelope; every failing call is listed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.rpc.service import Param
from tests.fuzz.conftest import Caller
from tests.fuzz.test_rpc_methods import TARGETS, check_reply, spec_of

EDGES: list[Any] = ["²", "٣", "1" * 25, "9" * 19, "-1", "0", " 1", "-0", "", "\ud800",
                    -1, 0, 2**63 - 1, -(2**63), 1.5, -1.5, 1e300]


def plain(param: Param) -> Any:
    """An ordinary value of the parameter's type (the edge goes elsewhere)."""
    for kind, value in ((str, "x"), (int, 1), (list, []), (dict, {})):
        if kind in param.accepted:
            return value
    return None if param.nullable else "x"


def calls(path: str, wire: str) -> list[list[Any]]:
    fixed = [p for p in spec_of(path, wire).params if not p.variadic]
    out = []
    for i, param in enumerate(fixed):
        for edge in EDGES:
            values: list[Any] = [edge]
            if list in param.accepted:
                values.append([edge])
            if dict in param.accepted:
                values.append({"k": edge, str(edge)[:20]: 1})
            for value in values:
                args = [plain(p) for p in fixed]
                args[i] = value
                out.append(args)
    return out


#: one test per service: ~10,000 HTTPS calls in all, each service's share within the timeout
SERVICES = sorted({path for path, _ in TARGETS})


@pytest.mark.parametrize("service", SERVICES)
def test_every_method_survives_the_edges(callers: dict[str, Caller], service: str) -> None:
    caller = callers["all-rights"]
    failed = []
    for path, wire in TARGETS:
        if path != service:
            continue
        for args in calls(path, wire):
            text = json.dumps(args)
            try:
                check_reply(caller.post(path, method=wire, args=text), "")
            except AssertionError as exc:
                failed.append(f"{path}.{wire}({text[:200]}): {str(exc)[:200]}")
    assert not failed, f"{len(failed)} calls failed:\n" + "\n".join(failed[:50])
