"""Parametric children described (and their processed JDLs written) from one template give
what describing and writing each in full gives.

The template path (:mod:`wms.logic.child_description`, used by ``submit``) is compared with
the old one (``describe_job`` of every child, and of every child again once ``%j`` is
replaced) on a corpus of parametric JDLs: descriptions and errors, then everything stored
and confirmed (job rows, original and processed JDLs, scheduling records, input data,
logging rows, task queues), on SQLite and MariaDB against the old path on SQLite.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from tests.wms.logic.test_bulk_once import ALICE, LIMITS, NOW, _state, confirm

from core.db import init_schema, make_engine
from core.exceptions import InvalidJDLError
from wms.db.schema import WMS_SCHEMA
from wms.db.tables import input_data, job_jdls, jobs
from wms.logic import child_description
from wms.logic.child_description import ChildDescriber, describe_children
from wms.logic.jdl import parse_jdl
from wms.logic.job_description import JobDescription, JobLimits, describe_job, processed_jdl
from wms.logic.parametric import (
    expand_parametric,
    expand_with_varying,
    job_id_attributes,
    substitute_job_id,
)
from wms.logic.processed_text import ProcessedTemplate
from wms.logic.submission import store, submit

LONG = "n" * 126
#: parametric JDLs: ranges, lists, named sequences, ``%j`` and ``%%``, placeholders in most
#: attributes describe_job reads, and a bad value in one child only
CORPUS = [
    # numeric range, placeholders in Arguments and JobName (the benchmark's shape)
    '[Executable = "a.sh"; Arguments = "--seed %s --index %n"; JobName = "scan_%n";'
    ' CPUTime = 3600; Parameters = 12; ParameterStart = 1000; ParameterStep = 7;]',
    # factor, floats, bare placeholders in CPUTime and Priority (clamped in some children)
    '[Executable = "a.sh"; Parameters = 4; ParameterStart = 50; ParameterFactor = 10;'
    ' CPUTime = %s; Priority = %n; MyValue = %s; MyText = "v=%s";]',
    '[Executable = "a.sh"; Parameters = 3; ParameterStart = 0.5; ParameterStep = 0.25;'
    ' Arguments = "%s"; Weight = %s;]',
    # lists of strings into Site, BannedSites, Tags, JobGroup, InputSandbox, InputData
    '[Executable = "a.sh"; Parameters = {"S1", "S2", "S4"}; Site = "%s";'
    ' BannedSites = {"S3"}; Tags = {"t_%s", "common"}; JobGroup = "grp_%s";'
    ' InputSandbox = {"SB:store|/sb/%s.tar", "local.txt"};'
    ' InputData = {"/demo/data/%s", "LFN:/demo/data/common"};]',
    '[Executable = "a.sh"; Parameters = {"S1, S2", "ANY", "S2"}; Site = "%s";'
    ' BannedSites = "S2"; Platform = {"ANY", "x86_64"}; GridCE = "ce.%n";]',
    '[Executable = "a.sh"; Parameters = {"S1", "S2"}; BannedSites = "%s"; Site = {"S1", "S2"};'
    ' Tag = "%s";]',
    # list values spliced into a list (DIRAC's InputData = {%s})
    '[Executable = "a.sh"; Parameters = {{"/demo/data/f0", "/demo/data/f1"}, {"/demo/data/f2"}};'
    ' InputData = {%s};]',
    # named sequences, several at once, with processors, RAM, GPUs
    '[Executable = "a.sh"; Parameters.A = {1, 2, 4}; Parameters.B = {"x", "y", "z"};'
    ' NumberOfProcessors = %(A)s; MaxRAM = 1000; MinRAM = %(A)s; Arguments = "%(B)s %(A)s";'
    ' NumberOfGPUs = %(A)s; GPUModel = "M%(B)s"; OutputSandbox = {"%(B)s.out"};'
    ' OutputData = {"/demo/out/%(B)s"}; OutputSE = "SE-%(B)s"; OutputPath = "/p/%(B)s";'
    ' StdOutput = "%(B)s.log"; StdError = "%(B)s.err";]',
    '[Executable = "a.sh"; Parameters.lo = {1, 2}; ParameterStart.hi = 4; ParameterStep.hi = 4;'
    ' MinNumberOfProcessors = %(lo)s; MaxNumberOfProcessors = %(hi)s; WholeNode = false;'
    ' JobGroup = "g%(hi)s";]',
    # %j and %% in varying and constant attributes, a nested record of the user's
    '[Executable = "a.sh"; Arguments = "%j %n 100%%"; JobName = "job_%j"; Parameters = 3;'
    ' ParameterStart = 0; ParameterStep = 1; MyAttr = "50%%"; MyRecord = [Key = "k_%j"];'
    ' InputData = "/demo/data/f%s"; ExecutionEnvironment = {"A=%n", "B=%j"};]',
    '[Executable = "%j.sh"; Parameters = {"a", "b"}; Arguments = "%s"; JobGroup = "g%j";'
    ' Site = "S1"; Priority = 3; CPUTime = 600000;]',
    # executable, job type and log level from a parameter
    '[Executable = "%s"; Parameters = {"x.sh", "y.sh"}; JobType = "Test"; Priority = 20;]',
    '[Executable = "a.sh"; Parameters = {"User", "Test"}; JobType = "%s"; LogLevel = "debug";]',
    # a bad value in one child only
    '[Executable = "a.sh"; Parameters = {1, 2, "x"}; Priority = %s;]',
    '[Executable = "a.sh"; Parameters = {"S1", "S2"}; Site = "%s"; BannedSites = "S2";]',
    '[Executable = "a.sh"; Parameters = {"f1", "/other/f2"}; InputData = "/demo/data/%s";]',
    '[Executable = "a.sh"; Parameters = {"ok", "x"}; InputData = "/demo/%s";'
    ' Parameters.b = {"/demo/y", "elsewhere/y"}; InputSandbox = {"LFN:%(b)s"};]',
    '[Executable = "a.sh"; Parameters = {2, 0, 4}; NumberOfProcessors = %s;]',
    '[Executable = "a.sh"; Parameters = {"UsEr", "Test"}; JobType = "%s";]',
    '[Executable = "a.sh"; Parameters = {"A=1", "bad"}; ExecutionEnvironment = {"%s"};]',
    '[Executable = "a.sh"; Parameters = {"n", "' + LONG + 'xyz"}; JobName = "%s";]',
    # too long only once %j is replaced (the second description, in the transaction)
    '[Executable = "a.sh"; Parameters = {"a", "' + LONG[1:] + '"}; JobName = "%s_%j";]',
    # a bad constant part, and a bad varying part checked before it in the first child
    '[Parameters = {"alice", "bob"}; Owner = "%s"; JobName = "x";]',
    '[Parameters = {"bob", "alice"}; Owner = "%s"; JobName = "x";]',
    '[Executable = "a.sh"; Parameters = {"1", "2"}; CPUTime = "%s"; MaxRAM = 0;]',
    # the claims from a parameter, right for every child
    '[Executable = "a.sh"; Parameters = {"demo_user"}; OwnerGroup = "%s"; VirtualOrganization'
    ' = "demo";]',
]
STRICT = JobLimits(max_parametric_jobs=1500, clamp=False)


def _outcome(call: Any) -> Any:
    try:
        return call()
    except InvalidJDLError as exc:
        return ("error", str(exc))


def _full(kids: list[Any], limits: JobLimits) -> list[JobDescription]:
    return [describe_job(kid, owner="alice", owner_group="demo_user", vo="demo", limits=limits)
            for kid in kids]


@pytest.mark.parametrize("limits", [LIMITS, STRICT], ids=["clamp", "strict"])
@pytest.mark.parametrize("text", CORPUS)
def test_descriptions_and_errors_as_describe_job(text: str, limits: JobLimits) -> None:
    kids, varying = expand_with_varying(parse_jdl(text), limits.max_parametric_jobs)
    assert kids == expand_parametric(parse_jdl(text), limits.max_parametric_jobs)
    old = _outcome(lambda: _full(kids, limits))
    new = _outcome(lambda: describe_children(kids, varying, owner="alice",
                                             owner_group="demo_user", vo="demo", limits=limits))
    assert new == old
    if isinstance(old, tuple):
        return
    # once %j is replaced: the second description of each child
    describer = ChildDescriber(kids[0], varying, owner="alice", owner_group="demo_user",
                               vo="demo", limits=limits).with_varying(job_id_attributes(kids[0]))
    with_ids = [substitute_job_id(kid, 100 + index) for index, kid in enumerate(kids)]
    final = _outcome(lambda: [describer.describe(kid) for kid in with_ids])
    assert final == _outcome(lambda: _full(with_ids, limits))
    if isinstance(final, tuple):
        return
    # the processed texts, from one template made of the first child's description
    assert describer.varying_fields is not None
    template = ProcessedTemplate(new[0], describer.varying_fields, describer.varying)
    for index, desc in enumerate(final):
        assert template.text(desc, 100 + index) == processed_jdl(desc, 100 + index).to_text()
    for desc in new:
        assert template.text(desc, 7) == processed_jdl(desc, 7).to_text()


def _other(value: Any, name: str) -> Any:
    """Another value of a description's field (valid or not: only written)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if value is None:
        return "M2" if name == "gpu_model" else 2
    if isinstance(value, str):
        return value + "z" if value else "z"
    if isinstance(value, list):
        return [*value, "Zz"] if len(value) != 1 else []
    if isinstance(value, dict):
        return {**value, "Z": "1"}
    raise AssertionError(name)


