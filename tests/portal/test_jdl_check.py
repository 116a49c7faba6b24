"""The launchpad's JDL check (portal.logic.jdl_check) gives, for parametric JDLs, what a full
description of every child gives: the same count, the same first error at the same place."""

from __future__ import annotations

from typing import Any

import pytest

from core.exceptions import InvalidJDLError, PilotWMSError
from portal.logic.jdl_check import _error, check_jdl
from wms.logic.jdl import parse_jdl
from wms.logic.job_description import JobLimits, describe_job
from wms.logic.parametric import expand_parametric, is_parametric

LIMITS = JobLimits()
WHO = {"owner": "alice", "group": "demo_user", "vo": "demo"}

CASES = [
    'Executable = "x"; Parameters = 3; Arguments = "%s"',
    'Executable = "x"; Parameters = {"S1", "S2"}; Site = "%s"; CPUTime = 5',
    # the second child's CPU time is not a number: the error names CPUTime
    'Executable = "x";\nParameters = {"5", "abc"};\nCPUTime = "%s";\n',
    # CPU times above the maximum are clipped to it, not refused
    'Executable = "x";\nParameters = {"10", "20", "999999999999"};\nCPUTime = "%s";\n',
    'Executable = "x"; Parameters = 4; ParameterStart = 1; ParameterStep = 2;'
    ' Arguments = "%s %n"; JobName = "j_%n"',
    'Executable = "x"; Parameters = {"a", "b"}; Priority = "%s"',
    'Executable = "x"; Parameters = {"1", "2"}; Tags = {"%s"}; NumberOfProcessors = 1',
    'Executable = "x"; Parameters.A = {"1", "2"}; Parameters.B = {"x", "y"};'
    ' Arguments = "%(A)s %(B)s"',
]


def full_check(text: str) -> dict[str, Any]:
    """The check as it was: every child described from scratch by describe_job."""
    try:
        jdl = parse_jdl(text)
        children = (expand_parametric(jdl, LIMITS.max_parametric_jobs) if is_parametric(jdl)
                    else [jdl])
        for child in children:
            describe_job(child, owner=WHO["owner"], owner_group=WHO["group"], vo=WHO["vo"],
                         limits=LIMITS)
    except InvalidJDLError as exc:
        return {"Jobs": 0, "Errors": [_error(text, exc.message)]}
    except PilotWMSError as exc:
        return {"Jobs": 0, "Errors": [{"line": None, "column": None, "message": exc.message}]}
    return {"Jobs": len(children), "Errors": []}


@pytest.mark.parametrize("text", CASES)
def test_parametric_check_matches_full_description(text: str) -> None:
    assert check_jdl(text, limits=LIMITS, **WHO) == full_check(text)


def test_cases_include_errors_and_successes() -> None:
    results = [check_jdl(text, limits=LIMITS, **WHO) for text in CASES]
    assert any(r["Errors"] for r in results)
    assert any(r["Jobs"] > 1 for r in results)
    errors = check_jdl(CASES[2], limits=LIMITS, **WHO)["Errors"]
    assert errors and errors[0]["line"] == 3 and "CPUTime" in errors[0]["message"]
