"""Hostile and malformed RPC input against the real services over HTTPS (issue 16): every
client mistake is a 4xx or a DIRAC error, never HTTP 500, and the server answers afterwards.

The first two tests are the cases the issue saw crash the server (a RecursionError on deeply
nested ``args``, an OverflowError in SQLite on an integer beyond 64 bits).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from core.config.schema import Config
from core.exceptions import BadRequestError, InvalidArgumentError
from core.rpc.jencode import REQUEST_LIMITS, decode
from core.rpc.server import MAX_ARGS
from core.rpc.service import Call, Service, rpc_method
from tests.support.credentials import Creds
from tests.support.fullserver import full_config, serve_everything
from tests.support.servers import ThreadedServer

MONITORING = "WorkloadManagement/JobMonitoring"


@pytest.fixture(scope="module")
def server(instance: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    from core.config.loader import load_config

    cfg = full_config(load_config(instance.config, environ={}),
                      tmp_path_factory.mktemp("hostile"))
    with serve_everything(cfg) as srv:
        yield srv


def post(server: ThreadedServer, creds: Creds, path: str, method: str, args: str,
         **form: str) -> requests.Response:
    """As alice; as a pilot (token) for the PilotManager."""
    auth: dict[str, Any] = {"cert": tuple(map(str, creds.alice))}
    if path.endswith("PilotManager"):
        token = creds.issuer_for(server.config).issue("pilot", group="demo_pilot", vo="demo")
        auth = {"headers": {"Authorization": f"Bearer {token}"}}
    return requests.post(f"{server.url}/{path}", data={"method": method, "args": args, **form},
                         verify=str(creds.ca_dir), timeout=60, **auth)


def assert_clear_refusal(reply: requests.Response, *words: str) -> dict[str, Any]:
    assert reply.status_code != 500, reply.text
    body = reply.json()
    assert body["OK"] is False, body
    assert body["Errno"] == 22, body
    for word in words:
        assert word in body["Message"], body
    return body  # type: ignore[no-any-return]


def test_deep_nesting_is_a_400_not_a_recursion_error(server: ThreadedServer,
                                                     creds: Creds) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    reply = post(server, creds, MONITORING, "getJobsStatus", deep)
    assert reply.status_code == 400
    assert_clear_refusal(reply, "nested deeper")
    # below the recursion limit but above ours: refused the same way
    reply = post(server, creds, MONITORING, "getJobsStatus", "[" * 65 + "]" * 65)
    assert reply.status_code == 400
    assert_clear_refusal(reply, "nested deeper than 64")
    assert post(server, creds, MONITORING, "getJobsStatus", "[[1]]").json()["OK"]


@pytest.mark.parametrize("method, text", [
    ("getJobsStatus", f"[[{2**70}]]"),
    ("getJobSummary", f"[{2**70}]"),
    ("getJobSummary", f"[{-(2**70)}]"),
    ("getJobsStatus", f"[[{2**64 - 1}]]"),
    ("getJobSummary", "[" + "9" * 5000 + "]"),   # beyond Python's int-from-text digit limit
])
def test_integers_beyond_64_bits_are_refused(server: ThreadedServer, creds: Creds,
                                             method: str, text: str) -> None:
    reply = post(server, creds, MONITORING, method, text)
    assert reply.status_code == 400
    assert_clear_refusal(reply, "64-bit range")


def test_largest_64_bit_integers_are_ordinary_unknown_jobs(server: ThreadedServer,
                                                           creds: Creds) -> None:
    for value in (2**63 - 1, -(2**63)):
        reply = post(server, creds, MONITORING, "getJobsStatus", json.dumps([[value]]))
        assert reply.status_code == 200 and reply.json() == {"OK": True, "Value": {}}


@pytest.mark.parametrize("args, words", [
    ("[NaN]", ["NaN"]), ("[Infinity]", ["Infinity"]), ("[1e999]", ["floating point"]),
    ('[{"__dCls": "dt", "obj": "2026-13-45 99:99:99"}]', ["Bad JEncode"]),
    ('[{"__dCls": "b64", "obj": "***"}]', ["Bad JEncode"]),
    ('[{"__dCls": "nope", "obj": "x"}]', ["Unknown JEncode marker"]),
    ('[{"__dCls": "dt", "obj": 5}]', ["without a string"]),
    ("[1, 2", ["Cannot decode JSON"]), ('{"a": 1}', ["JSON list"]),
    # a lone surrogate reached SQLite: UnicodeEncodeError, HTTP 500 (mintDelegatedToken)
    ('["\\ud800"]', ["lone UTF-16 surrogate"]), ('[{"\\udfff": 1}]', ["surrogate"]),
])
def test_malformed_json_and_markers(server: ThreadedServer, creds: Creds, args: str,
                                    words: list[str]) -> None:
    reply = post(server, creds, MONITORING, "getJobSummary", args)
    assert reply.status_code == 400
    assert_clear_refusal(reply, *words)


def test_too_many_arguments_and_values(server: ThreadedServer, creds: Creds) -> None:
    reply = post(server, creds, "Framework/Registry", "echo", json.dumps([1] * (MAX_ARGS + 1)))
    assert reply.status_code == 400
    assert_clear_refusal(reply, "at most 64")
    wide = "[[" + ",".join(["[0,0,0,0,0,0,0,0,0]"] * 210_000) + "]]"
    reply = post(server, creds, "Framework/Registry", "echo", wide)
    assert reply.status_code == 400
    assert_clear_refusal(reply, "more than 2000000")


def test_wrong_item_types_are_invalid_arguments(server: ThreadedServer, creds: Creds) -> None:
    reply = post(server, creds, "Framework/Registry", "echo", "[]",
                 extraCredentials="[" * 2000 + "]" * 2000)
    assert reply.status_code == 400


def test_extra_credentials_are_bounded_too(server: ThreadedServer, creds: Creds) -> None:
    reply = post(server, creds, MONITORING, "getJobsStatus", "[[1]]",
                 extraCredentials=json.dumps([2**80, "g"]))
    assert reply.status_code == 400
    assert_clear_refusal(reply, "64-bit")


@pytest.mark.parametrize("path, method, args", [
    # each was an HTTP 500 found by tests/fuzz/test_rpc_methods.py
    ("DataManagement/FileCatalog", "getFileAncestors", [[], [None]]),
    ("DataManagement/FileCatalog", "getFileDescendents", [["/demo"], ["x"]]),
    ("DataManagement/FileCatalog", "removeMetadata", [{"/": True}]),
    ("DataManagement/FileCatalog", "removeMetadata", [{"/demo": [1, {}]}]),
    ("WorkloadManagement/JobStateUpdate", "setJobApplicationStatus",
     ["9223372036854775808", "", ""]),
    ("WorkloadManagement/JobMonitoring", "getJobsStatus", [["-9223372036854775809"]]),
    # an empty reference registered twice: UNIQUE constraint failed
    ("WorkloadManagement/PilotManager", "registerPilot", ["", {}]),
    ("WorkloadManagement/PilotManager", "registerPilot", ["", {}]),
    ("WorkloadManagement/PilotManager", "registerPilot", ["x" * 300, {}]),
])
def test_fuzz_findings_are_clear_errors(server: ThreadedServer, creds: Creds, path: str,
                                        method: str, args: list[Any]) -> None:
    reply = post(server, creds, path, method, json.dumps(args))
    assert reply.status_code in (200, 400), reply.text
    body = reply.json()
    if body["OK"]:   # bulk methods report per entry
        assert body["Value"]["Failed"], body
    else:
        assert body["Errno"] in (1, 13, 22), body


def test_server_still_answers(server: ThreadedServer, creds: Creds) -> None:
    reply = post(server, creds, MONITORING, "ping", "[]")
    assert reply.status_code == 200 and reply.json()["OK"] is True


# -- the decoder and the argument check on their own ---------------------------------------------


def test_decoder_limits() -> None:
    assert decode("[" * 64 + "]" * 64, REQUEST_LIMITS) is not None
    with pytest.raises(BadRequestError, match="nested deeper than 64"):
        decode("[" * 65 + "]" * 65, REQUEST_LIMITS)
    with pytest.raises(BadRequestError, match="nested deeper"):
        decode('{"a":' * 5000 + "1" + "}" * 5000, REQUEST_LIMITS)
    assert decode(str(2**63 - 1), REQUEST_LIMITS) == 2**63 - 1
    with pytest.raises(BadRequestError, match="64-bit"):
        decode(str(2**63), REQUEST_LIMITS)
    # a body of millions of tiny values is refused before it is parsed (memory)
    with pytest.raises(BadRequestError, match="more than 2000000 values"):
        decode("[" + "0," * 2_500_000 + "0]", REQUEST_LIMITS)
    # replies from a server are decoded with looser bounds
    assert decode(str(2**70)) == 2**70
    assert decode("[" * 200 + "]" * 200) is not None


class Typed(Service):
    system, name = "Test", "Typed"

    @rpc_method("m", rights="all")
    def m(self, call: Call, job: int, names: list[str], table: dict[str, int] | None = None,
          either: int | list[int] = 0) -> None:
        return None


@pytest.mark.parametrize("args, message", [
    ([2**63, []], "does not fit in 64 bits"),
    ([-(2**63) - 1, []], "does not fit in 64 bits"),
    ([True, []], "must be int, not bool"),
    ([1, ["a", 2]], "items must be str, not int"),
    ([1, ["a"], {"x": "y"}], "items must be int, not str"),
    ([1, ["a"], None, [1, None]], "items must be int, not NoneType"),
    ([1, ["a"], None, "x"], "must be int or list or tuple, not str"),
])
def test_argument_check(args: list[Any], message: str) -> None:
    spec = Typed.methods()["m"]
    with pytest.raises(InvalidArgumentError, match=message):
        spec.check_args(args)
    spec.check_args([2**63 - 1, ["a", "b"], {"x": 1}, [1, 2]])
    spec.check_args([0, (), None, 5])


class Nested(Service):
    system, name = "Test", "Nested"

    @rpc_method("m", rights="all")
    def m(self, call: Call, filters: dict[str, str | int | list[str | None]],
          rows: list[list[int]] | None = None) -> None:
        return None


@pytest.mark.parametrize("args, message", [
    # a dict or a list nested in a filter value reached SQL (searchPilots, HTTP 500)
    ([{"a": {"b": 1}}], "items must be int or list or str or tuple, not dict"),
    ([{"a": ["x", ["y"]]}], "items must be str, not list"),
    ([{"a": ["x", 1]}], "items must be str, not int"),
    ([{}, [[1], ["2"]]], "items must be int, not str"),
    ([{}, [[1], None]], "items must be list or tuple, not NoneType"),
])
def test_nested_items_are_checked(args: list[Any], message: str) -> None:
    spec = Nested.methods()["m"]
    with pytest.raises(InvalidArgumentError, match=f"argument .*: {message}"):
        spec.check_args(args)
    spec.check_args([{"a": "x", "b": 2**63 - 1, "c": ["x", None], "d": []}, [[1, 2], []]])


def test_config_untouched(config: Config, tmp_path: Path) -> None:
    """full_config keeps the session's instance intact (state goes to tmp_path)."""
    cfg = full_config(config, tmp_path)
    assert str(tmp_path) in cfg.database_url("WorkloadManagement")
