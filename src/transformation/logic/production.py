"""Productions: named steps, each a transformation, linked by their queries.

A step's transformation puts ``OutputMetadata`` on its output directory; a child step's
input query selects those outputs by that metadata. Before anything is stored the links are
checked: a step with parents must query something its parents produce (at least one query
key the parent's ``OutputMetadata`` sets, with a value the term accepts), a data-operation
step produces nothing to build on, and two sibling steps whose queries both accept what their
common parent produces would feed one file to both (refused). The production and all its
transformations are stored in one transaction: a bad step creates nothing.

Statuses: ``New`` -> ``Active`` (every step's transformation started) <-> ``Stopped``;
``Cleaning`` (every transformation cleaned) -> ``Cleaned`` when they all are.

Example::

    >>> overlap({"step": "reco"}, {"step": "reco", "kind": "x"}, {"step": "reco"}, {"step":
    ...         "string", "kind": "string"})
    True
    >>> overlap({"step": "reco"}, {"step": "merged"}, {"step": "reco"}, {"step": "string"})
    False
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, Row

from core.config.transformations import BUILTIN_JOB_TYPES, TransformationsConfig
from core.db import utcnow, write_transaction
from core.exceptions import (
    AlreadyExistsError,
    InvalidArgumentError,
    InvalidTransitionError,
    NotAuthorizedError,
    NotFoundError,
)
from core.ids import as_id
from dms.db.changes import FileFacts
from transformation.db.tables import production_steps, productions
from transformation.db.tables import transformations as trans_t
from transformation.logic import definition, states
from transformation.logic import transformations as tlogic
from transformation.logic.catalog import CatalogView
from transformation.logic.query import compile_query

NEW, ACTIVE, STOPPED, CLEANING, CLEANED = "New", "Active", "Stopped", "Cleaning", "Cleaned"
PRODUCTION_TRANSITIONS = {NEW: {ACTIVE, CLEANING}, ACTIVE: {STOPPED, CLEANING},
                          STOPPED: {ACTIVE, CLEANING}, CLEANING: {CLEANED}, CLEANED: set()}
KEYS = {"Name", "ProductionName", "Description", "Steps"}
STEP_KEYS = {"Name", "Parents", "Transformation"}


@dataclass
class Step:
    name: str
    parents: list[str]
    desc: definition.Description


def accepts(query: Mapping[str, Any], produced: Mapping[str, Any],
            kinds: Mapping[str, str]) -> tuple[bool, bool]:
    """(linked, accepted): whether ``query`` reads a key ``produced`` sets, and whether the
    terms on those keys accept the produced values."""
    common = {k: v for k, v in query.items() if k in produced}
    if not common:
        return False, False
    compiled = compile_query(common, kinds)
    return True, compiled.matches(FileFacts(0, 0, {}, meta=dict(produced)))


def overlap(a: Mapping[str, Any], b: Mapping[str, Any], produced: Mapping[str, Any],
            kinds: Mapping[str, str]) -> bool:
    """Whether two sibling queries would both take a file of a parent producing
    ``produced``."""
    if not (accepts(a, produced, kinds)[1] and accepts(b, produced, kinds)[1]):
        return False
    for key in set(a) & set(b) - set(produced):  # keys the files carry themselves
        left, right = _values(a[key]), _values(b[key])
        if left is not None and right is not None and not left & right:
            return False
    return True


def _values(term: Any) -> set[str] | None:
    """The values an equality / ``in`` term accepts (None: another kind of term)."""
    if isinstance(term, Mapping):
        if set(term) in ({"="}, {"in"}):
            term = next(iter(term.values()))
        else:
            return None
    if isinstance(term, (list, tuple)):
        return {str(v) for v in term}
    return None if term == "Any" else {str(term)}


def _bad(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(message)


def describe(data: Any, *, settings: TransformationsConfig, kinds: Mapping[str, str],
             actor: tlogic.Actor, known_ses: list[str] | None = None
             ) -> tuple[str, str, list[Step]]:
    """Check a production description; returns (name, description, steps)."""
    if not isinstance(data, Mapping):
        raise _bad("a production description is a dict with Name and Steps")
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise _bad(f"unknown field(s) {', '.join(map(str, unknown))} "
                   f"(known: {', '.join(sorted(KEYS))})")
    name = data.get("Name") or data.get("ProductionName") or ""
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or name.isdigit():
        raise _bad("Name must be a non-empty string (not a number) of at most 200 characters")
    name = name.strip()
    text = data.get("Description") or ""
    if not isinstance(text, str):
        raise _bad("Description must be a string")
    raw_steps = data.get("Steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise _bad("Steps must be a non-empty list")
    steps: list[Step] = []
    seen: dict[str, Step] = {}
    for index, raw in enumerate(raw_steps):
        where = f"Steps[{index}]"
        if not isinstance(raw, Mapping):
            raise _bad(f"{where} must be a dict with Name, Parents, Transformation")
        extra = sorted(set(raw) - STEP_KEYS)
        if extra:
            raise _bad(f"{where}: unknown field(s) {', '.join(map(str, extra))}")
        step_name = raw.get("Name")
        if not isinstance(step_name, str) or not step_name or len(step_name) > 64:
            raise _bad(f"{where}.Name must be a non-empty string")
        if step_name in seen:
            raise _bad(f"{where}.Name: step {step_name!r} appears twice")
        parents = raw.get("Parents") or []
        if isinstance(parents, str):
            parents = [parents]
        if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
            raise _bad(f"{where}.Parents must be a list of step names")
        for parent in parents:
            if parent not in seen:
                raise _bad(f"step {step_name}: parent {parent!r} is not an earlier step")
        body = dict(raw.get("Transformation") or {})
        body.setdefault("Name", f"{name}_{step_name}")
        body.pop("Status", None)
        try:
            desc = definition.describe(body, settings=settings, kinds=kinds,
                                       owner=(actor.user, actor.group, actor.vo),
                                       known_ses=known_ses)
        except InvalidArgumentError as exc:
            raise _bad(f"step {step_name}: {exc.message}") from None
        if desc.input_files:
            raise _bad(f"step {step_name}: steps take their input by query, not InputFiles")
        step = Step(step_name, parents, desc)
        steps.append(step)
        seen[step_name] = step
    _check_links(steps, seen, kinds)
    return name, text, steps


def _query(step: Step) -> dict[str, Any]:
    text = step.desc.values.get("input_query")
    import json

    return json.loads(text) if text else {}


def _check_links(steps: list[Step], by_name: Mapping[str, Step],
                 kinds: Mapping[str, str]) -> None:
    for step in steps:
        query = _query(step)
        for parent_name in step.parents:
            parent = by_name[parent_name]
            if parent.desc.kind != "Job":
                raise _bad(f"step {step.name}: parent {parent.name} is a data operation and "
                           "produces no files")
            if not parent.desc.output_metadata:
                raise _bad(f"step {step.name}: parent {parent.name} sets no OutputMetadata, "
                           "so no query can find its outputs")
            linked, accepted = accepts(query, parent.desc.output_metadata, kinds)
            if not linked or not accepted:
                raise _bad(f"step {step.name}: no parent produces what its query selects "
                           f"({parent.name} produces {parent.desc.output_metadata})")
        if step.parents and not query:
            raise _bad(f"step {step.name}: a step with parents needs an InputMetaQuery")
    for parent in steps:
        children = [s for s in steps if parent.name in s.parents]
        for i, a in enumerate(children):
            for b in children[i + 1:]:
                if overlap(_query(a), _query(b), parent.desc.output_metadata, kinds):
                    raise _bad(f"steps {a.name} and {b.name} overlap: a file of {parent.name} "
                               "would feed both")


def create(engine: Engine, catalog: CatalogView, settings: TransformationsConfig,
           actor: tlogic.Actor, data: Any, *, known_ses: list[str] | None = None) -> int:
    name, text, steps = describe(data, settings=settings, kinds=catalog.fields(), actor=actor,
                                 known_ses=known_ses)
    now = utcnow()
    try:
        with write_transaction(engine) as conn:
            if conn.execute(sa.select(productions.c.production_id).where(
                    productions.c.vo == actor.vo, productions.c.name == name)).first():
                raise AlreadyExistsError(f"Name: production {name!r} exists in VO {actor.vo}")
            pid = int(conn.execute(productions.insert().values(
                name=name, vo=actor.vo, description=text, author=actor.user,
                author_group=actor.group, status=NEW, created=now, last_update=now)
            ).inserted_primary_key[0])  # type: ignore[index]
            for position, step in enumerate(steps):
                try:
                    tid = tlogic.store(conn, step.desc, actor, {}, production_id=pid)
                except AlreadyExistsError as exc:
                    raise AlreadyExistsError(f"step {step.name}: {exc.message}") from None
                conn.execute(production_steps.insert().values(
                    production_id=pid, position=position, name=step.name,
                    parents=",".join(step.parents), transformation_id=tid))
    except sa.exc.IntegrityError:
        raise AlreadyExistsError(f"Name: production {name!r} exists in VO {actor.vo}") from None
    return pid


def find(engine: Engine, ident: int | str, vo: str | None) -> Row[Any]:
    query = sa.select(productions)
    number = as_id(ident)
    if number is not None:
        query = query.where(productions.c.production_id == number)
    elif isinstance(ident, str):
        query = query.where(productions.c.name == ident)
    else:
        raise NotFoundError(f"Production {ident} does not exist")
    if vo:
        query = query.where(productions.c.vo == vo)
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        raise NotFoundError(f"Production {ident} does not exist")
    return row


def steps_of(engine: Engine, pid: int) -> list[Row[Any]]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(production_steps, trans_t.c.status,
                                           trans_t.c.name.label("transformation_name"),
                                           trans_t.c.type)
                                 .join(trans_t, trans_t.c.transformation_id ==
                                       production_steps.c.transformation_id)
                                 .where(production_steps.c.production_id == pid)
                                 .order_by(production_steps.c.position)))


def _refresh(engine: Engine, row: Row[Any], steps: list[Row[Any]]) -> Row[Any]:
    """A Cleaning production whose steps are all cleaned is Cleaned."""
    done = {states.CLEANED, states.TRANSFORMATION_CLEANED}
    if row.status == CLEANING and steps and all(s.status in done for s in steps):
        with write_transaction(engine) as conn:
            conn.execute(productions.update().where(
                productions.c.production_id == row.production_id,
                productions.c.status == CLEANING).values(status=CLEANED,
                                                         last_update=utcnow()))
        return find(engine, row.production_id, None)
    return row


def to_wire(engine: Engine, row: Row[Any]) -> dict[str, Any]:
    steps = steps_of(engine, row.production_id)
    row = _refresh(engine, row, steps)
    return {"ProductionID": row.production_id, "ProductionName": row.name, "VO": row.vo,
            "Description": row.description, "Author": row.author,
            "AuthorGroup": row.author_group, "Status": row.status,
            "CreationDate": row.created, "LastUpdate": row.last_update,
            "Steps": [{"Name": s.name, "Parents": [p for p in s.parents.split(",") if p],
                       "TransformationID": s.transformation_id,
                       "TransformationName": s.transformation_name, "Type": s.type,
                       "Status": s.status} for s in steps]}


def listing(engine: Engine, vo: str | None) -> list[dict[str, Any]]:
    query = sa.select(productions).order_by(productions.c.production_id)
    if vo:
        query = query.where(productions.c.vo == vo)
    with engine.connect() as conn:
        rows = conn.execute(query).fetchall()
    return [to_wire(engine, r) for r in rows]


def _set(engine: Engine, actor: tlogic.Actor, ident: int | str, status: str,
         step_status: str) -> None:
    row = find(engine, ident, actor.vo or None)
    if not tlogic.may_modify(actor, row, stopping=status == STOPPED):
        raise NotAuthorizedError(f"You do not have permissions for production "
                                 f"{row.production_id}")
    if status != row.status and status not in PRODUCTION_TRANSITIONS.get(row.status, set()):
        raise InvalidTransitionError(f"production status cannot go from {row.status} "
                                     f"to {status}")
    for step in steps_of(engine, row.production_id):
        if step.status != step_status:
            try:
                states.check_transition(step.status, step_status)
            except InvalidTransitionError:
                continue  # a step already further on (e.g. Completed) stays there
            tlogic.change_status(engine, step.transformation_id, step_status, actor.user,
                                 f"Production {row.name}: status changed from {step.status} "
                                 f"to {step_status}")
    now = utcnow()
    with write_transaction(engine) as conn:
        conn.execute(productions.update().where(
            productions.c.production_id == row.production_id).values(status=status,
                                                                     last_update=now))


def start(engine: Engine, actor: tlogic.Actor, ident: int | str) -> None:
    _set(engine, actor, ident, ACTIVE, states.ACTIVE)


def stop(engine: Engine, actor: tlogic.Actor, ident: int | str) -> None:
    _set(engine, actor, ident, STOPPED, states.STOPPED)


def clean(engine: Engine, actor: tlogic.Actor, ident: int | str) -> None:
    _set(engine, actor, ident, CLEANING, states.CLEANING)


def summary(engine: Engine, ident: int | str, vo: str | None,
            job_types: Collection[str] = BUILTIN_JOB_TYPES) -> list[dict[str, Any]]:
    """Per step: files by status, tasks by status, their jobs (job types) or requests by
    status, % done."""
    row = find(engine, ident, vo)
    out = []
    for step in steps_of(engine, row.production_id):
        files = tlogic.file_stats(engine, step.transformation_id)
        tasks = tlogic.task_stats(engine, step.transformation_id)
        out.append({
            "Step": step.name, "TransformationID": step.transformation_id,
            "Type": step.type, "Status": step.status,
            **{f"Files_{s}": files.get(s, 0) for s in (
                states.UNUSED, states.ASSIGNED, states.PROCESSED, states.PROBLEMATIC,
                states.MAX_RESET)},
            "Files_Total": files["Total"],
            "Tasks": {k: v for k, v in tasks.items() if k != "TotalCreated"},
            "Jobs" if step.type in job_types else "Requests": {
                k: v for k, v in tasks.items()
                if k not in ("TotalCreated", states.CREATED, states.RESERVED)},
            "Tasks_Total": tasks["TotalCreated"],
            "PercentDone": tlogic.percent_done(files, tasks)})
    return out


__all__ = ["clean", "create", "describe", "listing", "overlap", "start", "stop", "summary"]
