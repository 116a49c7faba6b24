"""DIRAC itself as the oracle: the installed DIRAC 9 client's own code, not tables typed by hand.

* the job state machine, pair by pair against ``JobsStateMachine`` (the deliberate differences
  are exactly :data:`wms.logic.states.DIRAC_DIFFERENCES`), the final sets, the minor statuses;
* JDL: what DIRAC's ``ClassAd`` reads back from the JDLs pilotwms writes (our ``Job`` API, dsub,
  our writer), attribute by attribute, and DIRAC's re-rendering (``asJDL``, what its
  ``WMSClient`` sends us) parsed back by us to the same job;
* the workflow XML that DIRAC's ``Job`` API writes, read by the pilot's reader and by DIRAC's
  own workflow reader: the same steps and parameter values.
"""

from __future__ import annotations

import argparse
import re
import shlex
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from pilot.dirac_workflow import parse_workflow, split_jobexec_arguments
from tests.interop.dirac_env import DiracClient
from tests.interop.test_dirac_client import dirac_python  # noqa: F401 - fixture
from tests.support.credentials import Creds
from wms.cli.dsub import build_jdl, parser
from wms.dirac_api import Job
from wms.logic.jdl import JDL, Expr, format_jdl, parse_jdl
from wms.logic.states import (
    DIRAC_DIFFERENCES,
    DIRAC_STATUSES,
    FINAL,
    REALLY_FINAL,
    MinorStatus,
    allowed,
)
from wms.service.job_monitoring import heartbeat_row

pytestmark = pytest.mark.dirac


@pytest.fixture(scope="module")
def offline(dirac_python: str,  # noqa: F811 - fixture
            creds: Creds, tmp_path_factory: pytest.TempPathFactory) -> DiracClient:
    """DIRAC with its minimal configuration: for checks that need no server."""
    return DiracClient(dirac_python, "https://127.0.0.1:1", None,
                       creds.proxy(creds.alice, group="demo_user"), creds.ca_dir,
                       tmp_path_factory.mktemp("dirac-offline"))


def test_state_machine_pair_by_pair(offline: DiracClient) -> None:
    dirac = offline.script("dump_states.py")
    assert dirac["states"] == [str(s) for s in DIRAC_STATUSES]  # ours adds Standby
    assert sorted(dirac["final"]) == sorted(FINAL) and dirac["really_final"] == ["Deleted"]
    assert set(REALLY_FINAL) == {"Deleted"}
    differences = {}
    for current in dirac["states"]:
        for new in dirac["states"]:
            theirs = dirac["next"][current][new] == new
            if theirs != allowed(current, new):
                differences[(current, new)] = (theirs, allowed(current, new))
    assert set(differences) == {p for p in DIRAC_DIFFERENCES if "Standby" not in p}, differences
    assert all(theirs and not ours for theirs, ours in differences.values())
    # DIRAC's minor statuses, word for word, wherever we name the same one
    ours = {name: value for name, value in vars(MinorStatus).items() if name.isupper()}
    shared = set(ours) & set(dirac["minor"])
    assert len(shared) >= 25, shared
    assert {n: ours[n] for n in shared} == {n: dirac["minor"][n] for n in shared}


def _job_api_jdls(tmp_path: Path) -> list[str]:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    one = Job()
    one.setName("oracle-1")
    one.setExecutable("/bin/echo", arguments="hello world")
    one.setCPUTime(3600)
    one.setDestination(["LCG.CERN.cern", "LCG.IN2P3.fr"])
    one.setBannedSites("LCG.Bad.org")
    one.setTag(["GPU", "8Processors"])
    one.setInputSandbox([str(script), "data.txt"])
    one.setOutputSandbox(["out.txt", "*.log"])
    one.setPriority(3)
    one.setJobGroup("group-a")
    one.setLogLevel("DEBUG")
    one.setPlatform("x86_64-el9")
    two = Job()
    two.setExecutable(str(script), logFile="step1.log")
    two.setExecutable("/bin/ls", arguments="-l")
    two.setInputData(["/demo/user/a/alice/in1", "/demo/user/a/alice/in2"])
    two.setOutputData(["result.root"], outputSE="DIRAC-USER", outputPath="/run1")
    two.setNumberOfProcessors(4)
    three = Job()
    three.setExecutable("/bin/echo", arguments="%(p)s")
    three.setParameterSequence("p", ["a", "b", "c"])
    return [j._toJDL() for j in (one, two, three)]


def _dsub_jdls(tmp_path: Path) -> list[str]:
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n#JDL Tags = GPU\necho hi\n")
    argvs = [
        ["-N", "dsub-1", "--CPUTime", "600", "--Site", "LCG.A.org,LCG.B.org",
         "--OutputSandbox", "a.txt,b.txt", "/bin/echo", "hello", "world"],
        ["--InputData", "/demo/f1,/demo/f2", "--Priority", "2", "--Tag", "A,B", str(script)],
        ["-J", '[ JobName = "from-jdl"; Requirements = other.Site == "LCG.X.org"; ]',
         "/bin/sh", "-c", "exit 3"],
    ]
    jdls = []
    for argv in argvs:
        ns: argparse.Namespace = parser().parse_args(argv)
        jdls.append(build_jdl(ns, None, []).to_text())
    return jdls


