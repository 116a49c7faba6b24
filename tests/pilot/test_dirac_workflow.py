"""The pilot's DIRAC workflow reader and runner (``pilot.dirac_workflow``, ``pilot.jobexec``)
on their own: refusals, resolution, DIRAC's Script semantics. The same workflows through the
real DIRAC client and a real pilot are in tests/interop/test_dirac_jobs.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilot.dirac_workflow import (
    MAX_BYTES,
    WorkflowError,
    parse_workflow,
    split_jobexec_arguments,
)
from pilot.jobexec import SAMPLE, main

SRC = Path(__file__).resolve().parents[2] / "src"


def param(name: str, value: str, *, ptype: str = "string", linked: str = "",
          linked_param: str = "") -> str:
    return (f'<Parameter name="{name}" type="{ptype}" linked_module="{linked}" '
            f'linked_parameter="{linked_param}" in="True" out="False" description="">'
            f"<value><![CDATA[{value}]]></value></Parameter>")


def workflow(*steps: tuple[str, str, str], wf_params: str = "",
             module: str = "Script",
             body: str = "from DIRAC.Workflow.Modules.Script import Script") -> str:
    """A workflow as DIRAC's Job API writes it: one StepDefinition per step."""
    parts = ["<Workflow>", "<name>test</name>", wf_params,
             f"<ModuleDefinition><body><![CDATA[\n{body}\n]]></body><type>{module}</type>"
             "</ModuleDefinition>"]
    for i, _ in enumerate(steps, start=1):
        parts.append(f"<StepDefinition><type>ScriptStep{i}</type>"
                     + param("executable", "") + param("arguments", "")
                     + param("applicationLog", "")
                     + f"<ModuleInstance><name>{module}</name><type>{module}</type>"
                     "</ModuleInstance></StepDefinition>")
    for i, (exe, args, log) in enumerate(steps, start=1):
        parts.append(f"<StepInstance><name>RunScriptStep{i}</name><type>ScriptStep{i}</type>"
                     + param("executable", exe) + param("arguments", args)
                     + param("applicationLog", log) + "</StepInstance>")
    parts.append("</Workflow>")
    return "\n".join(parts)


BOMB = ('<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
        + "".join(f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'
                  for i in range(1, 10))
        + ']>\n<Workflow><name>&lol9;</name></Workflow>\n')


def test_steps_resolve_as_dirac_does() -> None:
    wf = parse_workflow(workflow(
        ("/bin/echo", "@{greeting} world", "echo.log"), ("cat", "", "cat.log"),
        wf_params=param("greeting", "hello") + param("arguments", "input.txt")
        + param("JobName", "two")))
    steps = wf.steps()
    assert [s.name for s in steps] == ["RunScriptStep1", "RunScriptStep2"]
    assert steps[0].parameters["arguments"] == "hello world"  # @{} from the workflow
    assert steps[1].parameters["arguments"] == ""              # the runner falls back
    assert steps[1].parameters["STEP_NUMBER"] == "2"
    assert wf.value("JobName") == "two" and wf.unsupported_modules() == []
    assert wf.with_values({"arguments": "x"}).value("arguments") == "x"


def test_linked_parameters_take_the_workflow_value() -> None:
    text = workflow(("x", "", "l")).replace(
        param("arguments", "", ptype="string") + param("applicationLog", "l"),
        param("arguments", "", linked="self", linked_param="wfargs")
        + param("applicationLog", "l"))
    text = text.replace("<name>test</name>", "<name>test</name>" + param("wfargs", "-v"))
    assert parse_workflow(text).steps()[0].parameters["arguments"] == "-v"


@pytest.mark.parametrize("text, message", [
    (BOMB, "document type declarations are refused"),
    ('<!DOCTYPE w SYSTEM "file:///etc/passwd"><Workflow/>', "document type"),
    ("<Workflow><name>&ext;</name></Workflow>", "undefined entity"),
    ("<Workflow><name>x", "not well-formed"),
    ("<Workflow><name><b/></name></Workflow>", "<b> inside <name>"),
    ("<Workflow><StepInstance><StepInstance/></StepInstance></Workflow>", "not allowed"),
    ("<Job/>", "document element is <Job>"),
    ("<Workflow>" + "<x>" * 40 + "</x>" * 40 + "</Workflow>", "nested deeper"),
    ("<Workflow><Parameter type='string'/></Workflow>", "without a name"),
    (workflow(("a", "", "l")).replace("<type>ScriptStep1</type>\n", "<type>Nope</type>\n", 1)
     .replace("<type>ScriptStep1</type>" + param("executable", "a"),
              "<type>Other</type>" + param("executable", "a")), "no StepDefinition"),
])
def test_refusals_are_workflow_errors(text: str, message: str) -> None:
    with pytest.raises(WorkflowError, match=message):
        parse_workflow(text).steps()


def test_too_big_is_refused_before_parsing() -> None:
    with pytest.raises(WorkflowError, match="more than the 1000 accepted"):
        parse_workflow(b"<Workflow>" + b" " * 2000 + b"</Workflow>", max_bytes=1000)
    with pytest.raises(TypeError):
        parse_workflow(123)  # type: ignore[arg-type]
    assert MAX_BYTES >= 1024 * 1024


