"""DIRAC workflow descriptions (``jobDescription.xml``), read safely: a pure function.

DIRAC's ``Job`` API does not put the user's command in the JDL: it says ``Executable =
"dirac-jobexec"`` and ships a workflow XML in the input sandbox. :func:`parse_workflow` reads
that XML into frozen objects and :meth:`Workflow.steps` resolves each ``StepInstance``'s
parameters the way DIRAC's ``Workflow.execute`` does (step-definition defaults, links to workflow
parameters, ``@{name}`` substitution). Nothing is executed here, and the Python ``body`` of a
``ModuleDefinition`` is kept as text only, never run: :attr:`ModuleDefinition.is_dirac_script`
tells whether a module is DIRAC's own ``Script`` module (the only type the pilot runs itself).

The parser is strict about what could hurt the node: input larger than ``max_bytes`` is
refused before parsing, and so is any document type declaration (hence every entity
definition: no "billion laughs", no external entities), elements nested deeper than
:data:`MAX_DEPTH`, more than :data:`MAX_ELEMENTS` elements, or anything that is not well-formed
XML. Every refusal is a :class:`WorkflowError` (a ``ValueError``). Standard library only,
Python 3.9+ (it runs inside the pilot).

Example::

    >>> wf = parse_workflow(b'''<Workflow><name>demo</name>
    ... <Parameter name="JobName" type="JDL" linked_module="" linked_parameter="" in="True"
    ...  out="False" description=""><value><![CDATA[demo]]></value></Parameter>
    ... <ModuleDefinition><body><![CDATA[from DIRAC.Workflow.Modules.Script import Script]]>
    ... </body><type>Script</type></ModuleDefinition>
    ... <StepDefinition><type>ScriptStep1</type>
    ... <Parameter name="executable" type="string" linked_module="" linked_parameter=""
    ...  in="True" out="False" description=""><value><![CDATA[]]></value></Parameter>
    ... <ModuleInstance><name>Script</name><type>Script</type></ModuleInstance>
    ... </StepDefinition>
    ... <StepInstance><name>RunScriptStep1</name><type>ScriptStep1</type>
    ... <Parameter name="executable" type="string" linked_module="" linked_parameter=""
    ...  in="True" out="False" description=""><value><![CDATA[/bin/true]]></value></Parameter>
    ... </StepInstance></Workflow>''')
    >>> step = wf.steps()[0]
    >>> step.name, step.module_types, step.parameters["executable"], wf.value("JobName")
    ('RunScriptStep1', ('Script',), '/bin/true', 'demo')
    >>> wf.unsupported_modules()
    []
    >>> try:
    ...     parse_workflow(b'<!DOCTYPE x [<!ENTITY a "aaaa">]><Workflow/>')
    ... except WorkflowError as exc:
    ...     print(exc)
    document type declarations are refused (line 1)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.parsers import expat

#: largest workflow accepted, in bytes (DIRAC's own job descriptions are a few kB)
MAX_BYTES = 4 * 1024 * 1024
#: deepest element nesting accepted (DIRAC's format nests 4 levels)
MAX_DEPTH = 32
#: most elements accepted in one document
MAX_ELEMENTS = 200_000
#: the body of DIRAC's own Script module definition
DIRAC_SCRIPT_BODY = "from DIRAC.Workflow.Modules.Script import Script"
#: how often @{name} references are expanded (DIRAC: 12 rounds)
MAX_SUBSTITUTIONS = 12

_TEXT_FIELDS = frozenset({"name", "type", "descr_short", "description", "origin", "version",
                          "body", "required", "value"})
_OBJECTS = frozenset({"Workflow", "Parameter", "ModuleDefinition", "ModuleInstance",
                      "StepDefinition", "StepInstance"})
# which objects may appear inside which
_ALLOWED_IN = {
    "Workflow": (None,),
    "Parameter": ("Workflow", "StepDefinition", "StepInstance", "ModuleInstance",
                  "ModuleDefinition"),
    "ModuleDefinition": ("Workflow",),
    "StepDefinition": ("Workflow",),
    "StepInstance": ("Workflow",),
    "ModuleInstance": ("StepDefinition",),
}
_REFERENCE = re.compile(r"@{([][\w,.:$()]+)}")
_STRING_TYPES = ("string", "jdl", "option", "parameter", "jdlreqt")


class WorkflowError(ValueError):
    """The text is not a workflow this node accepts (the message says why)."""


@dataclass(frozen=True)
class Parameter:
    """A workflow, step or module parameter. ``value`` is the text of ``<value>``."""

    name: str
    value: str = ""
    type: str = "string"
    linked_module: str = ""
    linked_parameter: str = ""
    is_input: bool = True
    is_output: bool = False
    description: str = ""

    @property
    def linked(self) -> bool:
        return bool(self.linked_module.strip() or self.linked_parameter.strip())

    @property
    def is_string(self) -> bool:
        return self.type.lower() in _STRING_TYPES


@dataclass(frozen=True)
class ModuleDefinition:
    """A module type. ``body`` is Python text for DIRAC's workflow engine: never run here."""

    type: str
    body: str = ""
    description: str = ""
    parameters: tuple[Parameter, ...] = ()

    @property
    def is_dirac_script(self) -> bool:
        """DIRAC's own ``Script`` module: type ``Script`` whose body only imports it."""
        lines = [line.strip() for line in self.body.splitlines()]
        code = [line for line in lines if line and not line.startswith("#")]
        return self.type == "Script" and code in ([], [DIRAC_SCRIPT_BODY])


