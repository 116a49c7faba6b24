"""Typed metadata fields, their values on directories and files, and query compilation.

A query is DIRAC's metaQuery dict: ``{field: value}`` (equality; ``"Any"`` = defined),
``{field: [v1, v2]}`` (in), ``{field: {op: operand, ...}}`` with ops ``=``, ``!=``, ``<``,
``>``, ``<=``, ``>=``, ``in``, ``nin`` (several ops = a range). Terms are ANDed. Besides the
declared fields, DIRAC's standard file keys work: ``Size``, ``CreationDate`` (the registration
time: ``{"CreationDate": {">=": T}}`` is "registered since T"), ``ModificationDate``, ``User``
/``Owner``, ``Group``/``OwnerGroup``, ``Status``, ``GUID``, ``Name``/``FileName``,
``Checksum``, ``SE`` (files with a replica there). A value set on a directory applies to every
file below it.

Example::

    >>> convert("int", "3"), convert("date", "2026-01-02").isoformat()
    (3, '2026-01-02T00:00:00+00:00')
    >>> canonical_type("VARCHAR(128)"), dirac_type("date")
    ('string', 'DATETIME')
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.db import utcnow
from core.in_values import in_values
from dms.db.catalog import subtree_ids
from dms.db.tables import (
    dir_closure,
    dir_meta,
    file_meta,
    files,
    meta_fields,
    replicas,
    storage_elements,
)

TYPES = {"int": "v_int", "float": "v_float", "string": "v_str", "date": "v_date"}
_ALIASES = {"int": "int", "integer": "int", "bigint": "int", "float": "float",
            "double": "float", "string": "string", "str": "string", "varchar": "string",
            "text": "string", "date": "date", "datetime": "date", "timestamp": "date"}
_DIRAC = {"int": "INT", "float": "FLOAT", "string": "VARCHAR(128)", "date": "DATETIME"}
OPS = ("=", "!=", "<", ">", "<=", ">=", "in", "nin")
STANDARD = {"Size": ("size", "int"), "CreationDate": ("created", "date"),
            "ModificationDate": ("modified", "date"), "User": ("owner", "string"),
            "Owner": ("owner", "string"), "Group": ("owner_group", "string"),
            "OwnerGroup": ("owner_group", "string"), "Status": ("status", "string"),
            "GUID": ("guid", "string"), "Name": ("name", "string"),
            "FileName": ("name", "string"), "Checksum": ("checksum", "string"),
            "CheckSum": ("checksum", "string"), "SE": ("se", "string")}
#: not fields: the subtree a query (or a dataset) is restricted to
PATH_KEY = "Path"


def canonical_type(text: str) -> str:
    base = str(text).strip().lower().split("(")[0].split()[0] if str(text).strip() else ""
    if base not in _ALIASES:
        raise ValueError(f"unknown metadata type {text!r} (int, float, string, date)")
    return _ALIASES[base]


def dirac_type(kind: str) -> str:
    return _DIRAC[kind]


def convert(kind: str, value: Any) -> Any:
    """``value`` as the Python value of a field of type ``kind``; ValueError if it is not."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a {kind}")
    try:
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "string":
            if isinstance(value, (dict, list)):
                raise ValueError
            text = str(value)
            if len(text) > 255:
                raise ValueError
            return text
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
        text = str(value).strip().replace("T", " ")
        for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
            try:
                return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
            except ValueError:
                continue
        return datetime.fromisoformat(str(value)).astimezone(timezone.utc)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a valid {kind}") from None


# -- fields -----------------------------------------------------------------------------------

def fields(conn: Connection) -> dict[str, str]:
    """name -> canonical type."""
    return {name: kind for name, kind in conn.execute(
        sa.select(meta_fields.c.name, meta_fields.c.type))}


def add_field(conn: Connection, name: str, kind: str) -> bool:
    """Declare a field; False when it exists with that type (ValueError with another)."""
    known = fields(conn)
    if name in known:
        if known[name] != kind:
            raise ValueError(f"metadata field {name} exists with type {known[name]}")
        return False
    conn.execute(meta_fields.insert().values(name=name, type=kind, created=utcnow()))
    return True


def delete_field(conn: Connection, name: str) -> None:
    conn.execute(dir_meta.delete().where(dir_meta.c.field == name))
    conn.execute(file_meta.delete().where(file_meta.c.field == name))
    conn.execute(meta_fields.delete().where(meta_fields.c.name == name))


# -- values -----------------------------------------------------------------------------------

