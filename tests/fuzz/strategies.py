"""Hypothesis strategies for hostile RPC arguments, and the fuzz budget.

The budget: ``PILOTWMS_FUZZ_EXAMPLES`` examples per fuzzed target (default
:data:`DEFAULT_EXAMPLES`, which keeps the whole suite within a few minutes on 2 cores); a
deeper run sets e.g. ``PILOTWMS_FUZZ_EXAMPLES=500``.

Each run draws new examples (no seed is fixed, so every CI run covers new ground). To
reproduce: a failure names the exact call (caller, method, arguments) and prints a
``@reproduce_failure`` line; a whole run is replayed with pytest's
``--hypothesis-seed=N`` (e.g. ``PILOTWMS_FUZZ_EXAMPLES=150 pytest tests/fuzz
--hypothesis-seed=2``).

Values are JSON text fragments rather than Python objects where JSON can say what Python's
encoder would not (lone surrogates, integers beyond any column, JEncode markers with payloads
of the wrong kind).
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from core.rpc.service import MethodSpec
from transformation.logic.files import FILE_COLUMNS
from transformation.logic.transformations import TASK_COLUMNS, TRANS_SELECT
from wms.db.pilots import SEARCHABLE as PILOT_SEARCHABLE
from wms.db.tables import JOB_ATTRIBUTES

DEFAULT_EXAMPLES = 12


def examples(scale: float = 1.0) -> int:
    """Examples per target for this run (``PILOTWMS_FUZZ_EXAMPLES``), times ``scale``."""
    base = int(os.environ.get("PILOTWMS_FUZZ_EXAMPLES", DEFAULT_EXAMPLES))
    return max(1, int(base * scale))


def fuzz_settings(scale: float = 1.0) -> settings:
    """``print_blob``: a failure prints the ``@reproduce_failure`` line that replays it."""
    return settings(max_examples=examples(scale), deadline=None, database=None,
                    print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


EDGE_INTS = [0, -1, 1, 2**31 - 1, 2**31, -(2**31), 2**53 + 1, 2**63 - 1, -(2**63), 2**63,
             2**64, -(2**64), 10**30]
EDGE_TEXT = ["", " ", "/", "//", "/..", "../../etc/passwd", "/demo/user/a/alice/../../..",
             "\x00", "a\x00b", "%00", "SB:", "SB:DIRAC-USER|/../../x.tar.bz2",
             "SB:x|/SandBox/a/alice.demo_user/../../../etc", "'; DROP TABLE jobs; --",
             "\ud800", "☃" * 50, "\u202e", "*", "%", "_", "[ Executable = ", "]" * 10,
             'Executable = "/bin/sh"; Arguments = "-c \'rm -rf /\'";', "LFN:/demo", "1e999",
             "NaN", "null", "true", "-0",
             # digits str.isdigit() accepts and int() does not; IDs beyond a 64-bit column
             "²", "٣", "9" * 19, "1" * 25]


#: selection and attribute names the services know (condDicts, job attributes, report keys):
#: random keys are refused before the values are looked at, these reach the column checks
KNOWN_KEYS = sorted({
    *JOB_ATTRIBUTES, *TASK_COLUMNS, *FILE_COLUMNS, *TRANS_SELECT, *PILOT_SEARCHABLE,
    "Tag", "Queue", "CE",
    "LFN", "SE", "GUID", "Size", "Checksum", "ChecksumType", "Mode", "Name", "RequestID",
    "RequestName", "PilotJobReference", "DestinationSite", "GridSite", "GridType", "Broker",
    "Platform", "Tags", "InputData", "InputSandbox", "OutputSandbox", "Executable",
    "Arguments", "CPUTime", "Priority", "Destination", "Parameters", "Sites", "BannedSites",
    "grouping", "condDict", "startTime", "endTime", "extraArgs", "typeName", "reportName",
})


def keys() -> st.SearchStrategy[str]:
    return st.text(max_size=20) | st.sampled_from(EDGE_TEXT[:10]) | st.sampled_from(KNOWN_KEYS)


def long_text() -> st.SearchStrategy[str]:
    """Long strings and deep paths (built lazily: their repr stays short)."""
    return (st.sampled_from([255, 256, 4096, 70_000]).map(lambda n: "a" * n)
            | st.sampled_from([100, 600]).map(lambda n: "/" + "a/" * n))


def texts() -> st.SearchStrategy[str]:
    return st.text(max_size=40) | st.sampled_from(EDGE_TEXT) | long_text()


def scalars() -> st.SearchStrategy[Any]:
    return (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
            | st.sampled_from(EDGE_INTS)
            | st.floats(allow_nan=False, allow_infinity=False) | texts())


def markers() -> st.SearchStrategy[dict[str, Any]]:
    """JEncode markers, right and wrong."""
    good = st.sampled_from([{"__dCls": "dt", "obj": "2026-01-02 03:04:05"},
                            {"__dCls": "date", "obj": "2026-01-02"},
                            {"__dCls": "b64", "obj": "AAEC"}])
    bad = st.fixed_dictionaries({
        "__dCls": st.sampled_from(["dt", "date", "b64", "set", "", "DT"]) | st.integers(),
        "obj": scalars() | st.lists(st.integers(), max_size=2)})
    return good | bad


def json_values() -> st.SearchStrategy[Any]:
    """Any JSON value (and markers), nested a few levels."""
    return st.recursive(
        scalars() | markers(),
        lambda inner: (st.lists(inner, max_size=5)
                       | st.dictionaries(st.text(max_size=12) | st.sampled_from(EDGE_TEXT[:8])
                                         | st.sampled_from(KNOWN_KEYS), inner, max_size=5)),
        max_leaves=16)


def _typed(kind: type) -> st.SearchStrategy[Any]:
    """Values of the right outer type (so the call reaches the method) with hostile content."""
    if kind is bool:
        return st.booleans()
    if kind is int:
        return st.integers(-(2**63), 2**63 - 1) | st.sampled_from(EDGE_INTS[:9])
    if kind is float:
        return st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10, 10**6)
    if kind is str:
        return texts()
    if kind in (list, tuple):
        return st.lists(scalars() | json_values(), max_size=6)
    if kind is dict:
        return st.dictionaries(keys(), json_values(), max_size=6)
    return json_values()


def argument_lists(spec: MethodSpec) -> st.SearchStrategy[list[Any]]:
    """Arguments for ``spec``: mostly of the annotated outer types (reaching the method
    body), sometimes any JSON at all, sometimes too few or too many."""
    fixed = [p for p in spec.params if not p.variadic]

    def for_param(accepted: tuple[type, ...], nullable: bool) -> st.SearchStrategy[Any]:
        kinds = [k for k in accepted if k is not object]
        typed = st.one_of(*[_typed(k) for k in kinds]) if kinds else json_values()
        nulls: st.SearchStrategy[Any] = st.none() if nullable else st.nothing()
        return typed | typed | nulls | json_values()

    well_formed = st.tuples(*[for_param(p.accepted, p.nullable) for p in fixed]).map(list)
    wrong_count = st.lists(json_values(), max_size=len(fixed) + 3)
    return well_formed | well_formed | well_formed | wrong_count


def args_text(args: list[Any]) -> str:
    return json.dumps(args)