@dataclass(frozen=True)
class ModuleInstance:
    name: str
    type: str
    parameters: tuple[Parameter, ...] = ()


@dataclass(frozen=True)
class StepDefinition:
    type: str
    parameters: tuple[Parameter, ...] = ()
    module_instances: tuple[ModuleInstance, ...] = ()


@dataclass(frozen=True)
class StepInstance:
    name: str
    type: str
    parameters: tuple[Parameter, ...] = ()


@dataclass(frozen=True)
class Step:
    """One step ready to run: its name, number (from 1), module types and parameter values."""

    name: str
    number: int
    type: str
    module_types: tuple[str, ...]
    parameters: Mapping[str, str]


@dataclass(frozen=True)
class Workflow:
    name: str = ""
    parameters: tuple[Parameter, ...] = ()
    module_definitions: Mapping[str, ModuleDefinition] = field(default_factory=dict)
    step_definitions: Mapping[str, StepDefinition] = field(default_factory=dict)
    step_instances: tuple[StepInstance, ...] = ()

    def values(self) -> dict[str, str]:
        """The workflow parameters' values, ``@{name}`` references resolved, with DIRAC's
        ``PRODUCTION_ID`` and ``JOB_ID`` defaults."""
        values = _substituted({p.name: p.value for p in self.parameters if p.is_string})
        values.setdefault("PRODUCTION_ID", "00000000")
        values.setdefault("JOB_ID", "00000000")
        return values

    def value(self, name: str, default: str = "") -> str:
        """A workflow parameter's value (``default`` when there is none)."""
        return self.values().get(name, default)

    def with_values(self, values: Mapping[str, str]) -> Workflow:
        """A copy with workflow parameters set (``dirac-jobexec -p name=value``)."""
        params = list(self.parameters)
        for name, value in values.items():
            for i, param in enumerate(params):
                if param.name == name:
                    params[i] = Parameter(name, value, param.type, "", "", True, False,
                                          param.description)
                    break
            else:
                params.append(Parameter(name, value))
        return Workflow(self.name, tuple(params), self.module_definitions,
                        self.step_definitions, self.step_instances)

    def unsupported_modules(self) -> list[tuple[str, str]]:
        """(step instance name, module type) of every module the pilot cannot run itself:
        anything but DIRAC's own ``Script`` module (VO extensions' modules)."""
        found = []
        for step in self.step_instances:
            definition = self.step_definitions.get(step.type)
            for module in definition.module_instances if definition else ():
                known = self.module_definitions.get(module.type)
                if known is None or not known.is_dirac_script:
                    found.append((step.name, module.type))
        return found

    def steps(self) -> list[Step]:
        """The step instances in order, each with its resolved parameter values.

        As DIRAC's workflow engine: a step starts from its definition's parameters, takes its
        instance's values, a parameter linked to ``self`` takes the workflow parameter it
        names, and ``@{name}`` references are replaced by the step's or the workflow's values.
        Raises :class:`WorkflowError` for a step whose type has no definition."""
        workflow_values = self.values()
        done: dict[str, dict[str, str]] = {}
        result = []
        for number, instance in enumerate(self.step_instances, start=1):
            definition = self.step_definitions.get(instance.type)
            if definition is None:
                raise WorkflowError(f"step {instance.name!r}: no StepDefinition of type "
                                    f"{instance.type!r}")
            values: dict[str, str] = {p.name: p.value for p in definition.parameters}
            for param in instance.parameters:
                if param.linked and param.linked_module == "self":
                    values[param.name] = workflow_values.get(param.linked_parameter, "")
                elif param.linked:
                    values[param.name] = done.get(param.linked_module, {}).get(
                        param.linked_parameter, "")
                else:
                    values[param.name] = param.value
            # what DIRAC's Workflow.resolveGlobalVars adds to every step instance
            values.setdefault("STEP_NUMBER", str(number))
            values.setdefault("STEP_ID", f"{workflow_values['PRODUCTION_ID']}_"
                                         f"{workflow_values['JOB_ID']}_{number}")
            values.setdefault("STEP_INSTANCE_NAME", instance.name)
            values.setdefault("STEP_DEFINITION_NAME", instance.type)
            values.setdefault("JOB_ID", workflow_values["JOB_ID"])
            values.setdefault("PRODUCTION_ID", workflow_values["PRODUCTION_ID"])
            values = _substituted(values, workflow_values)
            done[instance.name] = values
            result.append(Step(instance.name, number, instance.type,
                               tuple(m.type for m in definition.module_instances), values))
        return result


