"""The processed JDL texts of parametric children from one template (issue 17).

``processed_jdl(desc, job_id).to_text()`` writes every attribute of a child, most of them the
same in every child. :class:`ProcessedTemplate` writes the attributes that read only constant
fields of the description once, and for each child only ``JobID`` and the attributes that
read a varying field (as :class:`~wms.logic.child_description.ChildDescriber` tells them),
then sorts the attributes by name as :meth:`~wms.logic.jdl.JDL.to_text` does: the same text.

>>> from wms.logic.jdl import parse_jdl
>>> from wms.logic.child_description import ChildDescriber
>>> from wms.logic.job_description import processed_jdl
>>> from wms.logic.parametric import expand_with_varying
>>> kids, varying = expand_with_varying(parse_jdl(
...     'Executable = "x"; Parameters = {"S1", "S2"}; Site = "%s"; CPUTime = 500'))
>>> describer = ChildDescriber(kids[0], varying, owner="u", owner_group="g", vo="v")
>>> descs = [describer.describe(kid) for kid in kids]
>>> template = ProcessedTemplate(descs[0], describer.varying_fields, describer.varying)
>>> template.text(descs[1], 8) == processed_jdl(descs[1], 8).to_text()
True
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from operator import itemgetter
from typing import TypeAlias

from wms.logic.jdl import JDL, JDLValue, format_top_attribute
from wms.logic.job_description import JobDescription

__all__ = ["ProcessedTemplate"]

_Value: TypeAlias = "Callable[[JobDescription], JDLValue | None]"


def _list_or_none(items: list[str]) -> JDLValue | None:
    return list(items) if items else None


def _one_or_list(items: list[str]) -> JDLValue | None:
    if not items:
        return None
    return items[0] if len(items) == 1 else list(items)


_NUMBERS = ("number_of_processors", "min_number_of_processors", "max_number_of_processors",
            "max_ram", "min_ram", "number_of_gpus")
_NUMBER_NAMES = ("NumberOfProcessors", "MinNumberOfProcessors", "MaxNumberOfProcessors",
                 "MaxRAM", "MinRAM", "NumberOfGPUs")


def _requirements(desc: JobDescription) -> JDLValue:
    required: list[tuple[str, JDLValue]] = [
        ("Owner", desc.owner), ("OwnerGroup", desc.owner_group),
        ("VirtualOrganization", desc.vo), ("UserPriority", desc.priority),
        ("CPUTime", desc.cpu_time), ("JobTypes", [desc.job_type]),
    ]
    for name, items in (("Sites", desc.sites), ("BannedSites", desc.banned_sites),
                        ("GridCEs", desc.grid_ces), ("Platforms", desc.platforms),
                        ("Tags", desc.requirement_tags)):
        if items:
            required.append((name, list(items)))
    for name, field in zip(_NUMBER_NAMES, _NUMBERS, strict=True):
        number = getattr(desc, field)
        if number is not None:
            required.append((name, number))
    return JDL._from_checked(required)


def _number(field: str) -> _Value:
    return lambda desc: getattr(desc, field)


#: the attributes of :func:`~wms.logic.job_description.processed_jdl` besides the user's
#: others and JobID: (name, the description's fields its value reads, the value or None
#: when it is left out)
ATTRIBUTES: tuple[tuple[str, frozenset[str], _Value], ...] = (
    ("Owner", frozenset({"owner"}), lambda d: d.owner),
    ("OwnerGroup", frozenset({"owner_group"}), lambda d: d.owner_group),
    ("VirtualOrganization", frozenset({"vo"}), lambda d: d.vo),
    ("Executable", frozenset({"executable"}), lambda d: d.executable),
    ("Arguments", frozenset({"arguments"}), lambda d: d.arguments or None),
    ("StdOutput", frozenset({"std_output"}), lambda d: d.std_output),
    ("StdError", frozenset({"std_error"}), lambda d: d.std_error),
    ("JobName", frozenset({"job_name"}), lambda d: d.job_name),
    ("JobGroup", frozenset({"job_group"}), lambda d: d.job_group or None),
    ("JobType", frozenset({"job_type"}), lambda d: d.job_type),
    ("Priority", frozenset({"priority"}), lambda d: d.priority),
    ("LogLevel", frozenset({"log_level"}), lambda d: d.log_level),
    ("CPUTime", frozenset({"cpu_time"}), lambda d: d.cpu_time),
    ("InputSandbox", frozenset({"input_sandbox"}), lambda d: _list_or_none(d.input_sandbox)),
    ("OutputSandbox", frozenset({"output_sandbox"}),
     lambda d: _list_or_none(d.output_sandbox)),
    ("InputData", frozenset({"input_data"}), lambda d: _list_or_none(d.input_data)),
    ("OutputData", frozenset({"output_data"}), lambda d: _list_or_none(d.output_data)),
    ("BannedSites", frozenset({"banned_sites"}), lambda d: _list_or_none(d.banned_sites)),
    ("Tags", frozenset({"tags"}), lambda d: _list_or_none(d.tags)),
    ("OutputSE", frozenset({"output_se"}), lambda d: _one_or_list(d.output_se)),
    ("Site", frozenset({"sites"}), lambda d: _one_or_list(d.sites)),
    ("GridCE", frozenset({"grid_ces"}), lambda d: _one_or_list(d.grid_ces)),
    ("Platform", frozenset({"platforms"}), lambda d: _one_or_list(d.platforms)),
    ("OutputPath", frozenset({"output_path"}), lambda d: d.output_path or None),
    *((name, frozenset({field}), _number(field))
      for name, field in zip(_NUMBER_NAMES, _NUMBERS, strict=True)),
    ("GPUModel", frozenset({"gpu_model"}), lambda d: d.gpu_model or None),
    ("WholeNode", frozenset({"whole_node"}), lambda d: True if d.whole_node else None),
    ("ExecutionEnvironment", frozenset({"execution_environment"}),
     lambda d: [f"{k}={v}" for k, v in d.execution_environment.items()]
     if d.execution_environment else None),
    ("JobRequirements", frozenset({
        "owner", "owner_group", "vo", "priority", "cpu_time", "job_type", "sites",
        "banned_sites", "grid_ces", "platforms", "tags", "whole_node", "gpu_model",
        *_NUMBERS}), _requirements),
)

_first = itemgetter(0)


class ProcessedTemplate:
    """``processed_jdl(desc, job_id).to_text()`` for descriptions that differ from ``sample``
    only in the ``varying_fields`` (and, in ``extra``, in the lower-case ``varying``
    attributes): see :class:`~wms.logic.child_description.ChildDescriber`."""

    __slots__ = ("_constant", "_varying", "_extra_keys", "_extra_size")

    def __init__(self, sample: JobDescription, varying_fields: Collection[str],
                 varying: Collection[str]) -> None:
        fields = frozenset(varying_fields)
        extra = sample.extra
        self._extra_size = len(extra)
        self._extra_keys: list[str] = []
        self._constant: list[tuple[str, str]] = []
        for key, value in extra._values.items():
            if "extra" in fields and key in varying:
                self._extra_keys.append(key)
            else:
                name = extra._names[key]
                self._constant.append((name, format_top_attribute(name, value)))
        self._varying: list[tuple[str, _Value]] = []
        for name, reads, value_of in ATTRIBUTES:
            if reads.isdisjoint(fields):
                made = value_of(sample)
                if made is not None:
                    self._constant.append((name, format_top_attribute(name, made)))
            else:
                self._varying.append((name, value_of))

    def text(self, desc: JobDescription, job_id: int) -> str:
        """The processed JDL text of ``desc`` as job ``job_id``."""
        extra = desc.extra
        if len(extra) != self._extra_size:  # pragma: no cover - not one of the children
            raise ValueError("the description does not match the template")
        chunks = self._constant.copy()
        chunks.append(("JobID", format_top_attribute("JobID", int(job_id))))
        for key in self._extra_keys:
            name = extra._names[key]
            chunks.append((name, format_top_attribute(name, extra._values[key])))
        for name, value_of in self._varying:
            value = value_of(desc)
            if value is not None:
                chunks.append((name, format_top_attribute(name, value)))
        chunks.sort(key=_first)
        return "[\n" + "\n".join([text for _name, text in chunks]) + "\n]"
