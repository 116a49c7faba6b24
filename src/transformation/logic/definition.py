"""A transformation description: every field checked before anything is stored.

The same description comes from ``dtrans create FILE.yaml``, from the Python client and from
DIRAC's ``addTransformation`` (whose positional arguments are mapped onto it). Every problem
raises :class:`~core.exceptions.InvalidArgumentError` naming the field, so a bad description
creates nothing.

Keys (YAML/wire, DIRAC's spelling where DIRAC has one): ``TransformationName`` (or ``Name``),
``Type``, ``Description``, ``LongDescription``, ``Plugin`` and ``PluginParams``,
``GroupSize``, ``MaxNumberOfTasks`` (or ``MaxTasks``), ``MaxFilesPerTask``,
``EventsPerTask``, ``Body`` (job types: a JDL template; data types: the operation, e.g.
``ReplicateAndRegister``), ``InputMetaQuery`` (or ``InputQuery``), ``OutputMetaQuery``,
``TargetSE``, ``TransformationGroup``, ``AgentType``, ``FileMask``, ``InheritedFrom``,
``OutputMetadata`` (metadata set on the output directory, so the next step's query finds
the outputs), ``Parameters`` (additional key/values), ``InputFiles`` (LFNs to attach).

Example::

    >>> from core.config.transformations import TransformationsConfig
    >>> d = describe({"Name": "reco", "Type": "Processing", "GroupSize": 2,
    ...               "Body": '[Executable = "/bin/true";]'},
    ...              settings=TransformationsConfig(), kinds={}, owner=("alice", "u", "demo"))
    >>> d.values["name"], d.kind, d.values["plugin"]
    ('reco', 'Job', 'Standard')
    >>> describe({"Name": "x", "Type": "Processing", "GroupSize": 0, "Body": "[]"},
    ...          settings=TransformationsConfig(), kinds={}, owner=("alice", "u", "demo"))
    Traceback (most recent call last):
    ...
    core.exceptions.InvalidArgumentError: GroupSize must be a number > 0, not 0
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from core.config.transformations import TransformationsConfig
from core.exceptions import InvalidArgumentError, PilotWMSError
from dms.logic.rms import OPERATION_TYPES
from transformation.logic.query import compile_query
from transformation.plugins import load_plugin
from wms.logic.jdl import parse_jdl
from wms.logic.job_description import DEFAULT_LIMITS, JobLimits, describe_job

NAME_MAX = 255
AGENT_TYPES = ("Automatic", "Manual")
KEYS = {"TransformationName", "Name", "Type", "Description", "LongDescription", "Plugin",
        "PluginParams", "GroupSize", "MaxNumberOfTasks", "MaxTasks", "MaxFilesPerTask",
        "EventsPerTask", "Body", "InputMetaQuery", "InputQuery", "OutputMetaQuery",
        "TargetSE", "TransformationGroup", "AgentType", "FileMask", "InheritedFrom",
        "OutputMetadata", "Parameters", "InputFiles", "Status"}
#: operations a data transformation may do to each file, and whether they need a target SE
DATA_OPERATIONS = {"ReplicateAndRegister": True, "RemoveReplica": True, "RemoveFile": False}


@dataclass
class Description:
    values: dict[str, Any]
    kind: str
    parameters: dict[str, tuple[str, str]] = field(default_factory=dict)
    output_metadata: dict[str, Any] = field(default_factory=dict)
    input_files: list[str] = field(default_factory=list)
    start: bool = False


def bad(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(message)


def _text(data: Mapping[str, Any], key: str, default: str = "", limit: int = 255,
          *aliases: str) -> str:
    value = next((data[k] for k in (key, *aliases) if k in data), default)
    if value is None:
        value = default
    if not isinstance(value, str):
        raise bad(f"{key} must be a string, not {type(value).__name__}")
    if len(value) > limit:
        raise bad(f"{key} must be at most {limit} characters")
    return value


def _int(data: Mapping[str, Any], key: str, *aliases: str, minimum: int = 0) -> int:
    value = next((data[k] for k in (key, *aliases) if k in data), 0)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise bad(f"{key} must be an integer >= {minimum}, not {value!r}")
    return value


def se_list(value: Any, key: str = "TargetSE") -> list[str]:
    if value in (None, "", []):
        return []
    if isinstance(value, str):
        value = [s.strip() for s in value.split(",") if s.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) and s for s in value):
        raise bad(f"{key} must be a list of SE names")
    return list(dict.fromkeys(value))


def check_query(query: Any, kinds: Mapping[str, str], key: str) -> dict[str, Any] | None:
    if query in (None, {}, ""):
        return None
    if isinstance(query, str):
        try:
            query = json.loads(query)
        except ValueError:
            raise bad(f"{key} must be a dict (or its JSON text)") from None
    try:
        compile_query(query, kinds)
    except ValueError as exc:
        raise bad(f"{key}: {exc}") from None
    return dict(query)


def job_limits(settings: TransformationsConfig, base: JobLimits = DEFAULT_LIMITS) -> JobLimits:
    """The WMS limits with the transformation job types allowed as JobType."""
    return replace(base, allowed_job_types=tuple(dict.fromkeys(
        (*base.allowed_job_types, *settings.all_job_types))))


def check_body(body: str, kind: str, trans_type: str, owner: tuple[str, str, str],
               settings: TransformationsConfig, target_ses: Sequence[str]) -> None:
    if kind == "Job":
        if not body.strip():
            raise bad("Body: a job transformation needs a JDL template")
        try:
            jdl = parse_jdl(body)
            jdl["JobType"] = trans_type
            if "Executable" not in jdl:
                raise bad("Body: the JDL template has no Executable")
            describe_job(jdl, owner=owner[0], owner_group=owner[1], vo=owner[2],
                         limits=job_limits(settings))
        except PilotWMSError as exc:
            raise bad(f"Body: {exc.message}") from None
        return
    operations = [op.strip() for op in (body or "").split(";") if op.strip()]
    if not operations:
        raise bad(f"Body: a data transformation names its operation "
                  f"({', '.join(DATA_OPERATIONS)})")
    for op in operations:
        if op not in DATA_OPERATIONS or op not in OPERATION_TYPES:
            raise bad(f"Body: unknown operation {op!r} (one of {', '.join(DATA_OPERATIONS)})")


def describe(data: Mapping[str, Any], *, settings: TransformationsConfig,
             kinds: Mapping[str, str], owner: tuple[str, str, str],
             known_ses: Sequence[str] | None = None) -> Description:
    """Check a description; ``kinds`` are the catalog's metadata fields, ``owner`` is
    (user, group, VO), ``known_ses`` the configured SEs (None: not checked)."""
    if not isinstance(data, Mapping):
        raise bad("a transformation description is a dict")
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise bad(f"unknown field(s) {', '.join(map(str, unknown))} "
                  f"(known: {', '.join(sorted(KEYS))})")
    name = _text(data, "TransformationName", "", NAME_MAX, "Name").strip()
    if not name:
        raise bad("TransformationName must not be empty")
    if name.isdigit():
        raise bad("TransformationName must not be a number (numbers are IDs)")
    trans_type = _text(data, "Type", "", 32)
    kind = settings.kind_of(trans_type)
    if kind is None:
        raise bad(f"Type {trans_type!r} is unknown (one of "
                  f"{', '.join(settings.all_job_types + settings.all_data_types)})")
    plugin = _text(data, "Plugin", "Standard", 64) or "Standard"
    try:
        plugin_class = load_plugin(plugin)
    except ValueError as exc:
        raise bad(f"Plugin: {exc}") from None
    params = data.get("PluginParams") or {}
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except ValueError:
            raise bad("PluginParams must be a dict (or its JSON text)") from None
    if not isinstance(params, Mapping):
        raise bad("PluginParams must be a dict")
    group_size = data.get("GroupSize", 1)
    if isinstance(group_size, str):
        try:
            group_size = float(group_size)
        except ValueError:
            pass
    if isinstance(group_size, bool) or not isinstance(group_size, (int, float)) or \
            group_size <= 0:
        raise bad(f"GroupSize must be a number > 0, not {group_size!r}")
    target_ses = se_list(data.get("TargetSE"))
    if known_ses is not None:
        for se in target_ses + se_list(params.get("TargetSE"), "PluginParams.TargetSE") + \
                list((params.get("Shares") or {}) if isinstance(params.get("Shares"),
                                                                Mapping) else []):
            if se not in known_ses:
                raise bad(f"TargetSE: unknown storage element {se!r}")
    try:
        plugin_class.check_params(params, float(group_size), target_ses)
    except ValueError as exc:
        raise bad(f"PluginParams: {exc}") from None
    body = data.get("Body") or ""
    if not isinstance(body, str):
        raise bad("Body must be a string")
    check_body(body, kind, trans_type, owner, settings, target_ses)
    if kind == "Request" and any(DATA_OPERATIONS.get(op.strip())
                                 for op in body.split(";")) \
            and not target_ses and plugin not in ("Broadcast", "ByShare", "BySE") \
            and not params.get("TargetSE"):
        raise bad("TargetSE: this operation needs target SEs")
    agent_type = _text(data, "AgentType", "Automatic", 32) or "Automatic"
    if agent_type not in AGENT_TYPES:
        raise bad(f"AgentType must be one of {', '.join(AGENT_TYPES)}")
    input_query = check_query(next((data[k] for k in ("InputMetaQuery", "InputQuery")
                                    if k in data), None), kinds, "InputMetaQuery")
    output_query = check_query(data.get("OutputMetaQuery"), kinds, "OutputMetaQuery")
    out_meta = data.get("OutputMetadata") or {}
    if not isinstance(out_meta, Mapping) or not all(isinstance(k, str) for k in out_meta):
        raise bad("OutputMetadata must be a {field: value} dict")
    for key in out_meta:
        if key not in kinds:
            raise bad(f"OutputMetadata: unknown metadata field {key!r}")
    extra = data.get("Parameters") or {}
    if not isinstance(extra, Mapping):
        raise bad("Parameters must be a {name: value} dict")
    parameters: dict[str, tuple[str, str]] = {}
    for key, value in extra.items():
        if not isinstance(key, str) or not key or len(key) > 64:
            raise bad(f"Parameters: bad name {key!r}")
        parameters[key] = encode_parameter(value)
    if out_meta:
        parameters["OutputMetadata"] = encode_parameter(dict(out_meta))
    input_files = data.get("InputFiles") or []
    if not isinstance(input_files, list) or not all(isinstance(x, str) for x in input_files):
        raise bad("InputFiles must be a list of LFNs")
    status = _text(data, "Status", "New", 32) or "New"
    if status not in ("New", "Active"):
        raise bad("Status of a new transformation must be New or Active")
    values = {
        "name": name, "vo": owner[2], "type": trans_type, "plugin": plugin,
        "plugin_params": json.dumps(dict(params), sort_keys=True),
        "description": _text(data, "Description"),
        "long_description": _text(data, "LongDescription", "", 65_535),
        "author": owner[0], "author_group": owner[1], "agent_type": agent_type,
        "status": "New", "file_mask": _text(data, "FileMask"),
        "transformation_group": _text(data, "TransformationGroup", "General") or "General",
        "group_size": float(group_size),
        "inherited_from": _int(data, "InheritedFrom"),
        "body": body,
        "max_tasks": _int(data, "MaxNumberOfTasks", "MaxTasks"),
        "max_files_per_task": _int(data, "MaxFilesPerTask"),
        "events_per_task": _int(data, "EventsPerTask"),
        "input_query": json.dumps(input_query, sort_keys=True) if input_query else None,
        "output_query": json.dumps(output_query, sort_keys=True) if output_query else None,
        "target_ses": ",".join(target_ses),
    }
    return Description(values, kind, parameters, dict(out_meta), list(input_files),
                       start=status == "Active")


def encode_parameter(value: Any) -> tuple[str, str]:
    """(text, DIRAC-like type name) of an additional parameter."""
    if isinstance(value, str):
        return value, "StringType"
    if isinstance(value, bool):
        return json.dumps(value), "BooleanType"
    if isinstance(value, int):
        return str(value), "IntType"
    if isinstance(value, float):
        return repr(value), "FloatType"
    return json.dumps(value, sort_keys=True), "JSONType"


def decode_parameter(text: str, kind: str) -> Any:
    if kind == "IntType":
        return int(text)
    if kind == "FloatType":
        return float(text)
    if kind in ("BooleanType", "JSONType"):
        return json.loads(text)
    return text