def _substituted(values: dict[str, str],
                 outer: Mapping[str, str] | None = None) -> dict[str, str]:
    """``@{name}`` replaced by ``values[name]``, else ``outer[name]`` (a bounded number of
    rounds, so self-references stop)."""
    out = dict(values)

    def lookup(key: str, name: str) -> str | None:
        if name in out and name != key:
            return out[name]
        if outer is not None and name in outer:
            return outer[name]
        return None

    for _ in range(MAX_SUBSTITUTIONS):
        changed = False
        for key, text in out.items():
            def repl(match: re.Match[str], key: str = key) -> str:
                found = lookup(key, match.group(1))
                return match.group(0) if found is None else found

            new = _REFERENCE.sub(repl, text)
            if new != text:
                out[key] = new[:MAX_BYTES]
                changed = True
        if not changed:
            break
    return out


class _Node:
    """An element being read: its kind, text fields, parameters and children."""

    def __init__(self, kind: str, attrs: Mapping[str, str]) -> None:
        self.kind = kind
        self.attrs = dict(attrs)
        self.fields: dict[str, str] = {}
        self.parameters: list[Parameter] = []
        self.modules: list[ModuleInstance] = []


class _Reader:
    def __init__(self) -> None:
        self.stack: list[_Node] = []
        self.text: list[str] = []
        self.in_field: str | None = None
        self.depth = 0
        self.elements = 0
        self.workflow: Workflow | None = None
        self.parameters: list[Parameter] = []
        self.modules: dict[str, ModuleDefinition] = {}
        self.step_definitions: dict[str, StepDefinition] = {}
        self.step_instances: list[StepInstance] = []
        self.parser = expat.ParserCreate()
        p = self.parser
        p.StartElementHandler = self.start
        p.EndElementHandler = self.end
        p.CharacterDataHandler = self.characters
        p.StartDoctypeDeclHandler = self.doctype
        p.EntityDeclHandler = self.entity
        p.ExternalEntityRefHandler = self.external
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def where(self) -> str:
        return f"line {self.parser.CurrentLineNumber}"

    def doctype(self, *_: Any) -> None:
        raise WorkflowError(f"document type declarations are refused ({self.where()})")

    def entity(self, *_: Any) -> None:
        raise WorkflowError(f"entity declarations are refused ({self.where()})")

    def external(self, *_: Any) -> int:
        raise WorkflowError(f"external entities are refused ({self.where()})")

    def start(self, name: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        self.elements += 1
        if self.depth > MAX_DEPTH:
            raise WorkflowError(f"elements nested deeper than {MAX_DEPTH} ({self.where()})")
        if self.elements > MAX_ELEMENTS:
            raise WorkflowError(f"more than {MAX_ELEMENTS} elements")
        self.text = []
        if self.in_field is not None:
            raise WorkflowError(f"<{name}> inside <{self.in_field}> ({self.where()})")
        parent = self.stack[-1].kind if self.stack else None
        if name in _OBJECTS:
            if parent not in _ALLOWED_IN[name]:
                where = f"inside <{parent}>" if parent else "as the document element"
                raise WorkflowError(f"<{name}> is not allowed {where} ({self.where()})")
            self.stack.append(_Node(name, attrs))
        elif name in _TEXT_FIELDS and self.stack:
            self.in_field = name
        elif not self.stack:
            raise WorkflowError(f"the document element is <{name}>, not <Workflow>")
        # other elements inside the workflow: ignored, as DIRAC's reader does

    def characters(self, data: str) -> None:
        if self.in_field is not None:
            self.text.append(data)

    def end(self, name: str) -> None:
        self.depth -= 1
        if name in _TEXT_FIELDS and self.in_field == name:
            self.stack[-1].fields[name] = "".join(self.text)
            self.in_field = None
            self.text = []
            return
        if name not in _OBJECTS:
            return
        node = self.stack.pop()
        owner = self.stack[-1] if self.stack else None
        if name == "Parameter":
            assert owner is not None  # noqa: S101 - _ALLOWED_IN guarantees a parent
            owner.parameters.append(_parameter(node, self.where()))
        elif name == "ModuleInstance":
            assert owner is not None  # noqa: S101
            owner.modules.append(ModuleInstance(node.fields.get("name", ""),
                                                node.fields.get("type", ""),
                                                tuple(node.parameters)))
        elif name == "ModuleDefinition":
            kind = node.fields.get("type", "")
            self.modules[kind] = ModuleDefinition(kind, node.fields.get("body", ""),
                                                  node.fields.get("description", ""),
                                                  tuple(node.parameters))
        elif name == "StepDefinition":
            kind = node.fields.get("type", "")
            self.step_definitions[kind] = StepDefinition(kind, tuple(node.parameters),
                                                         tuple(node.modules))
        elif name == "StepInstance":
            self.step_instances.append(StepInstance(node.fields.get("name", ""),
                                                    node.fields.get("type", ""),
                                                    tuple(node.parameters)))
        else:  # Workflow
            self.workflow = Workflow(node.fields.get("name", ""), tuple(node.parameters),
                                     dict(self.modules), dict(self.step_definitions),
                                     tuple(self.step_instances))


def _parameter(node: _Node, where: str) -> Parameter:
    attrs = node.attrs
    name = attrs.get("name", "")
    if not name:
        raise WorkflowError(f"a <Parameter> without a name ({where})")
    return Parameter(name, node.fields.get("value", ""), attrs.get("type", "string"),
                     attrs.get("linked_module", ""), attrs.get("linked_parameter", ""),
                     attrs.get("in", "True").lower() != "false",
                     attrs.get("out", "False").lower() == "true",
                     attrs.get("description", ""))


def parse_workflow(data: bytes | str, *, max_bytes: int = MAX_BYTES) -> Workflow:
    """The workflow in ``data`` (DIRAC's ``jobDescription.xml``); :class:`WorkflowError` for
    anything else, for more than ``max_bytes`` and for any DTD, entity or external
    reference."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"expected bytes or str, not {type(data).__name__}")
    if len(data) > max_bytes:
        raise WorkflowError(f"the workflow is {len(data)} bytes, more than the {max_bytes} "
                            "accepted")
    reader = _Reader()
    try:
        reader.parser.Parse(bytes(data), True)
    except expat.ExpatError as exc:
        raise WorkflowError(f"not well-formed XML: {expat.ErrorString(exc.code)} "
                            f"(line {exc.lineno}, column {exc.offset})") from None
    except RecursionError:  # cannot happen with MAX_DEPTH, but never let it escape
        raise WorkflowError("the workflow is nested too deeply") from None
    if reader.workflow is None:
        raise WorkflowError("no <Workflow> element")
    return reader.workflow


def split_jobexec_arguments(arguments: Sequence[str]) -> tuple[str, dict[str, str],
                                                               dict[str, str]]:
    """``dirac-jobexec``'s command line: (XML file, ``-o`` options, ``-p`` parameters).

    ``-p name=value`` sets a workflow parameter (a ``{a, b}`` value becomes ``a;b``, as
    dirac-jobexec does); ``-o /Section/Option=value`` (or ``-o Option=value``) is a DIRAC
    configuration option. Raises :class:`WorkflowError` without exactly one XML file.

    >>> split_jobexec_arguments(["jobDescription.xml", "-o", "LogLevel=INFO", "-p", "a={x, y}"])
    ('jobDescription.xml', {'LogLevel': 'INFO'}, {'a': 'x;y'})
    """
    files: list[str] = []
    options: dict[str, str] = {}
    params: dict[str, str] = {}
    args = list(arguments)
    i = 0
    while i < len(args):
        arg = args[i]
        kind, text = "", ""
        for short, long_ in (("-o", "--option"), ("-p", "--parameter")):
            if arg in (short, long_):
                if i + 1 >= len(args):
                    raise WorkflowError(f"{arg} needs a value")
                kind, text = short, args[i + 1]
                i += 1
            elif arg.startswith(long_ + "="):
                kind, text = short, arg[len(long_) + 1:]
            elif arg.startswith(short) and len(arg) > 2:
                kind, text = short, arg[2:]
        if kind:
            name, sep, value = text.partition("=")
            if not sep or not name.strip():
                raise WorkflowError(f"{kind} {text!r}: expected name=value")
            value = value.strip()
            if kind == "-p":
                if value.startswith("{"):
                    value = ";".join(value[1:-1].replace('"', "").replace(" ", "").split(","))
                params[name.strip()] = value
            else:
                options[name.strip().rsplit("/", 1)[-1]] = value
        elif arg.startswith("-") and arg != "-":
            pass  # other DIRAC script switches (-d, --cfg ...) do not matter on our pilot
        else:
            files.append(arg)
        i += 1
    if len(files) != 1:
        raise WorkflowError(f"dirac-jobexec needs exactly one workflow file, got {files}")
    return files[0], options, params
