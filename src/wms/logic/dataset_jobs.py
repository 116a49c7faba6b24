"""Jobs over a dataset, and restarted jobs: JDLs the server makes from a user's one.

**A job on a dataset** (``dsub --dataset /demo/datasets/run42 --files-per-job 10 job.jdl``,
or ``--query "run=42 kind=raw"``): the files are grouped and each group becomes one job with
``InputData`` set, placed by data-driven scheduling like any job with input data.

The grouping sits behind one narrow interface, :data:`Grouping` (``(files, size) -> groups``,
files given with the SEs holding them). :func:`group_by_location` is DIRAC's *Standard*
transformation plugin's rule: files with the same replica locations are grouped together
(so a job's inputs can all be at one site), in LFN order, ``size`` per group, the last group
of a location possibly smaller. When the transformation system's Standard plugin is
available, a :data:`Grouping` that delegates to it replaces this function without touching
the callers.

**Restart** (ECaccess ``ecaccess-job-restart``): :func:`restart_jdl` is the finished job's
original JDL (its input sandbox included) without the ``Event`` subscription; the new job
carries the job parameter ``RestartOf`` and the old one ``RestartedAs``.

Example::

    >>> files = {f"/vo/d/f{i}": ["DISK-A"] for i in range(5)}
    >>> files["/vo/d/g"] = ["DISK-B"]
    >>> group_by_location(files, 2)
    [['/vo/d/f0', '/vo/d/f1'], ['/vo/d/f2', '/vo/d/f3'], ['/vo/d/f4'], ['/vo/d/g']]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from core.exceptions import InvalidArgumentError, InvalidJDLError
from wms.logic.jdl import JDL, parse_jdl
from wms.logic.parametric import is_parametric

#: ``(lfn -> SEs holding it, files per group) -> groups of LFNs``
Grouping = Callable[[Mapping[str, Sequence[str]], int], list[list[str]]]


def group_by_location(files: Mapping[str, Sequence[str]], size: int) -> list[list[str]]:
    """Groups of at most ``size`` LFNs sharing the same replica locations (DIRAC's Standard
    plugin rule); locations in order of their first LFN, LFNs sorted."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InvalidArgumentError(f"files per job must be a positive integer, not {size!r}")
    by_location: dict[tuple[str, ...], list[str]] = {}
    for lfn in sorted(files):
        by_location.setdefault(tuple(sorted(set(files[lfn]))), []).append(lfn)
    groups: list[list[str]] = []
    for lfns in by_location.values():
        groups += [lfns[i:i + size] for i in range(0, len(lfns), size)]
    return groups


def dataset_jdls(template: JDL, groups: Sequence[Sequence[str]]) -> list[JDL]:
    """One JDL per group: the template with ``InputData`` set to the group."""
    out = []
    for group in groups:
        jdl = template.copy()
        jdl["InputData"] = [f"LFN:{lfn}" if not lfn.startswith("LFN:") else lfn
                            for lfn in group]
        out.append(jdl)
    return out


def check_template(jdl_text: str) -> JDL:
    """The user's JDL for a dataset: one job, no InputData of its own, no event."""
    jdl = parse_jdl(jdl_text)
    if is_parametric(jdl):
        raise InvalidJDLError("a job on a dataset cannot be parametric: each group of files "
                              "is one job")
    if "InputData" in jdl:
        raise InvalidJDLError("a job on a dataset gets its InputData from the dataset: "
                              "remove InputData")
    if "Event" in jdl:
        raise InvalidJDLError("a job on a dataset cannot subscribe to an event")
    return jdl


def restart_jdl(original: str) -> JDL:
    """The JDL of a restarted job: the original one, without an event subscription."""
    jdl = parse_jdl(original)
    jdl.pop("Event", None)
    return jdl
