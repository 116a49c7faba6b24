"""Validate a JDL as a submission would, without storing anything, with positions.

Syntax errors come from the JDL parser with their line and column; errors of the job
description name an attribute, which is then located in the text (the line and column where
``<Attribute> =`` starts), so the launchpad can mark the place.

Example::

    >>> from wms.logic.job_description import JobLimits
    >>> [error] = check_jdl('[\\n  Executable = "/bin/echo";\\n  Arguments = "a" "b";\\n]',
    ...     owner="alice", group="demo_user", vo="demo", limits=JobLimits())["Errors"]
    >>> error["line"], error["column"]
    (3, 19)
    >>> check_jdl('[\\n  Executable = "run.sh";\\n  CPUTime = "abc";\\n]', owner="alice",
    ...           group="demo_user", vo="demo", limits=JobLimits())["Errors"][0]["line"]
    3
    >>> check_jdl('Executable = "x"; Parameters = 3; Arguments = "%s"', owner="alice",
    ...           group="demo_user", vo="demo", limits=JobLimits())["Jobs"]
    3
"""

from __future__ import annotations

import re
from typing import Any

from core.exceptions import InvalidJDLError, PilotWMSError
from wms.logic.child_description import ChildDescriber
from wms.logic.jdl import parse_jdl
from wms.logic.job_description import JobLimits, describe_job
from wms.logic.parametric import expand_with_varying, is_parametric

_POSITION = re.compile(r"^line (\d+), column (\d+): (.*)$", re.S)
_ATTRIBUTE = re.compile(r"(?:attribute|Attribute) '([A-Za-z_][A-Za-z0-9_.]*)'")
_LEADING = re.compile(r"^'?([A-Za-z_][A-Za-z0-9_.]*)'? ")


def _locate(text: str, attribute: str) -> tuple[int, int] | None:
    """(line, column), 1-based, where ``attribute =`` is written (case-insensitive)."""
    pattern = re.compile(rf"(?<![A-Za-z0-9_.]){re.escape(attribute)}\s*=", re.I)
    found = pattern.search(text)
    if found is None:
        return None
    before = text[:found.start()]
    line = before.count("\n") + 1
    return line, found.start() - (before.rfind("\n") + 1) + 1


def _error(text: str, message: str) -> dict[str, Any]:
    positioned = _POSITION.match(message)
    if positioned:
        return {"line": int(positioned[1]), "column": int(positioned[2]),
                "message": positioned[3]}
    named = _ATTRIBUTE.search(message) or _LEADING.match(message)
    where = _locate(text, named[1]) if named else None
    if where is None:
        return {"line": None, "column": None, "message": message}
    return {"line": where[0], "column": where[1], "message": message}


def check_jdl(text: str, *, owner: str, group: str, vo: str, limits: JobLimits
              ) -> dict[str, Any]:
    """``{"Jobs": n, "Errors": [{line, column, message}]}``; no errors means submittable.

    The children of a parametric JDL are described as a submission describes them: the
    attributes they share once, the varying ones per child (same errors, a fraction of the
    time for thousands of children)."""
    try:
        jdl = parse_jdl(text)
        if is_parametric(jdl):
            children, varying = expand_with_varying(jdl, limits.max_parametric_jobs)
            describer = ChildDescriber(children[0], varying, owner=owner, owner_group=group,
                                       vo=vo, limits=limits)
            for child in children:
                describer.describe(child)
        else:
            children = [jdl]
            describe_job(jdl, owner=owner, owner_group=group, vo=vo, limits=limits)
    except InvalidJDLError as exc:
        return {"Jobs": 0, "Errors": [_error(text, exc.message)]}
    except PilotWMSError as exc:
        return {"Jobs": 0, "Errors": [{"line": None, "column": None, "message": exc.message}]}
    return {"Jobs": len(children), "Errors": []}