def _row(owner_col: str, owner_id: int, field: str, kind: str, value: Any) -> dict[str, Any]:
    row: dict[str, Any] = {owner_col: owner_id, "field": field, "v_int": None,
                           "v_float": None, "v_str": None, "v_date": None}
    row[TYPES[kind]] = value
    return row


def set_values(conn: Connection, *, dir_id: int | None = None, file_id: int | None = None,
               values: Mapping[str, tuple[str, Any]]) -> None:
    """Set ``{field: (type, value)}`` on one directory or file (replacing old values)."""
    table, col, ident = (dir_meta, "dir_id", dir_id) if dir_id is not None else (
        file_meta, "file_id", file_id)
    assert ident is not None  # noqa: S101 - one of them is given
    conn.execute(table.delete().where(table.c[col] == ident,
                                      table.c.field.in_(list(values))))
    conn.execute(table.insert(), [_row(col, ident, f, k, v) for f, (k, v) in values.items()])


def delete_values(conn: Connection, *, dir_id: int | None = None, file_id: int | None = None,
                  names: list[str]) -> None:
    table, col, ident = (dir_meta, "dir_id", dir_id) if dir_id is not None else (
        file_meta, "file_id", file_id)
    conn.execute(table.delete().where(table.c[col] == ident, table.c.field.in_(names)))


def _value(row: Any, kind: str) -> Any:
    return getattr(row, TYPES[kind])


def dir_values(conn: Connection, dir_id: int, kinds: Mapping[str, str], inherited: bool = True
               ) -> dict[str, tuple[Any, int]]:
    """field -> (value, defining dir_id) for a directory (with its ancestors' values)."""
    query = sa.select(dir_meta, dir_closure.c.depth).join(
        dir_closure, dir_closure.c.ancestor_id == dir_meta.c.dir_id).where(
        dir_closure.c.descendant_id == dir_id)
    if not inherited:
        query = query.where(dir_closure.c.depth == 0)
    out: dict[str, tuple[Any, int, int]] = {}
    for row in conn.execute(query):
        kind = kinds.get(row.field)
        if kind is None:
            continue
        if row.field not in out or row.depth < out[row.field][2]:
            out[row.field] = (_value(row, kind), row.dir_id, row.depth)
    return {f: (v, d) for f, (v, d, _depth) in out.items()}


def file_values(conn: Connection, file_id: int, kinds: Mapping[str, str]) -> dict[str, Any]:
    out = {}
    for row in conn.execute(sa.select(file_meta).where(file_meta.c.file_id == file_id)):
        if row.field in kinds:
            out[row.field] = _value(row, kinds[row.field])
    return out


def defined_below(conn: Connection, dir_id: int, names: list[str]) -> set[str]:
    """The fields among ``names`` set on a strict subdirectory or on a file below ``dir_id``."""
    below = sa.select(dir_closure.c.descendant_id).where(dir_closure.c.ancestor_id == dir_id,
                                                         dir_closure.c.depth > 0)
    found = set(conn.execute(sa.select(dir_meta.c.field).distinct().where(
        dir_meta.c.field.in_(names), dir_meta.c.dir_id.in_(below))).scalars())
    in_files = sa.select(files.c.file_id).where(files.c.dir_id.in_(subtree_ids(dir_id)))
    found.update(conn.execute(sa.select(file_meta.c.field).distinct().where(
        file_meta.c.field.in_(names), file_meta.c.file_id.in_(in_files))).scalars())
    return found


# -- queries ----------------------------------------------------------------------------------

def _conditions(column: Any, kind: str, spec: Any) -> list[Any]:
    """SQL conditions on ``column`` for one query term."""
    def one(value: Any) -> Any:
        return convert(kind, value)

    def many(value: Any) -> list[Any]:
        if not isinstance(value, (list, tuple)) or not value:
            raise ValueError(f"'in' needs a non-empty list, not {value!r}")
        return [one(v) for v in value]

    if isinstance(spec, Mapping):
        if not spec:
            raise ValueError("empty condition")
        out = []
        for op, operand in spec.items():
            if op not in OPS:
                raise ValueError(f"unknown operator {op!r} (use one of {', '.join(OPS)})")
            if op in ("in", "nin") or (op in ("=", "!=") and isinstance(operand, list)):
                values = many(operand)
                out.append(in_values(column, values) if op in ("in", "=") else
                           sa.and_(column.is_not(None), in_values(column, values, negate=True)))
            elif isinstance(operand, (list, tuple, Mapping)):
                raise ValueError(f"Illegal query: list of values for {op!r}")
            else:
                value = one(operand)
                out.append({"=": column == value, "!=": sa.and_(column.is_not(None),
                                                                column != value),
                            "<": column < value, ">": column > value, "<=": column <= value,
                            ">=": column >= value}[op])
        return out
    if isinstance(spec, (list, tuple)):
        return [in_values(column, many(spec))]
    if spec == "Any":
        return [column.is_not(None)]
    return [column == one(spec)]