@pytest.mark.parametrize("base_jdl", [
    '[Executable = "a"; Site = "S1"; InputData = "/demo/d/f"; Tags = {"t"}; MyAttr = 1;'
    ' NumberOfProcessors = 2; MaxRAM = 100; ExecutionEnvironment = {"A=1"}; GPUModel = "M";'
    ' Arguments = "x"; JobGroup = "g"; OutputPath = "/p"; OutputSE = "SE";'
    ' GridCE = {"c1", "c2"}; Platform = "p"; OutputData = {"o"}; OutputSandbox = {"s"};'
    ' InputSandbox = {"i"}; WholeNode = true; NumberOfGPUs = 1; MinRAM = 10;]',
    '[Executable = "a"; BannedSites = {"S1", "S2"}; MinNumberOfProcessors = 2;'
    ' MaxNumberOfProcessors = 4;]',
])
def test_processed_template_reads_what_processed_jdl_reads(base_jdl: str) -> None:
    """Each field of a description changed alone, in both directions: a template whose only
    varying field is that one writes what processed_jdl writes (its table of what each
    attribute reads is complete)."""
    base = describe_job(parse_jdl(base_jdl), owner="alice", owner_group="demo_user",
                        vo="demo", limits=LIMITS)
    for field in dataclasses.fields(JobDescription):
        if field.name == "extra":
            continue
        other = dataclasses.replace(base, **{
            field.name: _other(getattr(base, field.name), field.name)})
        for sample, desc in ((base, other), (other, base)):
            template = ProcessedTemplate(sample, {field.name}, ())
            assert template.text(desc, 3) == processed_jdl(desc, 3).to_text(), field.name