EDGE = [
    '[ Executable = "/bin/echo"; Arguments = "a b"; CPUTime = 86400; Priority = -1; ]',
    '[ Executable = "x"; MaxRAM = 2.5; WholeNode = true; Requirements = (other.A == 1)'
    ' && (other.B > 2); Site = LCG.CERN.cern; ]',
    '[ Executable = "x"; Parameters = 3; ParameterStart = 1; ParameterStep = 2;'
    ' Arguments = "%n %s"; ]',
    '[ Executable = "x"; InputSandbox = {"SB:ProductionSandboxSE|/SandBox/a/b.tar.bz2",'
    ' "LFN:/demo/f"}; OutputSandbox = {}; ]',
]


def _compare(ours: JDL, theirs: dict[str, Any]) -> list[str]:
    """Where DIRAC's ClassAd reads another value than ours (empty: none)."""
    problems = []
    if sorted(ours) != sorted(theirs["names"]):
        problems.append(f"names: ours {sorted(ours)} DIRAC {sorted(theirs['names'])}")
    for name, value in ours.items():
        if name not in theirs["names"]:
            continue
        if isinstance(value, list):
            got, want = theirs["list"][name], [str(v) for v in value]
        elif isinstance(value, bool):
            got, want = theirs["bool"][name], value
        elif isinstance(value, int):
            got, want = theirs["int"][name], value
        elif isinstance(value, float):
            got, want = theirs["float"][name], value
        elif isinstance(value, Expr):
            got = re.sub(r"\s+", " ", theirs["expr"][name]).strip()
            want = re.sub(r"\s+", " ", str(value)).strip()
        else:
            got, want = theirs["string"][name], value
        if got != want:
            problems.append(f"{name}: ours {want!r} DIRAC {got!r}")
    return problems


def test_dirac_classad_reads_our_jdls(offline: DiracClient, tmp_path: Path) -> None:
    texts = [*_job_api_jdls(tmp_path), *_dsub_jdls(tmp_path),
             *(format_jdl(parse_jdl(t)) for t in EDGE)]
    results = offline.script("classad_read.py", {"jdls": texts})
    assert len(results) == len(texts) >= 10
    for text, theirs in zip(texts, results, strict=True):
        ours = parse_jdl(text)
        assert theirs["ok"], text
        assert _compare(ours, theirs) == [], text
        # DIRAC's WMSClient re-renders with asJDL before sending: we read the same job
        assert parse_jdl(theirs["asJDL"]) == ours, (text, theirs["asJDL"])


def test_job_api_workflow_read_as_dirac_reads_it(offline: DiracClient) -> None:
    texts = offline.script("workflow_xml.py")
    assert len(texts) >= 3
    for case in texts:
        ours = parse_workflow(case["xml"])
        assert [s.name for s in ours.steps()] == [s["name"] for s in case["steps"]]
        for step, theirs in zip(ours.steps(), case["steps"], strict=True):
            assert step.module_types == tuple(theirs["modules"])
            for name, value in theirs["parameters"].items():
                assert step.parameters.get(name, "") == value, (case["name"], step.name, name)
        assert ours.unsupported_modules() == [tuple(m) for m in case["unsupported"]]
        for name, value in case["workflow"].items():
            assert ours.value(name) == value, (case["name"], name)
        # the JDL beside it: what the pilot's wrapper recognises and splits
        jdl = parse_jdl(case["jdl"])
        assert jdl.get_str("Executable") == "dirac-jobexec"
        xml_name, options, params = split_jobexec_arguments(
            shlex.split(jdl.get_str("Arguments")))
        assert xml_name == "jobDescription.xml"
        assert options["LogLevel"] == ours.value("LogLevel")


def test_heartbeat_data_as_diracs_job_db_answers(offline: DiracClient) -> None:
    """``getJobHeartBeatData``: DIRAC's ``JobDB.getHeartBeatData`` run on the same stored
    values gives the same rows as our service's encoding (one decimal, the time as text)."""
    when = datetime(2026, 12, 4, 4, 5, 6, tzinfo=timezone.utc)
    stored = [("CPUConsumed", "12.25"), ("RSS", "204800"), ("LoadAverage", "0.05"),
              ("WallClockTime", '"3"'), ("MemoryUsed", "-1.5e3"), ("Vsize", "7")]
    theirs = offline.script("heartbeat_rows.py", [
        [name, value, when.strftime("%Y-%m-%d %H:%M:%S")] for name, value in stored])
    ours = [list(heartbeat_row(name, value, when)) for name, value in stored]
    assert ours == theirs
