"""Who may act on which job (DIRAC's JobPolicy, simplified to its effective rules).

* the owner (same user name, any of their groups) acts on their own jobs;
* ``JobAdministrator`` acts on every job;
* members of a group with the ``JobSharing`` property act on the group's jobs;
* ``GenericPilot`` (and, later, a job-scoped credential) reports on jobs, never manages them.

Example::

    >>> from core.security.identity import Identity
    >>> alice = Identity(auth_method="x509", username="alice", group="g", vo="v",
    ...                  valid_dn=True, valid_group=True, properties=frozenset({"NormalUser"}))
    >>> may_manage(alice, owner="alice", owner_group="g")
    True
    >>> may_manage(alice, owner="bob", owner_group="g")
    False
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from core.exceptions import InvalidArgumentError
from core.security.identity import Identity
from wms.db.jobs import StatusRow

JOB_ADMINISTRATOR = "JobAdministrator"
JOB_SHARING = "JobSharing"
GENERIC_PILOT = "GenericPilot"
#: the owner's properties a job's own credential keeps (administrative ones never travel)
JOB_CREDENTIAL_PROPERTIES = ("NormalUser", "ProductionManagement")


def may_manage(ident: Identity, *, owner: str, owner_group: str) -> bool:
    """Kill, delete, reschedule, read: owner, administrators, sharing group members.
    Job-scoped credentials manage nothing."""
    if not ident.authenticated or job_scope(ident):
        return False
    if JOB_ADMINISTRATOR in ident.properties:
        return True
    if ident.username == owner:
        return True
    return JOB_SHARING in ident.properties and ident.group == owner_group


def may_report(ident: Identity, *, owner: str, owner_group: str,
               job_id: int | None = None) -> bool:
    """Status, parameters, heartbeats: pilots and whoever may manage the job; a job-scoped
    credential only for its own job."""
    scoped = job_scope(ident)
    if scoped:
        return ident.authenticated and job_id in scoped
    if ident.authenticated and GENERIC_PILOT in ident.properties:
        return True
    return may_manage(ident, owner=owner, owner_group=owner_group)


@dataclass
class JobSelection:
    """Requested job IDs sorted into those that exist and may be acted on, and the rest."""

    valid: list[int] = field(default_factory=list)
    invalid: list[int] = field(default_factory=list)
    nonauthorized: list[int] = field(default_factory=list)


def select_jobs(ident: Identity, requested: Iterable[int], rows: Mapping[int, StatusRow], *,
                report: bool = False) -> JobSelection:
    out = JobSelection()
    for job_id in dict.fromkeys(requested):
        row = rows.get(job_id)
        if row is None:
            out.invalid.append(job_id)
        elif (may_report(ident, owner=row.owner, owner_group=row.owner_group, job_id=job_id)
              if report else may_manage(ident, owner=row.owner, owner_group=row.owner_group)):
            out.valid.append(job_id)
        else:
            out.nonauthorized.append(job_id)
    return out


#: the largest job ID a database column holds (signed 64 bits)
MAX_JOB_ID = 2**63 - 1


def job_ids_argument(value: object) -> list[int]:
    """DIRAC clients send one ID or a list, as ints or digit strings, within 64 bits (IDs
    that no job has, negative ones included, are then reported as not found)."""
    items = value if isinstance(value, list | tuple) else [value]
    ids = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | str):
            raise InvalidArgumentError(f"not a job ID: {item!r}")
        try:
            job_id = int(item)
        except ValueError:
            raise InvalidArgumentError(f"not a job ID: {item!r}") from None
        if not -MAX_JOB_ID - 1 <= job_id <= MAX_JOB_ID:
            raise InvalidArgumentError(f"not a job ID: {item!r} (beyond 64 bits)")
        ids.append(job_id)
    return ids


#: scope prefix of a job token naming the attempt (reschedule counter) it was issued for
ATTEMPT_SCOPE = "attempt:"


def job_attempt(ident: Identity) -> int | None:
    """The attempt a job-scoped credential was issued for (None: not said).

    >>> from core.security.identity import Identity
    >>> job_attempt(Identity(auth_method="token", scopes=frozenset({"job:7", "attempt:2"})))
    2
    """
    for scope in ident.scopes:
        if scope.startswith(ATTEMPT_SCOPE) and scope[len(ATTEMPT_SCOPE):].isdigit():
            return int(scope[len(ATTEMPT_SCOPE):])
    return None


def job_scope(ident: Identity) -> frozenset[int]:
    """Jobs a job-scoped credential is limited to (empty: not job-scoped).

    The matcher gives each matched job a token with the scope ``job:<id>``: the job wrapper
    may then report on that job only, never on others. (Read once per set of scopes: a
    batch of reports asks it several times per report.)

    >>> from core.security.identity import Identity
    >>> sorted(job_scope(Identity(auth_method="token", scopes=frozenset({"job:7", "x"}))))
    [7]
    """
    scopes = ident.scopes
    return _jobs_in(scopes) if scopes else _NO_JOBS


_NO_JOBS: frozenset[int] = frozenset()


@functools.lru_cache(maxsize=4096)
def _jobs_in(scopes: frozenset[str]) -> frozenset[int]:
    return frozenset(int(scope[4:]) for scope in scopes
                     if scope.startswith("job:") and scope[4:].isdigit())
