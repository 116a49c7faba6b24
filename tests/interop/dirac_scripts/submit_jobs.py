"""DIRAC's Job API, as a user script would use it: three workflow jobs submitted with
``Dirac().submitJob``. ARGS: {"workdir": dir}. RESULT: {name: job id or error message}."""

import os

from DIRAC.Interfaces.API.Dirac import Dirac
from DIRAC.Interfaces.API.Job import Job

ARGS = globals()["ARGS"]
os.chdir(ARGS["workdir"])
with open("input.txt", "w") as stream:
    stream.write("from the local input sandbox\n")

dirac = Dirac()
jobs = {}

job = Job()
job.setName("two-steps")
job.setExecutable("/bin/echo", arguments="hello from step one", logFile="echo.log")
job.setExecutable("cat", arguments="input.txt", logFile="cat.log")
job.setInputSandbox(["input.txt"])
job.setOutputSandbox(["std.out", "std.err", "*.log"])
jobs["ok"] = dirac.submitJob(job)

job = Job()
job.setName("second-step-fails")
job.setExecutable("/bin/echo", arguments="first step")
job.setExecutable("/bin/sh", arguments="-c 'echo second step; exit 3'", logFile="sh.log")
job.setExecutable("/bin/echo", arguments="third step never runs")
job.setOutputSandbox(["std.out", "std.err", "*.log"])
jobs["fails"] = dirac.submitJob(job)

job = Job()
job.setName("vo-module")
job.setExecutable("/bin/echo", arguments="x", modulesList=["Script", "FailoverRequest"])
jobs["module"] = dirac.submitJob(job)

RESULT = {name: reply["Value"] if reply["OK"] else reply["Message"]
          for name, reply in jobs.items()}
