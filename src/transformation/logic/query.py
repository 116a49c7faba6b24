"""Input queries of transformations, compiled once and evaluated on files in Python.

The language is the catalog's (``findFilesByMetadata``, ``dfind``; see
:mod:`dms.db.metadata`): ``{field: value}``, ``{field: [a, b]}``, ``{field: {op: v, ...}}``
with ``= != < > <= >= in nin``, ``"Any"``, DIRAC's standard keys and ``Path``. A compiled
query checks a file's :class:`~dms.db.changes.FileFacts` without touching the database: this
is how files from the catalog's change journal are matched against every active
transformation, at a cost per file that does not depend on the catalog's size. The full
(SQL) evaluation of the same query is the catalog's own, used for reconciliation.

Example::

    >>> from dms.db.changes import FileFacts
    >>> q = compile_query({"run": {">=": 3}, "kind": "raw"}, {"run": "int", "kind": "string"})
    >>> q.matches(FileFacts(1, 1, {}, meta={"run": 4, "kind": "raw"})), sorted(q.fields)
    (True, ['kind', 'run'])
    >>> compile_query({"nope": 1}, {})
    Traceback (most recent call last):
    ...
    ValueError: unknown metadata field 'nope'
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dms.db.changes import FileFacts
from dms.db.metadata import OPS, PATH_KEY, STANDARD, convert

Test = Callable[[Any], bool]
_CMP = {"<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge}


def _in(values: list[Any], inside: bool) -> Test:
    def test(v: Any) -> bool:
        return v is not None and (v in values) == inside
    return test


def _cmp(op: str, operand: Any) -> Test:
    fn: Callable[[Any, Any], bool] = {"=": operator.eq, "!=": operator.ne, **_CMP}[op]

    def test(v: Any) -> bool:
        return v is not None and fn(v, operand)
    return test


def _defined(v: Any) -> bool:
    return v is not None


def _term(kind: str, spec: Any) -> list[Test]:
    """Tests on one value (None = not defined) for one query term."""
    def many(value: Any) -> list[Any]:
        if not isinstance(value, (list, tuple)) or not value:
            raise ValueError(f"'in' needs a non-empty list, not {value!r}")
        return [convert(kind, v) for v in value]

    if isinstance(spec, Mapping):
        if not spec:
            raise ValueError("empty condition")
        tests: list[Test] = []
        for op, operand in spec.items():
            if op not in OPS:
                raise ValueError(f"unknown operator {op!r} (use one of {', '.join(OPS)})")
            if op in ("in", "nin") or (op in ("=", "!=") and isinstance(operand, list)):
                tests.append(_in(many(operand), op in ("in", "=")))
            elif isinstance(operand, (list, tuple, Mapping)):
                raise ValueError(f"Illegal query: list of values for {op!r}")
            else:
                tests.append(_cmp(op, convert(kind, operand)))
        return tests
    if isinstance(spec, (list, tuple)):
        return [_in(many(spec), True)]
    if spec == "Any":
        return [_defined]
    return [_cmp("=", convert(kind, spec))]


@dataclass
class CompiledQuery:
    query: dict[str, Any]
    path: str = "/"
    #: declared metadata fields the query reads
    fields: set[str] = field(default_factory=set)
    #: whether the query reads the replicas' SEs
    needs_ses: bool = False
    _meta: list[tuple[str, list[Test]]] = field(default_factory=list)
    _columns: list[tuple[str, list[Test]]] = field(default_factory=list)
    _ses: list[Test] = field(default_factory=list)

    @property
    def columns(self) -> set[str]:
        """The file columns the query reads."""
        return {column for column, _tests in self._columns}

    def matches(self, facts: FileFacts, path_dir: int | None = None) -> bool:
        """Whether the file matches (``path_dir``: the dir ID of :attr:`path`, if not /)."""
        if path_dir is not None and path_dir not in facts.dirs:
            return False
        for name, tests in self._meta:
            value = facts.meta.get(name)
            if not all(t(value) for t in tests):
                return False
        for column, tests in self._columns:
            value = facts.columns.get(column)
            if not all(t(value) for t in tests):
                return False
        if self._ses and not any(all(t(se) for t in self._ses) for se in facts.ses):
            return False
        return True


def compile_query(query: Any, kinds: Mapping[str, str]) -> CompiledQuery:
    """Validate and compile a metaQuery (``kinds``: the catalog's declared fields); a
    ValueError names the bad term."""
    if not isinstance(query, Mapping):
        raise ValueError("a metadata query is a dict {field: condition}")
    out = CompiledQuery(dict(query))
    for name, spec in query.items():
        if not isinstance(name, str):
            raise ValueError(f"bad field name {name!r}")
        if name == PATH_KEY:
            if not isinstance(spec, str) or not spec.startswith("/"):
                raise ValueError(f"Path must be an absolute directory, not {spec!r}")
            out.path = spec.rstrip("/") or "/"
            continue
        try:
            if name in kinds:
                out.fields.add(name)
                out._meta.append((name, _term(kinds[name], spec)))
            elif name in STANDARD:
                column, kind = STANDARD[name]
                if column == "se":
                    out.needs_ses = True
                    out._ses.extend(_term(kind, spec))
                else:
                    out._columns.append((column, _term(kind, spec)))
            else:
                raise ValueError(f"unknown metadata field {name!r}")
        except ValueError as exc:
            if "unknown metadata field" in str(exc):
                raise
            raise ValueError(f"{name}: {exc}") from None
    return out
