"""The parsers hostile input reaches first, fuzzed on their own (fast, so many examples):
the JDL (server side, through validation and parametric expansion, and the pilot's reader),
the JEncode decoder, catalog paths and the storage element's path confinement.

Each may accept or refuse, but a refusal is always its documented error class
(InvalidJDLError / JdlError / BadRequestError / ValueError / UnsafePathError), never another
exception, and a confined path never leaves its base directory.

TODO(workflow XML): the DIRAC workflow XML parser is being written by another helper; when
it lands, add ``test_workflow_xml_parser`` here: random and hostile XML (entity expansion
"billion laughs", external entities, deep nesting, huge attributes) must be refused with its
own error class and never read a file or the network. The hook: ``WORKFLOW_XML_PARSER`` below.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.exceptions import BadRequestError, InvalidArgumentError
from core.rpc.jencode import REQUEST_LIMITS, decode
from dms.logic.se_store import confined
from dms.paths import normalise_lfn
from pilot.jdl import JdlError
from pilot.jdl import parse_jdl as pilot_parse_jdl
from tests.fuzz.strategies import EDGE_TEXT, fuzz_settings, json_values
from wms.logic.jdl import parse_jdl
from wms.logic.job_description import describe_job
from wms.logic.parametric import expand_parametric

#: set to the workflow XML parser (a callable taking text) when it exists; see the TODO above
WORKFLOW_XML_PARSER: Any = None

JDL_ATTRS = ["Executable", "Arguments", "CPUTime", "Priority", "InputSandbox", "InputData",
             "OutputSandbox", "Site", "BannedSites", "JobType", "Parameters", "ParameterStart",
             "ParameterStep", "ParameterFactor", "NumberOfProcessors", "Tags", "Owner",
             "OwnerGroup", "JobName", "LogLevel", "Platform", "Parameters.x", "%(x)s"]
JDL_VALUES = st.one_of(
    st.integers(-(10**30), 10**30).map(str), st.sampled_from(["1e999", "-0", "1.5e-300", "0x10"]),
    st.text(max_size=20).map(lambda t: '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    st.sampled_from(['{"a", "b"}', "{}", "{1, 2, 3}", "[ A = 1 ]", '{"%(x)s"}', "{" * 40,
                     "true", "false", "undefined", '"' + "x" * 5000 + '"']),
    st.sampled_from(EDGE_TEXT).map(lambda t: '"' + t.replace('"', "") + '"'))
JDL_TEXTS = st.one_of(
    st.lists(st.tuples(st.sampled_from(JDL_ATTRS), JDL_VALUES), max_size=8).map(
        lambda pairs: "[ " + "; ".join(f"{a} = {v}" for a, v in pairs) + " ]"),
    st.text(alphabet='[]{};=,"\\ \n#/aEx1.-+', max_size=80),
    st.sampled_from(["[" * 3000, "{" * 3000, "A = " + "{" * 600 + "}" * 600,
                     "A = " + "[B = " * 400, "// only a comment", ""]))


@fuzz_settings(scale=20)
@given(text=JDL_TEXTS)
def test_jdl_parse_validate_expand(text: str) -> None:
    try:
        jdl = parse_jdl(text)
        for child in expand_parametric(jdl, max_jobs=50):
            describe_job(child, owner="alice", owner_group="demo_user", vo="demo")
    except InvalidArgumentError:   # InvalidJDLError and its kin
        pass


@fuzz_settings(scale=20)
@given(text=JDL_TEXTS)
def test_pilot_jdl_reader(text: str) -> None:
    try:
        pilot_parse_jdl(text)
    except JdlError:
        pass


def test_pilot_jdl_reader_deep_nesting() -> None:
    with pytest.raises(JdlError, match="too deeply"):
        pilot_parse_jdl("A = " + "{" * 5000 + "}" * 5000)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("text", ["A = {;}", "A = {]}", "A = { x ; }"])
def test_pilot_jdl_reader_does_not_hang(text: str) -> None:
    """Found by the fuzzer: a list holding a character no value starts with looped forever."""
    with pytest.raises(JdlError, match="unexpected"):
        pilot_parse_jdl(text)


JSON_TEXTS = st.one_of(
    json_values().map(lambda v: __import__("json").dumps(v)),
    st.text(alphabet='[]{}",:0123456789.eE+-tfnul\\ ', max_size=60),
    st.sampled_from(['{"__dCls": "dt", "obj": "' + "9" * 300 + '"}',
                     '{"__dCls": "b64", "obj": "' + "=" * 301 + '"}', "[" * 70 + "]" * 70,
                     "1" * 30, "-" + "9" * 19, "NaN", "[Infinity]", "1e400", '"\\ud800"',
                     b"\xff\xfe".decode("latin-1")]))


@fuzz_settings(scale=20)
@given(text=JSON_TEXTS)
def test_jencode_decoder(text: str) -> None:
    try:
        decode(text, REQUEST_LIMITS)
    except BadRequestError:
        pass
    try:
        decode(text.encode("utf-8", "surrogatepass"), REQUEST_LIMITS)
    except BadRequestError:
        pass


PATH_TEXTS = st.one_of(
    st.lists(st.sampled_from(["demo", "user", "..", ".", "", "a b", "é", "\x00", "\n", "~",
                              "a" * 300, "%2e%2e", "\\", "LFN:"]), max_size=8).map("/".join),
    st.text(max_size=40), st.sampled_from(EDGE_TEXT))


@fuzz_settings(scale=20)
@given(path=PATH_TEXTS)
def test_catalog_paths(path: str) -> None:
    try:
        lfn = normalise_lfn(path)
    except ValueError:
        return
    assert lfn.startswith("/") and "\x00" not in lfn
    assert ".." not in lfn.split("/") and "//" not in lfn


@fuzz_settings(scale=20)
@given(path=PATH_TEXTS)
def test_storage_element_paths_stay_inside(tmp_path_factory: pytest.TempPathFactory,
                                           path: str) -> None:
    base = tmp_path_factory.getbasetemp() / "se-fuzz"
    (base / "se").mkdir(parents=True, exist_ok=True)
    link = base / "se" / "escape"
    if not link.is_symlink():
        link.symlink_to(base)
    try:
        target = confined(base / "se", path)
    except (InvalidArgumentError, ValueError):
        return
    root = os.path.realpath(base / "se")
    real = os.path.realpath(target)
    assert real == root or real.startswith(root + os.sep), (path, real)
