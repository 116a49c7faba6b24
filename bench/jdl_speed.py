"""JDL speed: parse/write rates of a typical processed JDL and a 10,000-job parametric expansion.

    python bench/jdl_speed.py

Targets (issue 3): the matcher parses stored JDLs, so > 20k typical JDLs/s; a 10,000-job
parametric submission expands well under a second.
"""

from __future__ import annotations

import time

from bench.machine import machine_line
from wms.logic.jdl import JDL, parse_jdl
from wms.logic.parametric import expand_parametric

TYPICAL = JDL(
    {
        "Arguments": "jobDescription.xml -o LogLevel=INFO",
        "CPUTime": 86400,
        "Executable": "dirac-jobexec",
        "InputData": ["LFN:/vo/user/a/alice/data/file_0001.root"] * 2,
        "InputSandbox": ["SB:ProductionSandboxSE|/SandBox/a/alice.vo_user/0a1/b2c/0a1b2c3.tar.bz2"],
        "JobGroup": "analysis-2024",
        "JobID": 123456,
        "JobName": "analysis_job_17",
        "JobRequirements": JDL(
            {
                "CPUTime": 86400,
                "Owner": "alice",
                "OwnerGroup": "vo_user",
                "Sites": ["LCG.CERN.cern", "LCG.CNAF.it"],
                "Tags": ["4Processors", "MultiProcessor"],
                "UserPriority": 1,
                "VirtualOrganization": "vo",
            }
        ),
        "JobType": "User",
        "NumberOfProcessors": 4,
        "OutputSandbox": ["std.err", "std.out", "app.log"],
        "Owner": "alice",
        "OwnerGroup": "vo_user",
        "Priority": 1,
        "Site": ["LCG.CERN.cern", "LCG.CNAF.it"],
        "StdError": "std.err",
        "StdOutput": "std.out",
        "VirtualOrganization": "vo",
    }
)

PARAMETRIC = """[
    Executable = "analysis.sh";
    Arguments = "--seed %s --index %n --out out_%n.root";
    JobName = "scan_%n";
    InputSandbox = { "analysis.sh", "config.yaml" };
    OutputSandbox = { "std.out", "std.err", "out_%n.root" };
    CPUTime = 3600;
    Parameters = 10000;
    ParameterStart = 1000;
    ParameterStep = 7;
]"""


def rate(label: str, count: int, func: object) -> None:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(count):
            func()  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    print(f"{label:40s} {count / best:10.0f} /s   ({best / count * 1e6:7.1f} us each)")


def main() -> None:
    print(machine_line(), flush=True)
    assert isinstance(TYPICAL, JDL)
    text = TYPICAL.to_text()
    rate("parse typical processed JDL", 5000, lambda: parse_jdl(text))
    rate("write typical processed JDL", 5000, TYPICAL.to_text)
    jdl = parse_jdl(PARAMETRIC)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        children = expand_parametric(jdl)
        best = min(best, time.perf_counter() - started)
    print(f"{'expand 10,000 parametric children':40s} {best:10.3f} s  ({len(children)} jobs)")


if __name__ == "__main__":
    main()
