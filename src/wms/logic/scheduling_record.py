"""What the optimiser needs of a job, kept from its submission: no second parse of its JDL.

A parametric submission stores its children in ``Submitting`` and the client confirms them
later (``confirmBulkSubmission``), maybe on another server process or after a restart. The
optimiser then needs each child's scheduling fields (CPU time, priority, job type, sites,
banned sites, CEs, platforms, tags and what derives tags, input data). Re-reading them from
the stored processed JDL meant parsing and validating every child a second time (half of a
bulk submission's CPU). Instead the submission stores a small JSON record of those fields
beside the JDL (``job_jdls.scheduling``) and the optimiser rebuilds them from it.

The record carries a fingerprint of the :class:`~wms.logic.job_description.JobLimits` it was
validated with and of this format: when the limits differ (an administrator changed them
between submission and confirmation) or the record is missing or unreadable, the optimiser
re-describes the stored JDL as before, so the outcome is the same either way. The processed
JDL is written from the same description, and describing it again gives these fields back
unchanged (tests/wms/logic/test_bulk_once.py checks this on many JDLs).

Example::

    >>> from wms.logic.jdl import parse_jdl
    >>> from wms.logic.job_description import DEFAULT_LIMITS, describe_job
    >>> desc = describe_job(parse_jdl('Executable = "x"; Site = "S1"; CPUTime = 3600'),
    ...                     owner="al", owner_group="g", vo="v")
    >>> text = encode(desc, DEFAULT_LIMITS)
    >>> again = decode(text, owner="al", owner_group="g", vo="v", limits=DEFAULT_LIMITS)
    >>> again is not None and (again.sites, again.cpu_time) == (["S1"], 3600)
    True
    >>> decode(text, owner="al", owner_group="g", vo="v",
    ...        limits=JobLimits(max_input_data=1)) is None  # other limits: re-describe
    True
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

from wms.logic.job_description import JobDescription, JobLimits

__all__ = ["FIELDS", "decode", "encode", "fingerprint"]

#: bump when :func:`~wms.logic.job_description.describe_job` changes what these fields hold
FORMAT = 1

#: the description's fields the optimiser and the task queues read, with their defaults
FIELDS: dict[str, Any] = {
    "cpu_time": None, "priority": None, "job_type": None,
    "sites": [], "banned_sites": [], "grid_ces": [], "platforms": [], "tags": [],
    "input_data": [],
    "number_of_processors": None, "min_number_of_processors": None,
    "max_number_of_processors": None, "max_ram": None, "min_ram": None,
    "number_of_gpus": None, "gpu_model": None, "whole_node": False,
}
_ALWAYS = ("cpu_time", "priority", "job_type")


@lru_cache(maxsize=64)
def fingerprint(limits: JobLimits) -> str:
    """A short digest of the limits a description was validated with, and of the format."""
    return hashlib.sha256(f"{FORMAT}:{limits!r}".encode()).hexdigest()[:16]


def encode(desc: JobDescription, limits: JobLimits) -> str:
    """The record of ``desc`` (validated under ``limits``): a compact JSON text."""
    record: dict[str, Any] = {"@": fingerprint(limits)}
    for name, default in FIELDS.items():
        value = getattr(desc, name)
        if name in _ALWAYS or value != default:
            record[name] = value
    return json.dumps(record, separators=(",", ":"))


def decode(text: str | None, *, owner: str, owner_group: str, vo: str,
           limits: JobLimits) -> JobDescription | None:
    """The description rebuilt from a record, or None when it must be re-described from the
    JDL (no record, another format or other limits, unreadable). Only the scheduling fields
    (:data:`FIELDS`) and the owner are set: the optimiser and the task queues read nothing
    else; the executable and the other fields stay at their defaults."""
    if not text:
        return None
    try:
        record = json.loads(text)
        if not isinstance(record, dict) or record.pop("@", None) != fingerprint(limits):
            return None
        if set(record) - FIELDS.keys() or not set(_ALWAYS) <= set(record):
            return None
        return JobDescription(owner=owner, owner_group=owner_group, vo=vo, executable="",
                              **record)
    except (ValueError, TypeError):
        return None
