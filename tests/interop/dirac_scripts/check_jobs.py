"""Read back DIRAC Job API jobs with ``Dirac()``: status, parameters, logging, output
sandboxes. ARGS: {"workdir": dir, "jobs": {name: id}, "outputs": [names]}. RESULT: per name
{"status", "parameters", "logging", "files": {name: text}}."""

import os

from DIRAC.Interfaces.API.Dirac import Dirac

ARGS = globals()["ARGS"]
dirac = Dirac()
ids = {name: int(job) for name, job in ARGS["jobs"].items()}
statuses = dirac.getJobStatus(list(ids.values()))
assert statuses["OK"], statuses
RESULT = {}
for name, job in ids.items():
    entry = {"status": statuses["Value"][job]}
    params = dirac.getJobParameters(job)
    entry["parameters"] = params["Value"] if params["OK"] else params["Message"]
    logging = dirac.getJobLoggingInfo(job)
    entry["logging"] = logging["Value"] if logging["OK"] else logging["Message"]
    if name in ARGS["outputs"]:
        out = dirac.getOutputSandbox(job, outputDir=ARGS["workdir"])
        entry["download"] = out["OK"] or out["Message"]
        folder = os.path.join(ARGS["workdir"], str(job))
        entry["files"] = {f: open(os.path.join(folder, f), errors="replace").read()
                          for f in sorted(os.listdir(folder))} if out["OK"] else {}
    RESULT[name] = entry
