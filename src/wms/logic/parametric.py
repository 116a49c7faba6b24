"""DIRAC's parametric jobs: one JDL with ``Parameters`` expands into N child JDLs.

Sequences (``<seq>`` is empty for the unnamed one, ``.<name>`` for a named one):

* ``Parameters<seq> = { v0, v1, ... }``: the values as given, each keeping its type;
* ``Parameters<seq> = N`` with ``ParameterStart<seq>`` (default 1), ``ParameterStep<seq>`` (0) and
  ``ParameterFactor<seq>`` (1): ``v0 = Start``, ``v(k) = v(k-1) * Factor + Step``; a named
  sequence may give only Start/Step/Factor and takes N from the others.

Every sequence must have the same length ("Different length of parameter vectors").
In every string value, recursively through lists and nested records, of the other attributes:

* ``%n``: the child's index, zero-padded to ``len(str(N - 1))``;
* ``%s`` / ``%(name)s``: the value of the unnamed / named sequence. In a quoted string it is
  text; a *bare* placeholder (``NumberOfProcessors = %s;``, ``InputData = { %s };``) takes the
  value itself with its type, and a list value is spliced into the enclosing list (DIRAC's
  ``InputData = {%s}`` idiom);
* ``%j`` (the job ID) and ``%%`` (a literal ``%``) are left as written: IDs are only known once
  the jobs are inserted. :func:`substitute_job_id` then replaces ``%j`` and turns ``%%`` into
  ``%``; call it on each child (and only on children: a non-parametric JDL is never rewritten,
  as in DIRAC). Values put into a string have their ``%`` doubled until then, so that a value
  is never read as a placeholder.

Each child gets ``Parameter`` / ``Parameter.<name>`` (the value) and ``ParameterNumber`` (the
index) and loses the ``Parameters*`` attributes. Floats are written with 15 significant digits
and a ``.0`` when integral (``1.0``, ``0.3``): DIRAC uses ``str()``, which gives the same text
except where binary rounding shows (DIRAC: ``0.30000000000000004``).

>>> from wms.logic.jdl import parse_jdl
>>> jdl = parse_jdl('''Executable = "run"; Arguments = "-i %s -n %n -j %j";
...     Parameters = 3; ParameterStart = 1; ParameterStep = 1; ParameterFactor = 2;''')
>>> children = expand_parametric(jdl)
>>> [child["Arguments"] for child in children]
['-i 1 -n 0 -j %j', '-i 3 -n 1 -j %j', '-i 7 -n 2 -j %j']
>>> children[2]["Parameter"], children[2]["ParameterNumber"]
(7, 2)
>>> substitute_job_id(children[2], 1234)["Arguments"]
'-i 7 -n 2 -j 1234'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TypeAlias, overload

from core.exceptions import InvalidJDLError
from wms.logic.jdl import JDL, Expr, JDLValue

__all__ = [
    "DEFAULT_MAX_JOBS",
    "expand_parametric",
    "expand_with_varying",
    "is_parametric",
    "job_id_attributes",
    "parameter_vectors",
    "substitute_job_id",
]

DEFAULT_MAX_JOBS = 10000
_BASES = ("parameters", "parameterstart", "parameterstep", "parameterfactor")
_INT_LIMIT = 2**63 - 1
_PLACEHOLDER = re.compile(r"%(?:([%jns])|\(([^()%]*)\)s)")
_JOB_ID = re.compile(r"%([%j])")


def _split(key: str) -> tuple[str, str] | None:
    """``("parameterstart", "name")`` for ``parameterstart.name``; None for other attributes."""
    base, dot, seq = key.partition(".")
    if base not in _BASES or (dot and not seq):
        return None
    return base, seq


def is_parametric(jdl: JDL) -> bool:
    """Whether ``jdl`` has a ``Parameters`` or ``Parameters.<name>`` attribute.

    >>> from wms.logic.jdl import JDL
    >>> is_parametric(JDL({"Parameters.A": ["x", "y"]})), is_parametric(JDL({"Parameter": 1}))
    (True, False)
    """
    return any(key == "parameters" or key.startswith("parameters.") for key in jdl._values)


def _format_float(value: float) -> str:
    text = f"{value:.15g}"
    if "." not in text and "e" not in text and "n" not in text:
        text += ".0"
    return text


_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _number(jdl: JDL, name: str) -> int | float:
    """A ParameterStart/Step/Factor value; quoted numbers are accepted, as DIRAC does."""
    value = jdl[name]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _NUMBER_TEXT.fullmatch(value.strip()):
        text = value.strip()
        return float(text) if any(c in text for c in ".eE") else int(text)
    raise InvalidJDLError(f"Illegal value for {name} JDL field: {value}")


def _generate(
    count: int, start: int | float, step: int | float, factor: int | float, name: str
) -> list[JDLValue]:
    use_float = any(isinstance(x, float) for x in (start, step, factor))
    current: int | float = float(start) if use_float else start
    values: list[JDLValue] = []
    for index in range(count):
        if index:
            current = current * factor + step
        if use_float:
            if not math.isfinite(current):
                raise InvalidJDLError(f"parameter sequence '{name}' overflows at index {index}")
            values.append(float(_format_float(current)))
        else:
            if abs(current) > _INT_LIMIT:
                raise InvalidJDLError(
                    f"parameter sequence '{name}' leaves the 64-bit range at index {index}"
                )
            values.append(current)
    return values


def parameter_vectors(jdl: JDL, max_jobs: int = DEFAULT_MAX_JOBS) -> dict[str, list[JDLValue]]:
    """The value vectors by sequence name (``""`` for the unnamed one), all of one length.

    Empty for a non-parametric JDL. Raises :class:`~core.exceptions.InvalidJDLError` on
    inconsistent vectors, a bad count, or more than ``max_jobs`` values.

    >>> from wms.logic.jdl import parse_jdl
    >>> parameter_vectors(parse_jdl('Parameters = {"a", "b"}; ParameterStart.x = 5'))
    {'': ['a', 'b'], 'x': [5, 5]}
    """
    if not is_parametric(jdl):
        return {}
    spelled: dict[str, str] = {}  # sequence key -> attribute name of its Parameters (or other)
    given: dict[str, dict[str, str]] = {}  # sequence key -> base -> attribute name
    count: int | None = None
    counted_by = ""
    for name in jdl:
        split = _split(name.lower())
        if split is None:
            continue
        base, seq = split
        given.setdefault(seq, {})[base] = name
        if base != "parameters":
            continue
        value = jdl[name]
        if isinstance(value, list):
            length = len(value)
        else:
            try:
                length = jdl.get_int(name, 0)
            except InvalidJDLError:
                raise InvalidJDLError(
                    f"Inconsistent parametric job description: {name}={value}"
                ) from None
        if count is not None and length != count:
            raise InvalidJDLError(
                f"Different length of parameter vectors: '{name}' has {length} values, "
                f"'{counted_by}' has {count}"
            )
        count, counted_by = length, name
    if count is None or count <= 0:
        raise InvalidJDLError(f"Illegal number of job parameters {count}")
    if count > max_jobs:
        raise InvalidJDLError(
            f"The parametric job would make {count} jobs, more than the limit of {max_jobs}"
        )
    vectors: dict[str, list[JDLValue]] = {}
    for seq, bases in given.items():
        spelled[seq] = bases.get("parameters", next(iter(bases.values())))
        listed = jdl.get("parameters" + ("." + seq if seq else ""))
        if isinstance(listed, list):
            for value in listed:
                if isinstance(value, JDL):
                    raise InvalidJDLError(
                        f"{bases['parameters']}: a parameter value cannot be a record"
                    )
            vectors[seq] = list(listed)
            continue
        start = _number(jdl, bases["parameterstart"]) if "parameterstart" in bases else 1
        step = _number(jdl, bases["parameterstep"]) if "parameterstep" in bases else 0
        factor = _number(jdl, bases["parameterfactor"]) if "parameterfactor" in bases else 1
        vectors[seq] = _generate(count, start, step, factor, spelled[seq])
    # Key each vector by the user's spelling of its name ("Name" for ``Parameters.Name``).
    return {_seq_spelling(spelled[seq], seq): values for seq, values in vectors.items()}


def _seq_spelling(attribute: str, seq: str) -> str:
    return attribute.partition(".")[2] if seq else ""


# -- templates ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Child:
    """What one child substitutes: its index text, and per sequence key its value and text."""

    number: str
    values: dict[str, JDLValue]
    texts: dict[str, str | None]


def _escape(text: str) -> str:
    return text.replace("%", "%%") if "%" in text else text


def _escaped_value(value: JDLValue) -> JDLValue:
    if isinstance(value, Expr):
        return Expr(_escape(value))
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, list):
        return [_escaped_value(item) for item in value]
    return value


def _text_of(value: JDLValue) -> str | None:
    """The text a value puts into a string; None for a list (it cannot go into a string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _format_float(value)
    if isinstance(value, (str, int)):
        return str(value)
    return None


class _Template:
    """A string with placeholders, compiled once and rendered for each child."""

    __slots__ = ("parts", "whole", "expr")

    def __init__(self, parts: list[str | tuple[str, str]], whole: str | None, expr: bool):
        self.parts = parts  # literal text, or ("n", "") / ("s", sequence key)
        self.whole = whole  # sequence key when a bare word is exactly one %s / %(name)s
        self.expr = expr

    def render(self, child: _Child, attribute: str) -> JDLValue:
        if self.whole is not None:
            return _copy(child.values[self.whole])
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            elif part[0] == "n":
                out.append(child.number)
            else:
                text = child.texts[part[1]]
                if text is None:
                    raise InvalidJDLError(
                        f"attribute '{attribute}': a list parameter value cannot be put "
                        "into a string"
                    )
                out.append(text)
        text = "".join(out)
        return Expr(text) if self.expr else text


def _compile(text: str, keys: dict[str, str], attribute: str) -> _Template | None:
    """The template of ``text``; None when it has no placeholder to fill."""
    if "%" not in text:
        return None
    parts: list[str | tuple[str, str]] = []
    last = 0
    found = False
    for match in _PLACEHOLDER.finditer(text):
        code, name = match.groups()
        if code in ("%", "j"):
            continue  # left for substitute_job_id
        if code == "s":
            if "" not in keys:
                continue  # no unnamed sequence: DIRAC leaves %s alone
            part: tuple[str, str] = ("s", "")
        elif code == "n":
            part = ("n", "")
        else:
            key = keys.get(name.lower())
            if key is None:
                known = ", ".join(sorted(k for k in keys.values() if k)) or "none"
                raise InvalidJDLError(
                    f"attribute '{attribute}': unknown parameter sequence '{name}' in "
                    f"'%({name})s' (named sequences: {known})"
                )
            part = ("s", key)
        found = True
        if match.start() > last:
            parts.append(text[last : match.start()])
        parts.append(part)
        last = match.end()
    if not found:
        return None
    if last < len(text):
        parts.append(text[last:])
    is_expr = isinstance(text, Expr)
    whole = parts[0][1] if is_expr and len(parts) == 1 and parts[0][0] == "s" else None
    return _Template(parts, whole, is_expr)


class _ListPlan:
    """A list with a placeholder somewhere inside."""

    __slots__ = ("items",)

    def __init__(self, items: list[_Plan | None]) -> None:
        self.items = items


class _RecordPlan:
    """A nested record with a placeholder somewhere inside."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, _Plan | None]) -> None:
        self.fields = fields


_Plan: TypeAlias = "_Template | _ListPlan | _RecordPlan"


def _plan(value: JDLValue, keys: dict[str, str], attribute: str) -> _Plan | None:
    """How to build ``value`` for each child; None when it is the same for all."""
    if isinstance(value, str):
        return _compile(value, keys, attribute)
    if isinstance(value, list):
        items = [_plan(item, keys, attribute) for item in value]
        return None if all(p is None for p in items) else _ListPlan(items)
    if isinstance(value, JDL):
        fields = {k: _plan(v, keys, attribute) for k, v in value._values.items()}
        return None if all(p is None for p in fields.values()) else _RecordPlan(fields)
    return None


def _copy(value: JDLValue) -> JDLValue:
    if isinstance(value, list):
        return [_copy(item) for item in value]
    if isinstance(value, JDL):
        return value.copy()
    return value


def _render(value: JDLValue, plan: _Plan | None, child: _Child, attribute: str) -> JDLValue:
    if plan is None:
        return _copy(value)
    if isinstance(plan, _Template):
        return plan.render(child, attribute)
    if isinstance(plan, _ListPlan) and isinstance(value, list):
        items: list[JDLValue] = []
        for item, item_plan in zip(value, plan.items, strict=True):
            rendered = _render(item, item_plan, child, attribute)
            if isinstance(rendered, list) and isinstance(item_plan, _Template):
                items.extend(rendered)  # a list value put whole into a list: spliced
            else:
                items.append(rendered)
        return items
    if isinstance(plan, _RecordPlan) and isinstance(value, JDL):
        fields = plan.fields
        values = {k: _render(v, fields[k], child, attribute) for k, v in value._values.items()}
        return JDL._trusted(values, dict(value._names))
    raise AssertionError("a plan does not match its value")  # pragma: no cover


def expand_parametric(jdl: JDL, max_jobs: int = DEFAULT_MAX_JOBS) -> list[JDL]:
    """The child JDLs of a parametric JDL, or ``[jdl]`` when it is not parametric.

    >>> from wms.logic.jdl import parse_jdl
    >>> kids = expand_parametric(parse_jdl(
    ...     'Parameters.f = {"a.txt", "b.txt"}; InputSandbox = {"%(f)s"}; JobName = "job_%n"'))
    >>> [(k["JobName"], k["InputSandbox"], k["Parameter.f"]) for k in kids]
    [('job_0', ['a.txt'], 'a.txt'), ('job_1', ['b.txt'], 'b.txt')]
    """
    return expand_with_varying(jdl, max_jobs)[0]


def expand_with_varying(
    jdl: JDL, max_jobs: int = DEFAULT_MAX_JOBS
) -> tuple[list[JDL], frozenset[str]]:
    """:func:`expand_parametric`, and the lower-case names of the attributes that may differ
    between the children: those with a placeholder to fill, ``Parameter*`` and
    ``ParameterNumber``. Every other attribute has the same value in every child (the
    children hold the same attributes). A non-parametric JDL gives ``([jdl], frozenset())``.

    >>> from wms.logic.jdl import parse_jdl
    >>> kids, varying = expand_with_varying(parse_jdl(
    ...     'Executable = "x"; Parameters = 2; Arguments = "%s %j"; JobName = "%j"'))
    >>> sorted(varying)
    ['arguments', 'parameter', 'parameternumber']
    """
    vectors = parameter_vectors(jdl, max_jobs)
    if not vectors:
        return [jdl], frozenset()
    count = len(next(iter(vectors.values())))
    keys = {seq.lower(): seq for seq in vectors}
    base_values: dict[str, JDLValue] = {}
    base_names: dict[str, str] = {}
    plans: list[tuple[str, _Plan]] = []
    mutable: list[str] = []
    for key, value in jdl._values.items():
        if _split(key) is not None or key == "parameternumber" or key == "parameter":
            continue
        if key.startswith("parameter.") and key[len("parameter.") :] in keys:
            continue
        name = jdl._names[key]
        base_values[key] = value
        base_names[key] = name
        plan = _plan(value, keys, name)
        if plan is not None:
            plans.append((key, plan))
        elif isinstance(value, (list, JDL)):
            mutable.append(key)
    extra_names = {seq: ("Parameter." + seq if seq else "Parameter") for seq in vectors}
    for name in extra_names.values():
        base_names[name.lower()] = name
    base_names["parameternumber"] = "ParameterNumber"
    width = len(str(count - 1))
    escaped = {seq: [_escaped_value(v) for v in values] for seq, values in vectors.items()}
    texts = {seq: [_text_of(v) for v in values] for seq, values in escaped.items()}
    children: list[JDL] = []
    for index in range(count):
        child_values = {s: escaped[s][index] for s in vectors}
        child = _Child(str(index).zfill(width), child_values, {s: texts[s][index] for s in vectors})
        values = base_values.copy()
        for key in mutable:
            values[key] = _copy(values[key])
        for key, plan in plans:
            values[key] = _render(base_values[key], plan, child, base_names[key])
        for seq, name in extra_names.items():
            values[name.lower()] = _copy(child_values[seq])
        values["parameternumber"] = index
        children.append(JDL._trusted(values, dict(base_names)))
    varying = {key for key, _plan in plans} | {name.lower() for name in extra_names.values()}
    return children, frozenset(varying | {"parameternumber"})


# -- job IDs ------------------------------------------------------------------------------------


def _substitute(value: JDLValue, job_id: str) -> JDLValue:
    if isinstance(value, str):
        if "%" not in value:
            return value
        text = _JOB_ID.sub(lambda m: job_id if m.group(1) == "j" else "%", value)
        return Expr(text) if isinstance(value, Expr) else text
    if isinstance(value, list):
        return [_substitute(item, job_id) for item in value]
    if isinstance(value, JDL):
        return JDL._trusted(
            {k: _substitute(v, job_id) for k, v in value._values.items()}, dict(value._names)
        )
    return value


def _holds_percent(value: JDLValue) -> bool:
    if isinstance(value, str):
        return "%" in value
    if isinstance(value, list):
        return any(_holds_percent(item) for item in value)
    if isinstance(value, JDL):
        return any(_holds_percent(item) for item in value._values.values())
    return False


def job_id_attributes(jdl: JDL) -> frozenset[str]:
    """The lower-case names of the attributes :func:`substitute_job_id` may change (a ``%``
    somewhere in their value); the others it leaves as they are.

    >>> from wms.logic.jdl import parse_jdl
    >>> sorted(job_id_attributes(parse_jdl('A = "%j"; B = {"x", [C = "100%%"]}; D = "y"')))
    ['a', 'b']
    """
    return frozenset(key for key, value in jdl._values.items() if _holds_percent(value))


@overload
def substitute_job_id(jdl: JDL, job_id: int) -> JDL: ...
@overload
def substitute_job_id(jdl: str, job_id: int) -> str: ...


def substitute_job_id(jdl: JDL | str, job_id: int) -> JDL | str:
    """Replace ``%j`` by ``job_id`` and ``%%`` by ``%`` in a child's JDL (object or text).

    Returns a new JDL (or text); the argument is not changed.

    >>> substitute_job_id('[ Arguments = "run %j 100%%"; ]', 42)
    '[ Arguments = "run 42 100%"; ]'
    """
    text_id = str(int(job_id))
    if isinstance(jdl, str):
        return _JOB_ID.sub(lambda m: text_id if m.group(1) == "j" else "%", jdl)
    result = _substitute(jdl, text_id)
    assert isinstance(result, JDL)  # noqa: S101
    return result
