"""Who sees which jobs, and the monitoring views built on the read queries.

Visibility: administrators (``JobAdministrator``) and pilots see every job; members of a group
with ``JobSharing`` see their group's jobs; everyone else sees their own jobs. Per-job reads of
jobs outside that view report them as not authorised rather than revealing them.

Example::

    >>> from sqlalchemy.engine import Engine

from core.db import write_transaction
from core.security.identity import Identity
    >>> scope_for(Identity(auth_method="x509", username="al", group="g", valid_dn=True,
    ...                    valid_group=True)) is not None
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection, Engine

from core.db import retry_conflicts, write_transaction
from core.security.identity import Identity
from wms.db import counters, job_queries
from wms.logic.job_policy import GENERIC_PILOT, JOB_ADMINISTRATOR, JOB_SHARING, job_scope


def scope_for(ident: Identity) -> job_queries.Scope | None:
    scoped = job_scope(ident)
    if scoped:
        return job_queries.job_id_scope(sorted(scoped))
    if JOB_ADMINISTRATOR in ident.properties or GENERIC_PILOT in ident.properties:
        return None
    group = ident.group if JOB_SHARING in ident.properties else None
    return job_queries.owner_scope(ident.username or "", group)


def attributes(conn: Connection, ident: Identity, job_ids: Sequence[int],
               names: Sequence[str] | None = None) -> dict[int, dict[str, Any]]:
    """Attributes of the visible jobs among ``job_ids`` (others are simply absent)."""
    return job_queries.attributes_of(conn, job_ids, names, scope_for(ident))


def filters_from_dict(cond: dict[str, Any] | None) -> list[job_queries.Filter]:
    """DIRAC's ``{Attribute: value or [values]}`` condition dictionaries."""
    out: list[job_queries.Filter] = []
    for name, value in (cond or {}).items():
        if isinstance(value, list | tuple):
            out.append((name, "in", list(value)))
        else:
            out.append((name, "eq", value))
    return out


def filters_from_search(search: Sequence[dict[str, Any]]) -> list[job_queries.Filter]:
    """DiracX-style ``[{"parameter": ..., "operator": ..., "value"/"values": ...}]``."""
    out: list[job_queries.Filter] = []
    for item in search:
        if not isinstance(item, dict) or "parameter" not in item or "operator" not in item:
            raise job_queries.InvalidArgumentError(
                "each search item needs 'parameter', 'operator' and 'value' or 'values'")
        value = item.get("values", item.get("value"))
        out.append((str(item["parameter"]), str(item["operator"]), value))
    return out


# two folders on different Galera nodes read the same deltas; the second commit loses (1213)
@retry_conflicts()
def fold_counters(engine: Engine, *, batch: int = 50_000, batches: int = 10) -> int:
    """Fold pending job count deltas into the counters (a periodic task of the WMS services),
    ``batch`` at a time (one write transaction each) until none is left or ``batches`` were
    done; the write lock is taken only when there is something to fold. Returns how many
    deltas were folded."""
    done = 0
    for _ in range(batches):
        with engine.connect() as conn:
            if not counters.pending(conn):
                break
        with write_transaction(engine) as conn:
            folded = counters.fold(conn, limit=batch)
        done += folded
        if folded < batch:
            break
    return done