def test_entity_bomb_is_refused_without_memory() -> None:
    """In a process limited to 256 MB of address space: the refusal is immediate."""
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (256 << 20, 256 << 20))\n"
            f"sys.path.insert(0, {str(SRC)!r})\n"
            "from pilot.dirac_workflow import parse_workflow, WorkflowError\n"
            "try:\n    parse_workflow(sys.stdin.buffer.read())\n"
            "except WorkflowError as exc:\n    print('refused:', exc)\n")
    done = subprocess.run([sys.executable, "-S", "-c", code], input=BOMB.encode(),
                          capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().startswith("refused: document type declarations")


def test_module_bodies_are_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = f"import pathlib; pathlib.Path({str(marker)!r}).write_text('x')"
    for module, body in (("Script", evil), ("GaudiApplication", evil)):
        wf = parse_workflow(workflow(("/bin/true", "", "l"), module=module, body=body))
        assert wf.unsupported_modules() == [("RunScriptStep1", module)]
        (tmp_path / "wf.xml").write_text(workflow(("/bin/true", "", "l"), module=module,
                                                  body=body))
        status = tmp_path / "status"
        assert main(["--status-file", str(status), "wf.xml"], cwd=str(tmp_path)) == 1
        last = json.loads(status.read_text().splitlines()[-1])["ApplicationStatus"]
        assert f"Workflow module {module!r} (step RunScriptStep1) is not supported" in last
    assert not marker.exists()


def test_jobexec_arguments() -> None:
    assert split_jobexec_arguments(["jobDescription.xml", "-o", "/DIRAC/LogLevel=DEBUG",
                                    "-p", "arguments='a b'", "--parameter=x=1=2"]) == (
        "jobDescription.xml", {"LogLevel": "DEBUG"}, {"arguments": "'a b'", "x": "1=2"})
    for bad in ([], ["a.xml", "b.xml"], ["a.xml", "-p"], ["a.xml", "-p", "novalue"]):
        with pytest.raises(WorkflowError):
            split_jobexec_arguments(bad)


def test_script_steps_in_order_with_dirac_logs_and_statuses(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "step2_x.sh"   # a sandbox script, not executable yet
    script.write_text("#!/bin/sh\necho out-$1\necho err-$1 >&2\nexit 3\n")
    (tmp_path / "input.txt").write_text("from the sandbox\n")
    (tmp_path / "wf.xml").write_text(workflow(
        ("cat", "input.txt", "cat.log"), ("step2_x.sh", "two", "s2.log"),
        ("/bin/echo", "never", "never.log"), wf_params=param("LogLevel", "WARN")))
    status = tmp_path / "status"
    code = main(["--status-file", str(status), "wf.xml"], cwd=str(tmp_path))
    assert code == 3
    out, err = capfd.readouterr()
    assert "from the sandbox\n" in out and "out-two\n" in out and "never" not in out
    assert "err-two\n" in err
    assert " INFO: " not in out  # LogLevel WARN from the workflow
    assert (tmp_path / "cat.log").read_text() == (
        "<<<<<<<<<< cat Standard Output >>>>>>>>>>\n\nfrom the sandbox\n ")
    assert (tmp_path / "s2.log").read_text() == (
        "<<<<<<<<<< step2_x.sh Standard Output >>>>>>>>>>\n\nout-two\n "
        "<<<<<<<<<< step2_x.sh Standard Error >>>>>>>>>>\n\nerr-two\n ")
    assert not (tmp_path / "never.log").exists()
    assert os.access(script, os.X_OK)
    statuses = [json.loads(line)["ApplicationStatus"] for line in status.read_text().split("\n")
                if line]
    assert statuses == ["Executing RunScriptStep1", "cat successful",
                        "Executing RunScriptStep2", "'step2' Exited With Status 3"]


def test_missing_executable_and_bad_xml(tmp_path: Path) -> None:
    (tmp_path / "wf.xml").write_text(workflow(("no-such-command-x", "", "l.log")))
    status = tmp_path / "status"
    assert main(["--status-file", str(status), "wf.xml"], cwd=str(tmp_path)) == 1000 & 0xFF
    assert "'no-such-command-x' Exited With Status 1000" in status.read_text()
    (tmp_path / "bomb.xml").write_text(BOMB)
    assert main(["--status-file", str(status), "bomb.xml"], cwd=str(tmp_path)) == 1
    assert "Invalid workflow description: document type" in status.read_text()
    assert main(["--status-file", str(status), "absent.xml"], cwd=str(tmp_path)) == 1


def test_sample_runs_with_parameters(tmp_path: Path,
                                     capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "wf.xml").write_text(SAMPLE.format(exe="echo", args="", log="e.log"))
    assert main(["wf.xml", "-p", "arguments=from -p"], cwd=str(tmp_path)) == 0
    assert "from -p\n" in capfd.readouterr().out


# -- the parser's contract, for any input -------------------------------------------------------

_PIECES = st.sampled_from([
    "<Workflow>", "</Workflow>", "<StepInstance>", "</StepInstance>", "<StepDefinition>",
    "</StepDefinition>", "<ModuleInstance>", "</ModuleInstance>", "<ModuleDefinition>",
    "</ModuleDefinition>", "<name>", "</name>", "<type>", "</type>", "<value>", "</value>",
    "<body>", "</body>", '<Parameter name="p" type="string">', "</Parameter>",
    "<![CDATA[", "]]>", "@{p}", "&amp;", "&lt;", "&x;", "<!DOCTYPE w>", "<?xml version='1.0'?>",
    "Script", "ScriptStep1", "x", " ", "\n"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.lists(_PIECES, max_size=40).map("".join)))
def test_any_input_is_a_workflow_or_a_workflow_error(data: bytes | str) -> None:
    """The contract a fuzzer relies on: a Workflow whose steps resolve, or WorkflowError."""
    try:
        wf = parse_workflow(data)
        wf.steps()
        wf.unsupported_modules()
    except WorkflowError:
        pass