def test_the_corpus_has_errors_in_one_child_and_runs_steps_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The corpus fails in later children (not only in the first), and the constant steps do
    run once: the extra attributes are the only per-child step of a Site-only template."""
    failing_late = 0
    for text in CORPUS:
        kids = expand_parametric(parse_jdl(text), LIMITS.max_parametric_jobs)
        outcomes = [_outcome(lambda kid=kid: _full([kid], LIMITS)) for kid in kids]
        failing_late += not isinstance(outcomes[0], tuple) and any(
            isinstance(outcome, tuple) for outcome in outcomes)
    assert failing_late >= 8
    kids, varying = expand_with_varying(parse_jdl(
        '[Executable = "a"; Parameters = 50; CPUTime = 3600; Site = "S1"; Arguments = "%s";]'))
    describer = ChildDescriber(kids[0], varying, owner="alice", owner_group="demo_user",
                               vo="demo", limits=LIMITS)
    assert len(describer._steps) == 2  # extra (Parameter, ParameterNumber) and Arguments
    called = []
    monkeypatch.setattr(child_description, "describe_job",
                        lambda *a, **k: called.append(1) or describe_job(*a, **k))
    descs = [describer.describe(k) for k in kids]
    assert descs == _full(kids, LIMITS) and not called
    descs[0].sites.append("S9")  # constant fields are not shared between descriptions
    descs[0].input_sandbox.append("x")
    assert descs[1].sites == ["S1"] and descs[1].input_sandbox == []


def _stored(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        state = _state(engine)
        state["job_rows"] = [tuple(r) for r in conn.execute(
            sa.select(jobs).order_by(jobs.c.job_id))]
        state["jdls"] = [tuple(r) for r in conn.execute(
            sa.select(job_jdls).order_by(job_jdls.c.job_id))]
        state["input_data"] = sorted(tuple(r) for r in conn.execute(sa.select(input_data)))
    return state


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    init_schema(eng, WMS_SCHEMA)
    yield eng
    eng.dispose()


def test_stored_and_confirmed_as_with_full_descriptions(engine: Engine, tmp_path: Any) -> None:
    """``submit`` (children from a template) against ``store`` of the same children each
    described in full: the same errors, results, rows, JDL texts, records, logging rows and
    task queues, after the confirmation too."""
    old = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    init_schema(old, WMS_SCHEMA)
    texts = [*CORPUS, '[Executable = "a"; Arguments = "%s %j"; Parameters = 1001;'
             ' ParameterStart = 0; ParameterStep = 3; Site = "S1";]']
    try:
        ids: dict[str, list[int]] = {"new": [], "old": []}
        for text in texts:
            new_result = _outcome(lambda text=text: submit(engine, text, ALICE, LIMITS, now=NOW))
            old_result = _outcome(lambda text=text: store(
                old, expand_parametric(parse_jdl(text), LIMITS.max_parametric_jobs), ALICE,
                LIMITS, NOW, parametric=True))
            if isinstance(old_result, tuple):
                assert new_result == old_result
                continue
            assert not isinstance(new_result, tuple), (text, new_result)
            assert new_result == old_result
            ids["new"] += new_result.job_ids
            ids["old"] += old_result.job_ids
        assert ids["new"] == ids["old"] and len(ids["new"]) > 1001
        before = _stored(engine)
        assert before == _stored(old)
        assert confirm(engine, ids["new"]) == confirm(old, ids["old"]) == ids["new"]
        after = _stored(engine)
        assert after == _stored(old) and after != before
        processed = [row[2] for row in after["jdls"]]
        assert sum("JobID = " in text for text in processed) == len(ids["new"])
    finally:
        old.dispose()