#: above this many directories, a directory filter stays a sub-select instead of a list
DIR_LIST_MAX = 20_000


def _defined(conn: Connection, table: sa.Table, name: str) -> bool:
    return conn.execute(sa.select(table.c.field).where(table.c.field == name).limit(1)
                        ).first() is not None


def file_conditions(conn: Connection, query: Mapping[str, Any], kinds: Mapping[str, str],
                    top_id: int | None = None) -> list[Any]:
    """Conditions on :data:`~dms.db.tables.files` for a metaQuery (without ``Path``), files
    restricted to the subtree of directory ``top_id`` when given.

    Terms on fields only set on directories are resolved first to the set of directories
    they select (the closure makes inheritance a join); those sets are intersected here and
    the files are then fetched by ``dir_id`` (index). Terms on fields set on files become
    correlated ``EXISTS`` probes of the value table's primary key when a directory set
    already narrows the files, else ``IN`` sub-selects on the ``(field, value)`` index.
    """
    dir_sets: list[set[int]] = []
    dir_selects: list[sa.Select[Any]] = []
    mixed: list[tuple[str, str, Any, bool, bool]] = []
    plain: list[Any] = []
    for name, spec in query.items():
        if name == PATH_KEY:
            continue
        if name in kinds:
            kind = kinds[name]
            on_dirs, on_files = _defined(conn, dir_meta, name), _defined(conn, file_meta, name)
            if not on_dirs and not on_files:
                _conditions(dir_meta.c[TYPES[kind]], kind, spec)  # still validate the term
                return [sa.false()]
            if on_dirs and not on_files:
                dir_selects.append(_dirs_select(name, kind, spec, top_id))
                dir_sets.append(set(conn.execute(dir_selects[-1]).scalars()))
            else:
                mixed.append((name, kind, spec, on_dirs, on_files))
        elif name in STANDARD:
            column_name, kind = STANDARD[name]
            if column_name == "se":
                on_se = sa.select(replicas.c.file_id).join(
                    storage_elements, storage_elements.c.se_id == replicas.c.se_id).where(
                    *_conditions(storage_elements.c.name, kind, spec))
                plain.append(files.c.file_id.in_(on_se))
            else:
                plain.extend(_conditions(files.c[column_name], kind, spec))
        else:
            raise ValueError(f"unknown metadata field {name!r}")
    out: list[Any] = []
    narrowed = bool(dir_sets)
    if dir_sets:
        chosen = set.intersection(*dir_sets)
        if not chosen:
            return [sa.false()]
        if len(chosen) <= DIR_LIST_MAX:
            out.append(files.c.dir_id.in_(sorted(chosen)))
        else:  # too many to list: let the database join the directory selections
            narrowed = False
            out.extend(files.c.dir_id.in_(select) for select in dir_selects)
    elif top_id is not None:
        out.append(files.c.dir_id.in_(subtree_ids(top_id)))
    for name, kind, spec, on_dirs, _on_files in mixed:
        column = TYPES[kind]
        own = _conditions(file_meta.c[column], kind, spec)
        if narrowed:
            by_file: Any = sa.exists().where(file_meta.c.file_id == files.c.file_id,
                                             file_meta.c.field == name, *own)
        else:
            by_file = files.c.file_id.in_(sa.select(file_meta.c.file_id).where(
                file_meta.c.field == name, *own))
        if on_dirs:
            by_dir = files.c.dir_id.in_(_dirs_select(name, kind, spec, top_id))
            out.append(sa.or_(by_file, by_dir))
        else:
            out.append(by_file)
    return out + plain


def _dirs_select(name: str, kind: str, spec: Any, top_id: int | None) -> sa.Select[Any]:
    """Directories (under ``top_id``) that have or inherit a value of ``name`` matching."""
    query = sa.select(dir_closure.c.descendant_id).join(
        dir_meta, dir_meta.c.dir_id == dir_closure.c.ancestor_id).where(
        dir_meta.c.field == name, *_conditions(dir_meta.c[TYPES[kind]], kind, spec))
    if top_id is not None:
        query = query.where(dir_closure.c.descendant_id.in_(subtree_ids(top_id)))
    return query
