"""Every registered RPC method of every installed service, called over real HTTPS with
generated arguments (tests/fuzz/strategies.py): wrong types, huge and negative numbers,
unicode and lone surrogates, nulls, nested structures, JEncode markers with bad payloads,
long strings, too few and too many arguments.

Asserted for each call: never HTTP 500, always DIRAC's envelope (``OK``, and ``Message`` and
``Errno`` when refused); after each method's examples the server still answers ``ping``.
The methods are found through the ``pilotwms.services`` entry points, so a service added
later is fuzzed without any change here.

Budget: ``PILOTWMS_FUZZ_EXAMPLES`` examples per method (see strategies.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import Caller
from tests.fuzz.strategies import argument_lists, fuzz_settings
from tests.support.fullserver import every_service

METHODS = [(cls.path(), wire) for cls in every_service() for wire in sorted(cls.methods())]
#: the built-ins are the same code on every service: fuzzed once
BUILT_INS = {"ping", "echo", "whoami"}
TARGETS = [(path, wire) for path, wire in METHODS
           if wire not in BUILT_INS or path == "Framework/Registry"]
CALLER_WEIGHTS = ["all-rights"] * 5 + ["alice", "pilot", "host", "anonymous"]


def check_reply(reply: requests.Response, what: str) -> dict[str, Any]:
    assert reply.status_code != 500, f"{what}: HTTP 500: {reply.text[:500]}"
    if reply.headers.get("Content-Type", "").startswith("application/octet-stream"):
        return {"OK": True}
    try:
        body = json.loads(reply.text)
    except ValueError:
        raise AssertionError(f"{what}: HTTP {reply.status_code}, not JSON: "
                             f"{reply.text[:300]!r}") from None
    assert isinstance(body, dict) and isinstance(body.get("OK"), bool), (what, body)
    if not body["OK"]:
        assert isinstance(body.get("Message"), str) and isinstance(body.get("Errno"), int), \
            (what, body)
        assert reply.status_code in (200, 400, 401, 404, 413, 501), (what, reply.status_code)
    return body  # type: ignore[no-any-return]


def spec_of(path: str, wire: str) -> Any:
    return next(cls for cls in every_service() if cls.path() == path).methods()[wire]


@pytest.mark.parametrize("path, wire", TARGETS, ids=[f"{p}.{w}" for p, w in TARGETS])
def test_method_survives_hostile_arguments(path: str, wire: str,
                                           callers: dict[str, Caller]) -> None:
    spec = spec_of(path, wire)

    @fuzz_settings()
    @given(args=argument_lists(spec), who=st.sampled_from(CALLER_WEIGHTS),
           raw=st.booleans())
    def call(args: list[Any], who: str, raw: bool) -> None:
        caller = callers[who]
        form = {"method": wire, "args": json.dumps(args)}
        if raw:
            form["rawContent"] = "true"
        reply = caller.post(path, **form)
        check_reply(reply, f"{who} {path}.{wire}({form['args'][:300]})")

    call()
    pong = callers["anonymous"].post(path, method="ping", args="[]")
    assert pong.status_code == 200 and pong.json()["OK"] is True, pong.text
