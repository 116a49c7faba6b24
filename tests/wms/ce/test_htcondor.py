"""HTCondor CE against fake condor_submit/condor_q/condor_history/condor_rm executables.

No HTCondor daemons can be installed here (Debian 12 has no package, the PyPI wheel has only
bindings). The fakes print what the real 23.x tools print: ``condor_submit -terse`` gives
``<cluster>.<first> - <cluster>.<last>``; ``condor_q -json``/``condor_history -json`` give a
JSON list of ClassAds with the real attribute names (``ClusterId``, ``ProcId``, ``JobStatus``
1..7, ``ExitCode``) and print nothing at all when no job matches; queued jobs live in
``queue.json``, finished and removed ones in ``history.json``. They check the arguments the CE
passes (``-terse``, ``-json``, ``-attributes``, the submit file's ``executable``/``queue``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from wms.ce.base import PilotStatus
from wms.ce.htcondor import HTCondorComputingElement

FAKE = r'''#!{python}
import json, os, re, sys
state = os.environ["FAKE_CONDOR_DIR"]
def load(name):
    try:
        return json.load(open(os.path.join(state, name)))
    except FileNotFoundError:
        return []
def save(name, ads):
    json.dump(ads, open(os.path.join(state, name), "w"))
tool, args = os.path.basename(sys.argv[0]), sys.argv[1:]
queue, history = load("queue.json"), load("history.json")
if tool == "condor_submit":
    assert args[0] == "-terse", args
    text = open(args[-1]).read()
    assert re.search(r"^executable = /", text, re.M), text
    count = int(re.search(r"^queue (\d+)$", text, re.M).group(1))
    cluster = 1 + max([ad["ClusterId"] for ad in queue + history] or [100])
    queue += [{{"ClusterId": cluster, "ProcId": p, "JobStatus": 1, "Owner": "pilot",
               "Cmd": re.search(r"^executable = (.*)$", text, re.M).group(1)}}
              for p in range(count)]
    save("queue.json", queue)
    print(f"{{cluster}}.0 - {{cluster}}.{{count - 1}}")
elif tool in ("condor_q", "condor_history"):
    assert args[0] == "-json" and "-attributes" in args, args
    attrs = args[args.index("-attributes") + 1].split(",")
    ids = [a for a in args[args.index("-attributes") + 2:]]
    ads = queue if tool == "condor_q" else history
    out = [{{k: ad[k] for k in attrs if k in ad}} for ad in ads
           if f"{{ad['ClusterId']}}.{{ad['ProcId']}}" in ids]
    if out:
        print(json.dumps(out, indent=2))
elif tool == "condor_rm":
    gone = [ad for ad in queue if f"{{ad['ClusterId']}}.{{ad['ProcId']}}" in args]
    for ad in gone:
        ad["JobStatus"] = 3
        print(f"Job {{ad['ClusterId']}}.{{ad['ProcId']}} marked for removal")
    save("queue.json", [ad for ad in queue if ad not in gone])
    save("history.json", history + gone)
    sys.exit(0 if gone else 1)
'''


@pytest.fixture
def ce(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HTCondorComputingElement]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("condor_submit", "condor_q", "condor_history", "condor_rm"):
        path = bin_dir / tool
        path.write_text(FAKE.format(python=sys.executable))
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_CONDOR_DIR", str(tmp_path))
    (tmp_path / "work").mkdir()
    yield HTCondorComputingElement("condor", {"WorkDir": str(tmp_path / "work"),
                                              "Host": "schedd.example"})


def _move(state: Path, job: str, status: int, exit_code: int | None = None) -> None:
    queue = json.loads((state / "queue.json").read_text())
    history = json.loads((state / "history.json").read_text()) if (
        state / "history.json").exists() else []
    for ad in queue:
        if f"{ad['ClusterId']}.{ad['ProcId']}" == job:
            ad["JobStatus"] = status
            if exit_code is not None:
                ad["ExitCode"] = exit_code
                queue.remove(ad)
                history.append(ad)
            break
    (state / "queue.json").write_text(json.dumps(queue))
    (state / "history.json").write_text(json.dumps(history))


def test_lifecycle(ce: HTCondorComputingElement, tmp_path: Path) -> None:
    refs = ce.submit("#!/bin/sh\necho hi\n", 3, queue="any", processors=2, memory_mb=1000,
                     wall_seconds=600, env={"A": "b"})
    assert refs == [f"htcondor://schedd.example/101.{p}" for p in range(3)]
    sub = next((tmp_path / "work").glob("*.sub")).read_text()
    assert "request_cpus = 2\n" in sub and "request_memory = 1000\n" in sub
    assert "queue 3\n" in sub and "+MaxRuntime = 600\n" in sub
    script = next((tmp_path / "work").glob("*.sh")).read_text()
    assert script == "#!/bin/sh\nexport A='b'\necho hi\n"
    assert set(ce.status(refs).values()) == {PilotStatus.WAITING}
    _move(tmp_path, "101.0", 2)
    _move(tmp_path, "101.1", 4, exit_code=0)
    _move(tmp_path, "101.2", 4, exit_code=1)
    assert ce.status(refs) == {refs[0]: PilotStatus.RUNNING, refs[1]: PilotStatus.DONE,
                               refs[2]: PilotStatus.FAILED}
    _move(tmp_path, "101.0", 5)
    assert ce.status(refs[:1]) == {refs[0]: PilotStatus.ABORTED}
    ce.kill(refs)
    assert ce.status(refs[:1]) == {refs[0]: PilotStatus.ABORTED}
    (tmp_path / "work" / "101.1.out").write_text("out\n")
    assert ce.output(refs[1]) == ("out\n", "")
    unknown = ["htcondor://schedd.example/999.0", "htcondor://other/101.0", "slurm://x/1"]
    assert ce.status(unknown) == {ref: PilotStatus.DELETED for ref in unknown}
