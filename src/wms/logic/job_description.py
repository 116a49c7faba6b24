"""Validate and normalise a user JDL into a typed :class:`JobDescription`, and write it back as
the processed JDL the server stores (DIRAC's: ``JobID``, ``Owner``, ``OwnerGroup``,
``VirtualOrganization`` and a nested ``JobRequirements``).

Defaults and bounds are DIRAC's (``JobDescription/*`` in its Operations section): StdOutput
``std.out``, StdError ``std.err``, JobName ``Name``, JobType ``User`` (allowed: User, Test,
Hospital), Priority 1 (0..10), LogLevel ``INFO``, CPUTime 86400 (100..500000), at most 500
InputData files, at most 1024 processors. As DIRAC's job manager does, an out-of-bounds CPUTime
or Priority is brought into the bounds (``JobLimits(clamp=False)`` refuses it instead).

Site-like lists (Site, BannedSites, GridCE, Platform, Tags) also accept DIRAC's comma-separated
strings (``Site = "A, B"``); ``ANY`` and empty entries are dropped from Site and Platform.

>>> from wms.logic.jdl import parse_jdl
>>> desc = describe_job(
...     parse_jdl('Executable = "run.sh"; Site = "LCG.CERN.cern"; NumberOfProcessors = 4;'
...               'InputData = "/vo/data/f1"; MaxRAM = 2500'),
...     owner="alice", owner_group="vo_user", vo="vo")
>>> desc.input_data, desc.site_summary, desc.requirement_tags
(['LFN:/vo/data/f1'], 'LCG.CERN.cern', ['4Processors', 'MultiProcessor', '3GB'])
>>> print(processed_jdl(desc, 17)["JobRequirements"].to_text())
[
    CPUTime = 86400;
    JobTypes = { "User" };
    MaxRAM = 2500;
    NumberOfProcessors = 4;
    Owner = "alice";
    OwnerGroup = "vo_user";
    Sites = { "LCG.CERN.cern" };
    Tags =
        {
            "4Processors",
            "MultiProcessor",
            "3GB"
        };
    UserPriority = 1;
    VirtualOrganization = "vo";
]
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeAlias

from core.exceptions import InvalidJDLError
from wms.logic.jdl import JDL, JDLValue
from wms.logic.parametric import is_parametric

__all__ = [
    "DEFAULT_LIMITS",
    "LOG_LEVELS",
    "STANDARD_ATTRIBUTES",
    "JobDescription",
    "JobLimits",
    "describe_job",
    "processed_jdl",
]

#: DIRAC's log level names (``LogLevels``); ``WARNING`` is read as ``WARN``.
LOG_LEVELS = ("DEBUG", "VERBOSE", "INFO", "WARN", "NOTICE", "ERROR", "ALWAYS", "FATAL")

#: The attributes :func:`describe_job` reads (others are kept verbatim in ``extra``), plus the
#: ones the server sets itself and drops from a user JDL.
STANDARD_ATTRIBUTES = (
    "Executable", "Arguments", "StdOutput", "StdError", "InputSandbox", "OutputSandbox",
    "InputData", "OutputData", "OutputSE", "OutputPath", "JobName", "JobGroup", "JobType",
    "Priority", "LogLevel", "CPUTime", "Site", "BannedSites", "BannedSite", "GridCE", "Platform",
    "Tags", "Tag", "NumberOfProcessors", "MinNumberOfProcessors", "MaxNumberOfProcessors",
    "MaxRAM", "WholeNode", "ExecutionEnvironment", "MinRAM", "NumberOfGPUs", "GPUs",
    "GPUModel",
)  # fmt: skip
_SERVER_ATTRIBUTES = ("JobID", "JobRequirements", "Owner", "OwnerGroup", "VirtualOrganization",
                      "OwnerDN")  # fmt: skip
_KNOWN = {name.lower() for name in STANDARD_ATTRIBUTES + _SERVER_ATTRIBUTES}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_GPU_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+ -]{0,63}")
# Widths of the jobs-table columns these attributes go into.
_MAX_LENGTH = {"JobName": 128, "JobGroup": 32, "JobType": 32, "Site": 100}


@dataclass(frozen=True, slots=True)
class JobLimits:
    """Bounds and defaults of a job description (DIRAC's ``JobDescription`` options)."""

    max_input_data: int = 500
    default_cpu_time: int = 86400
    min_cpu_time: int = 100
    max_cpu_time: int = 500000
    default_priority: int = 1
    min_priority: int = 0
    max_priority: int = 10
    allowed_job_types: tuple[str, ...] = ("User", "Test", "Hospital")
    max_parametric_jobs: int = 10000
    max_processors: int = 1024
    #: True: an out-of-bounds CPUTime or Priority is clamped (DIRAC); False: it is refused.
    clamp: bool = True
    #: InputData LFNs must lie under ``/<vo>/`` (as DiracX requires).
    lfn_vo_prefix: bool = True


DEFAULT_LIMITS = JobLimits()


@dataclass(slots=True, kw_only=True)
class JobDescription:
    """A validated, normalised job description.

    ``min_number_of_processors`` is None when the JDL does not set it (1 in effect); the
    difference matters to DIRAC's tags: a JDL that sets a minimum and no maximum may use any
    number of processors, hence ``MultiProcessor``.
    """

    owner: str
    owner_group: str
    vo: str
    executable: str
    arguments: str = ""
    std_output: str = "std.out"
    std_error: str = "std.err"
    input_sandbox: list[str] = field(default_factory=list)
    output_sandbox: list[str] = field(default_factory=list)
    input_data: list[str] = field(default_factory=list)
    output_data: list[str] = field(default_factory=list)
    output_se: list[str] = field(default_factory=list)
    output_path: str = ""
    job_name: str = "Name"
    job_group: str = ""
    job_type: str = "User"
    priority: int = 1
    log_level: str = "INFO"
    cpu_time: int = 86400
    sites: list[str] = field(default_factory=list)
    banned_sites: list[str] = field(default_factory=list)
    grid_ces: list[str] = field(default_factory=list)
    platforms: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    number_of_processors: int | None = None
    min_number_of_processors: int | None = None
    max_number_of_processors: int | None = None
    max_ram: int | None = None
    #: MB the job needs on its node (matched against what pilots report); MaxRAM when unset
    min_ram: int | None = None
    number_of_gpus: int | None = None
    gpu_model: str | None = None
    whole_node: bool = False
    execution_environment: dict[str, str] = field(default_factory=dict)
    extra: JDL = field(default_factory=JDL)

    @property
    def site_summary(self) -> str:
        """The jobs-table ``Site``: ``ANY``, the single site, or ``Multiple``."""
        if not self.sites:
            return "ANY"
        return self.sites[0] if len(self.sites) == 1 else "Multiple"

    @property
    def ram_needed(self) -> int | None:
        """MB the job needs on its node: MinRAM (DIRAC 9 matches on it), else MaxRAM."""
        return self.min_ram or self.max_ram

    @property
    def requirement_tags(self) -> list[str]:
        """The tags a resource must offer, derived as DIRAC's JobScheduling does.

        ``<N>Processors`` and ``MultiProcessor`` for N > 1 processors; ``MultiProcessor`` for
        a processor range reaching above 1; ``WholeNode`` (and ``MultiProcessor``) when asked
        for by ``WholeNode = true`` or the tag; ``<N>GB`` for MaxRAM (MB, rounded up); then the
        user's tags. No duplicates, first occurrence kept.
        """
        tags: list[str] = []
        if self.number_of_processors is not None:
            if self.number_of_processors > 1:
                tags += [f"{self.number_of_processors}Processors", "MultiProcessor"]
        elif self.min_number_of_processors is not None or self.max_number_of_processors:
            low = self.min_number_of_processors or 1
            high = self.max_number_of_processors
            if low > 1:
                tags += [f"{low}Processors", "MultiProcessor"]
            if high is None or high > 1:
                tags.append("MultiProcessor")
        if self.whole_node or "WholeNode" in self.tags:
            tags += ["WholeNode", "MultiProcessor"]
        if self.ram_needed:
            tags.append(f"{math.ceil(self.ram_needed / 1024)}GB")
        if self.number_of_gpus:
            tags += ["GPU", f"{self.number_of_gpus}GPUs"]
        if self.gpu_model:
            tags += ["GPU", f"GPU:{self.gpu_model}"]
        tags += self.tags
        return list(dict.fromkeys(tags))


# -- reading helpers ----------------------------------------------------------------------------


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _strings(jdl: JDL, name: str) -> list[str]:
    """A list of non-empty, stripped strings, without duplicates."""
    return _unique([item.strip() for item in jdl.get_str_list(name) if item.strip()])


def _names(jdl: JDL, name: str, *, drop_any: bool = False) -> list[str]:
    """A list of names; DIRAC's comma-separated strings are split; ``ANY`` dropped on request."""
    result: list[str] = []
    for item in jdl.get_str_list(name):
        for part in item.split(","):
            part = part.strip()
            if part and not (drop_any and part.upper() == "ANY"):
                result.append(part)
    return _unique(result)


def _text(jdl: JDL, name: str, default: str) -> str:
    value = jdl.get_str(name, default).strip()
    limit = _MAX_LENGTH.get(name)
    if limit is not None and len(value) > limit:
        raise InvalidJDLError(f"attribute '{name}' is longer than {limit} characters")
    return value


def _bounded(jdl: JDL, name: str, default: int, low: int, high: int, *, clamp: bool = False) -> int:
    value = jdl.get_int(name, default)
    if low <= value <= high:
        return value
    if clamp:
        return max(low, min(value, high))
    raise InvalidJDLError(f"attribute '{name}' must be between {low} and {high}, got {value}")


def _optional_int(jdl: JDL, name: str, low: int, high: int) -> int | None:
    if name not in jdl:
        return None
    return _bounded(jdl, name, 0, low, high)


def _check_claims(jdl: JDL, owner: str, owner_group: str, vo: str) -> None:
    for name, actual, message in (
        ("Owner", owner, "Wrong Owner in JDL"),
        ("OwnerGroup", owner_group, "Wrong Owner Group in JDL"),
        ("VirtualOrganization", vo, "Wrong Virtual Organization in JDL"),
    ):
        claimed = jdl.get_str(name, "").strip()
        if claimed and claimed != actual:
            raise InvalidJDLError(f"{message}: {name} is '{claimed}', the submitter's '{actual}'")


def _input_sandbox(jdl: JDL) -> list[str]:
    entries = _strings(jdl, "InputSandbox")
    for entry in entries:
        if entry[:4].upper() == "LFN:" and not entry.startswith("LFN:/"):
            raise InvalidJDLError(f"InputSandbox: LFN entries must start with 'LFN:/': '{entry}'")
    return entries


def _input_data(jdl: JDL, vo: str, limits: JobLimits) -> list[str]:
    lfns: list[str] = []
    for entry in _strings(jdl, "InputData"):
        if entry[:4].upper() == "LFN:":
            entry = "LFN:" + entry[4:]
        elif entry.startswith("/"):
            entry = "LFN:" + entry
        if not entry.startswith("LFN:/"):
            raise InvalidJDLError(f"InputData: files must start with 'LFN:/' or '/': '{entry}'")
        if "//" in entry:
            raise InvalidJDLError(f"InputData: '{entry}' contains '//'")
        if limits.lfn_vo_prefix and not entry.startswith(f"LFN:/{vo}/"):
            raise InvalidJDLError(f"InputData: '{entry}' is not under LFN:/{vo}/")
        lfns.append(entry)
    lfns = _unique(lfns)
    if len(lfns) > limits.max_input_data:
        raise InvalidJDLError(
            f"Number of Input Data Files ({len(lfns)}) greater than current limit: "
            f"{limits.max_input_data}"
        )
    return lfns


def _environment(jdl: JDL) -> dict[str, str]:
    environment: dict[str, str] = {}
    for entry in jdl.get_str_list("ExecutionEnvironment"):
        name, equals, value = entry.partition("=")
        name = name.strip()
        if not equals or _ENV_NAME.fullmatch(name) is None:
            raise InvalidJDLError(
                f"ExecutionEnvironment: entries must be 'NAME=value', got '{entry}'"
            )
        environment[name] = value
    return environment


def _log_level(jdl: JDL) -> str:
    level = jdl.get_str("LogLevel", "INFO").strip().upper()
    level = "WARN" if level == "WARNING" else level
    if level not in LOG_LEVELS:
        raise InvalidJDLError(f"LogLevel: '{level}' is not one of {', '.join(LOG_LEVELS)}")
    return level


# -- the description ----------------------------------------------------------------------------


class _Context(NamedTuple):
    owner: str
    owner_group: str
    vo: str
    limits: JobLimits


_Fields: TypeAlias = dict[str, Any]
_Step: TypeAlias = Callable[[JDL, _Context], _Fields]



def _claims(jdl: JDL, c: _Context) -> _Fields:
    _check_claims(jdl, c.owner, c.owner_group, c.vo)
    return {}


def _executable(jdl: JDL, c: _Context) -> _Fields:
    executable = jdl.get_str("Executable", "").strip()
    if not executable:
        raise InvalidJDLError("attribute 'Executable' is mandatory and must not be empty")
    return {"executable": executable}


def _job_type(jdl: JDL, c: _Context) -> _Fields:
    job_type = _text(jdl, "JobType", "User")
    if job_type not in c.limits.allowed_job_types:
        raise InvalidJDLError(f"JobType '{job_type}' is not allowed "
                              f"(allowed: {', '.join(c.limits.allowed_job_types)})")
    return {"job_type": job_type}


def _processors(jdl: JDL, c: _Context) -> _Fields:
    maximum = c.limits.max_processors
    number = _optional_int(jdl, "NumberOfProcessors", 1, maximum)
    low = _optional_int(jdl, "MinNumberOfProcessors", 1, maximum)
    high = _optional_int(jdl, "MaxNumberOfProcessors", 1, maximum)
    if low is not None and high is not None and high < low:
        raise InvalidJDLError(
            f"MaxNumberOfProcessors ({high}) must not be less than MinNumberOfProcessors ({low})"
        )
    if number is not None and not (low or 1) <= number <= (high or maximum):
        raise InvalidJDLError(
            f"NumberOfProcessors ({number}) is outside MinNumberOfProcessors.."
            f"MaxNumberOfProcessors ({low or 1}..{high or maximum})"
        )
    return {"number_of_processors": number, "min_number_of_processors": low,
            "max_number_of_processors": high}


def _ram(jdl: JDL, c: _Context) -> _Fields:
    max_ram = _optional_int(jdl, "MaxRAM", 1, 2**31 - 1)
    min_ram = _optional_int(jdl, "MinRAM", 1, 2**31 - 1)
    if min_ram is not None and max_ram is not None and min_ram > max_ram:
        raise InvalidJDLError(f"MinRAM ({min_ram}) must not be more than MaxRAM ({max_ram})")
    return {"max_ram": max_ram, "min_ram": min_ram}


def _gpus(jdl: JDL, c: _Context) -> _Fields:
    gpus = _optional_int(jdl, "NumberOfGPUs", 0, 64)
    if gpus is None:
        gpus = _optional_int(jdl, "GPUs", 0, 64)
    return {"number_of_gpus": gpus or None}


def _gpu_model(jdl: JDL, c: _Context) -> _Fields:
    gpu_model = jdl.get_str("GPUModel", "").strip() or None
    if gpu_model is not None and _GPU_MODEL.fullmatch(gpu_model) is None:
        raise InvalidJDLError(f"GPUModel: '{gpu_model}' is not a GPU model name "
                              "(letters, digits, '_.-+ ', up to 64)")
    return {"gpu_model": gpu_model}


def _sites(jdl: JDL, c: _Context) -> _Fields:
    sites = _names(jdl, "Site", drop_any=True)
    banned = _names(jdl, "BannedSites") or _names(jdl, "BannedSite")
    for site in sites:
        if len(site) > _MAX_LENGTH["Site"]:
            raise InvalidJDLError(f"Site: '{site}' is longer than {_MAX_LENGTH['Site']} characters")
    if sites:
        allowed_sites = [site for site in sites if site not in banned]
        if not allowed_sites:
            raise InvalidJDLError("Site: every requested site is also in BannedSites")
        sites, banned = allowed_sites, []
    return {"sites": sites, "banned_sites": banned}


def _clamped(field_name: str, name: str, default: str, low: str, high: str) -> _Step:
    def step(jdl: JDL, c: _Context) -> _Fields:
        limits = c.limits
        return {field_name: _bounded(jdl, name, getattr(limits, default), getattr(limits, low),
                                     getattr(limits, high), clamp=limits.clamp)}
    return step


def _one(field_name: str, read: Callable[[JDL], object]) -> _Step:
    def step(jdl: JDL, c: _Context) -> _Fields:
        return {field_name: read(jdl)}
    return step


#: describe_job in steps, in the order it checks them: (the lower-case attributes a step reads,
#: None for "every attribute describe_job does not know"; the step). A step's fields depend on
#: those attributes (and the submitter and limits) only: :mod:`wms.logic.child_description` runs
#: the steps whose attributes are the same in every child once.
_STEPS: tuple[tuple[frozenset[str] | None, _Step], ...] = (
    (frozenset({"owner", "ownergroup", "virtualorganization"}), _claims),
    (frozenset({"executable"}), _executable),
    (frozenset({"jobtype"}), _job_type),
    (frozenset({"numberofprocessors", "minnumberofprocessors", "maxnumberofprocessors"}),
     _processors),
    (frozenset({"maxram", "minram"}), _ram),
    (frozenset({"numberofgpus", "gpus"}), _gpus),
    (frozenset({"gpumodel"}), _gpu_model),
    (frozenset({"site", "bannedsites", "bannedsite"}), _sites),
    (None, _one("extra", lambda jdl: jdl.copy(without=_KNOWN))),  # the others, verbatim
    (frozenset({"arguments"}), _one("arguments", lambda jdl: jdl.get_str("Arguments", ""))),
    (frozenset({"stdoutput"}), _one(
        "std_output", lambda jdl: _text(jdl, "StdOutput", "std.out") or "std.out")),
    (frozenset({"stderror"}), _one(
        "std_error", lambda jdl: _text(jdl, "StdError", "std.err") or "std.err")),
    (frozenset({"inputsandbox"}), _one("input_sandbox", _input_sandbox)),
    (frozenset({"outputsandbox"}), _one(
        "output_sandbox", lambda jdl: _strings(jdl, "OutputSandbox"))),
    (frozenset({"inputdata"}), lambda jdl, c: {
        "input_data": _input_data(jdl, c.vo, c.limits)}),
    (frozenset({"outputdata"}), _one("output_data", lambda jdl: _strings(jdl, "OutputData"))),
    (frozenset({"outputse"}), _one("output_se", lambda jdl: _names(jdl, "OutputSE"))),
    (frozenset({"outputpath"}), _one("output_path", lambda jdl: _text(jdl, "OutputPath", ""))),
    (frozenset({"jobname"}), _one(
        "job_name", lambda jdl: _text(jdl, "JobName", "Name") or "Name")),
    (frozenset({"jobgroup"}), _one("job_group", lambda jdl: _text(jdl, "JobGroup", ""))),
    (frozenset({"priority"}), _clamped(
        "priority", "Priority", "default_priority", "min_priority", "max_priority")),
    (frozenset({"loglevel"}), _one("log_level", _log_level)),
    (frozenset({"cputime"}), _clamped(
        "cpu_time", "CPUTime", "default_cpu_time", "min_cpu_time", "max_cpu_time")),
    (frozenset({"gridce"}), _one("grid_ces", lambda jdl: _names(jdl, "GridCE"))),
    (frozenset({"platform"}), _one(
        "platforms", lambda jdl: _names(jdl, "Platform", drop_any=True))),
    (frozenset({"tags", "tag"}), _one(
        "tags", lambda jdl: _unique(_names(jdl, "Tags") + _names(jdl, "Tag")))),
    (frozenset({"wholenode"}), _one("whole_node", lambda jdl: jdl.get_bool("WholeNode", False))),
    (frozenset({"executionenvironment"}), _one("execution_environment", _environment)),
)


def describe_job(
    jdl: JDL, *, owner: str, owner_group: str, vo: str, limits: JobLimits = DEFAULT_LIMITS
) -> JobDescription:
    """Validate and normalise ``jdl`` submitted by ``owner`` in ``owner_group`` of ``vo``.

    Raises :class:`~core.exceptions.InvalidJDLError` naming the attribute at fault. A parametric
    JDL must be expanded first (:func:`wms.logic.parametric.expand_parametric`).
    """
    if is_parametric(jdl):
        raise InvalidJDLError("a parametric JDL must be expanded into its jobs first")
    context = _Context(owner, owner_group, vo, limits)
    fields: _Fields = {}
    for _attributes, step in _STEPS:
        fields.update(step(jdl, context))
    return JobDescription(owner=owner, owner_group=owner_group, vo=vo, **fields)


def _one_or_list(items: list[str]) -> JDLValue:
    return items[0] if len(items) == 1 else list(items)


def processed_jdl(desc: JobDescription, job_id: int) -> JDL:
    """The JDL the server stores for job ``job_id``: every attribute (defaults included, the
    user's other attributes verbatim), ``JobID``, the owner's identity and ``JobRequirements``.

    >>> desc = describe_job(JDL({"Executable": "ls"}), owner="u", owner_group="g", vo="v")
    >>> jdl = processed_jdl(desc, 5)
    >>> jdl["JobID"], jdl["Owner"], jdl["JobRequirements"]["CPUTime"], "OwnerDN" in jdl
    (5, 'u', 86400, False)
    """
    # built from checked parts (the description's fields are typed, its extra attributes
    # were checked when read): no per-attribute validation, the same record as assigning
    # them one by one
    pairs: list[tuple[str, JDLValue]] = list(desc.extra.copy().items())
    add = pairs.append
    add(("JobID", int(job_id)))
    add(("Owner", desc.owner))
    add(("OwnerGroup", desc.owner_group))
    add(("VirtualOrganization", desc.vo))
    add(("Executable", desc.executable))
    if desc.arguments:
        add(("Arguments", desc.arguments))
    add(("StdOutput", desc.std_output))
    add(("StdError", desc.std_error))
    add(("JobName", desc.job_name))
    if desc.job_group:
        add(("JobGroup", desc.job_group))
    add(("JobType", desc.job_type))
    add(("Priority", desc.priority))
    add(("LogLevel", desc.log_level))
    add(("CPUTime", desc.cpu_time))
    lists: tuple[tuple[str, list[str]], ...] = (
        ("InputSandbox", desc.input_sandbox),
        ("OutputSandbox", desc.output_sandbox),
        ("InputData", desc.input_data),
        ("OutputData", desc.output_data),
        ("BannedSites", desc.banned_sites),
        ("Tags", desc.tags),
    )
    for name, items in lists:
        if items:
            add((name, list(items)))
    for name, items in (
        ("OutputSE", desc.output_se),
        ("Site", desc.sites),
        ("GridCE", desc.grid_ces),
        ("Platform", desc.platforms),
    ):
        if items:
            add((name, _one_or_list(items)))
    if desc.output_path:
        add(("OutputPath", desc.output_path))
    numbers = (
        ("NumberOfProcessors", desc.number_of_processors),
        ("MinNumberOfProcessors", desc.min_number_of_processors),
        ("MaxNumberOfProcessors", desc.max_number_of_processors),
        ("MaxRAM", desc.max_ram),
        ("MinRAM", desc.min_ram),
        ("NumberOfGPUs", desc.number_of_gpus),
    )
    pairs += [(name, number) for name, number in numbers if number is not None]
    if desc.gpu_model:
        add(("GPUModel", desc.gpu_model))
    if desc.whole_node:
        add(("WholeNode", True))
    if desc.execution_environment:
        add(("ExecutionEnvironment",
             [f"{k}={v}" for k, v in desc.execution_environment.items()]))
    required: list[tuple[str, JDLValue]] = [
        ("Owner", desc.owner),
        ("OwnerGroup", desc.owner_group),
        ("VirtualOrganization", desc.vo),
        ("UserPriority", desc.priority),
        ("CPUTime", desc.cpu_time),
        ("JobTypes", [desc.job_type]),
    ]
    for name, items in (
        ("Sites", desc.sites),
        ("BannedSites", desc.banned_sites),
        ("GridCEs", desc.grid_ces),
        ("Platforms", desc.platforms),
        ("Tags", desc.requirement_tags),
    ):
        if items:
            required.append((name, list(items)))
    required += [(name, number) for name, number in numbers if number is not None]
    add(("JobRequirements", JDL._from_checked(required)))
    return JDL._from_checked(pairs)
