"""Describing the children of a parametric JDL from one template (issue 17).

The children differ only in the attributes a parameter placeholder was put into (and
``Parameter*``; :func:`wms.logic.parametric.expand_with_varying` says which).
:func:`~wms.logic.job_description.describe_job` runs in steps, each reading a known set of
attributes; here the steps that read only constant attributes run once, the others per child.
The result is what ``describe_job`` gives for each child; on any error the child is described
in full, so the error is exactly the one ``describe_job`` raises.

>>> from wms.logic.jdl import parse_jdl
>>> from wms.logic.parametric import expand_with_varying
>>> kids, varying = expand_with_varying(parse_jdl(
...     'Executable = "x"; Parameters = 3; ParameterStart = 4; ParameterStep = 1;'
...     'Priority = %s'))
>>> [d.priority for d in describe_children(kids, varying, owner="u", owner_group="g", vo="v")]
[4, 5, 6]
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import fields as dataclass_fields
from typing import Any

from core.exceptions import InvalidJDLError
from wms.logic.jdl import JDL
from wms.logic.job_description import (
    _KNOWN,
    _STEPS,
    DEFAULT_LIMITS,
    JobDescription,
    JobLimits,
    _Context,
    _Fields,
    _Step,
    describe_job,
)
from wms.logic.parametric import is_parametric

__all__ = ["ChildDescriber", "describe_children"]


class ChildDescriber:
    """:func:`describe_job` for JDLs that hold the same attributes with the same values except
    the lower-case ``varying`` ones (the children of one parametric JDL: see
    :func:`wms.logic.parametric.expand_with_varying`). The steps that read no varying
    attribute run once, on ``reference``; the others for each child.

    A child's description is the one :func:`describe_job` gives, errors included: when any
    step fails (once or for this child), the child is described in full, which raises the
    error :func:`describe_job` raises for it.

    >>> from wms.logic.parametric import expand_with_varying
    >>> from wms.logic.jdl import parse_jdl
    >>> kids, varying = expand_with_varying(parse_jdl(
    ...     'Executable = "x"; Parameters = {"S1", "S2"}; Site = "%s"; CPUTime = 5'))
    >>> describer = ChildDescriber(kids[0], varying, owner="u", owner_group="g", vo="v")
    >>> [(d.sites, d.cpu_time) for d in map(describer.describe, kids)]
    [(['S1'], 100), (['S2'], 100)]
    >>> sorted(varying)
    ['parameter', 'parameternumber', 'site']
    """

    __slots__ = ("_context", "_reference", "_parts", "_constant", "_mutable", "_steps",
                 "varying")

    def __init__(self, reference: JDL, varying: Collection[str], *, owner: str,
                 owner_group: str, vo: str, limits: JobLimits = DEFAULT_LIMITS,
                 _parts: list[tuple[frozenset[str] | None, _Fields]] | None = None) -> None:
        self._context = _Context(owner, owner_group, vo, limits)
        self._reference = reference
        self.varying = frozenset(varying)
        others = any(key not in _KNOWN for key in self.varying)
        steps: list[_Step] = []
        done: list[tuple[frozenset[str] | None, _Fields]] = []
        parts: list[tuple[frozenset[str] | None, _Fields]] | None = done
        try:
            if is_parametric(reference) or any(
                    key == "parameters" or key.startswith("parameters.") for key in varying):
                raise InvalidJDLError("parametric")  # describe_job's own error, per child
            known = dict(_parts or [])
            for attributes, step in _STEPS:
                if others if attributes is None else not attributes.isdisjoint(self.varying):
                    steps.append(step)
                elif _parts is not None:
                    done.append((attributes, known[attributes]))
                else:
                    done.append((attributes, step(reference, self._context)))
        except InvalidJDLError:
            parts = None  # a constant step fails: every child in full
        self._parts = parts
        self._steps = steps
        self._constant: _Fields | None = None
        #: the constant fields holding a list, dict or record: copied for each child, so that
        #: no two descriptions share one
        self._mutable: list[tuple[str, Any]] = []
        if parts is not None:
            self._constant = {"owner": owner, "owner_group": owner_group, "vo": vo}
            for _attributes, fields in parts:
                self._constant.update(fields)
            self._mutable = [(name, value) for name, value in self._constant.items()
                             if isinstance(value, (list, dict, JDL))]

    @property
    def varying_fields(self) -> frozenset[str] | None:
        """The fields of :class:`JobDescription` made for each child; None when every child
        is described in full."""
        if self._constant is None:
            return None
        return frozenset(f.name for f in dataclass_fields(JobDescription)) - self._constant.keys()

    def with_varying(self, more: Collection[str]) -> ChildDescriber:
        """The describer of the same children with the ``more`` attributes varying too (e.g.
        after :func:`~wms.logic.parametric.substitute_job_id`); the constant steps are not
        run again."""
        c = self._context
        return ChildDescriber(self._reference, self.varying | frozenset(more), owner=c.owner,
                              owner_group=c.owner_group, vo=c.vo, limits=c.limits,
                              _parts=self._parts)

    def describe(self, child: JDL) -> JobDescription:
        """What ``describe_job(child, ...)`` gives (or raises)."""
        c = self._context
        constant = self._constant
        if constant is not None:
            fields = constant.copy()
            for name, value in self._mutable:
                fields[name] = value.copy()
            try:
                for step in self._steps:
                    fields.update(step(child, c))
            except InvalidJDLError:
                pass  # described in full below: its first error, as describe_job raises it
            else:
                return JobDescription(**fields)
        return describe_job(child, owner=c.owner, owner_group=c.owner_group, vo=c.vo,
                            limits=c.limits)


def describe_children(children: Sequence[JDL], varying: Collection[str], *, owner: str,
                      owner_group: str, vo: str, limits: JobLimits = DEFAULT_LIMITS
                      ) -> list[JobDescription]:
    """``[describe_job(child, ...) for child in children]`` for children that differ only in
    the ``varying`` attributes (see :class:`ChildDescriber`): the first bad child raises."""
    if not children:
        return []
    describer = ChildDescriber(children[0], varying, owner=owner, owner_group=owner_group,
                               vo=vo, limits=limits)
    return [describer.describe(child) for child in children]
