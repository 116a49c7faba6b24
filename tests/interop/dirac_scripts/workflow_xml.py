"""Workflow XML as DIRAC's Job API writes it, read back by DIRAC's own workflow reader with
the step parameters resolved as ``Workflow.execute`` resolves them. ARGS: unused. RESULT: per
case {"name", "xml", "jdl", "workflow": {name: value}, "steps": [{"name", "modules",
"parameters"}], "unsupported": [[step, module]]}."""

from DIRAC.Core.Workflow.Utility import resolveVariables
from DIRAC.Core.Workflow.Workflow import fromXMLString
from DIRAC.Interfaces.API.Job import Job


def cases():
    job = Job()
    job.setName("two-steps")
    job.setExecutable("/bin/echo", arguments="hello 'quoted world'", logFile="echo.log")
    job.setExecutable("cat", arguments="input.txt")
    yield "two-steps", job
    job = Job()
    job.setName("parametric")
    job.setExecutable("/bin/echo", arguments="value %(p)s")
    job.setParameterSequence("p", ["a", "b"])
    job.setLogLevel("DEBUG")
    yield "parametric", job
    job = Job()
    job.setName("vo-module")
    job.setExecutable("/bin/true", modulesList=["Script", "FailoverRequest"])
    job.setExecutable("/bin/true", arguments="-x")
    yield "vo-module", job


RESULT = []
for name, job in cases():
    xml = job._toXML()
    jdl = job._toJDL()
    wf = fromXMLString(xml)
    wf.resolveGlobalVars()
    values = {p.getName(): p.getValue() for p in wf.parameters if p.isTypeString()}
    steps, unsupported = [], []
    for inst in wf.step_instances:
        params = {}
        for p in inst.parameters:
            if p.isLinked() and p.getLinkedModule() == "self":
                params[p.getName()] = values.get(p.getLinkedParameter(), "")
            elif not p.isLinked():
                params[p.getName()] = p.getValue()
        resolveVariables(params)
        definition = wf.step_definitions[inst.getType()]
        modules = [m.getType() for m in definition.module_instances]
        unsupported += [[inst.getName(), m] for m in modules if m != "Script"]
        steps.append({"name": inst.getName(), "modules": modules,
                      "parameters": {k: str(v) for k, v in params.items()}})
    RESULT.append({"name": name, "xml": xml, "jdl": jdl,
                   "workflow": {k: str(v) for k, v in values.items()},
                   "steps": steps, "unsupported": unsupported})
