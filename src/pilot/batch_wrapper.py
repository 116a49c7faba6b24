"""The push-mode batch wrapper: runs one payload on a worker node that cannot reach the server.

Push mode (``wms.agents.push_jobs``) ships a job directory to the batch system: the payload's
inputs, ``.pw/job.json`` (command, environment, output names, CPU limit) and this module with
:mod:`pilot.watchdog` (standard library only, Python 3.9+). On the worker node::

    cd JOBDIR && PYTHONPATH=JOBDIR/.pw python3 -S -m pilot.batch_wrapper .pw/job.json

runs the payload in its own session with stdout/stderr in the job's ``StdOutput``/``StdError``
files, lets the pilot's :class:`~pilot.watchdog.Watchdog` sample its process tree (CPU seconds,
memory) into ``.pw/usage.json`` every few seconds and enforce the CPU and wall-clock limits
(``CPULimit``/``WallLimit``, seconds), kills the tree on SIGTERM (``scancel``), and at the
end writes ``.pw/result.json``::

    {"ExitCode": 0, "Reason": null, "CPU": 0.01, "Wall": 0.2, "MaxRSS": 1234}

(seconds, RSS in kB; ``ExitCode`` null: the payload could not start; ``Reason``: the watchdog's
minor status, e.g. "Job has reached the CPU limit of the queue"). Its own log goes to stderr.
Nothing here talks to the server: the push agent reads these files back.

Example::

    >>> import json, os, tempfile
    >>> d = tempfile.mkdtemp(); os.mkdir(os.path.join(d, ".pw"))
    >>> spec = {"Command": ["/bin/echo", "hi"], "StdOutput": "std.out"}
    >>> with open(os.path.join(d, ".pw", "job.json"), "w") as f: json.dump(spec, f)
    >>> main([os.path.join(d, ".pw", "job.json")])
    0
    >>> open(os.path.join(d, "std.out")).read()
    'hi\\n'
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from typing import Any

from pilot.watchdog import KILL_SIGNAL, Watchdog, kill_tree

USAGE = "usage.json"
RESULT = "result.json"
#: in ``Command``: this Python (the DIRAC workflow runner, ``python -m pilot.jobexec``)
PYTHON = "@python@"


def _write_json(path: str, data: dict[str, Any]) -> None:
    """Atomically (the agent may read at any moment)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as stream:
        json.dump(data, stream)
    os.replace(tmp, path)


def _log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    print(f"{stamp} UTC batch wrapper: {message}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    """Run the payload described by ``argv[0]`` (``.pw/job.json``); 0 when the wrapper itself
    worked (the payload's exit code is in ``result.json``)."""
    spec_path = os.path.abspath(argv[0])
    meta = os.path.dirname(spec_path)
    workdir = os.path.dirname(meta)
    with open(spec_path, encoding="utf-8") as stream:
        spec = json.load(stream)
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in (spec.get("Environment") or {}).items()})
    out_name = str(spec.get("StdOutput") or "std.out")
    err_name = str(spec.get("StdError") or out_name)
    command = [sys.executable if c == PYTHON else str(c) for c in spec["Command"]]
    started = time.monotonic()
    result: dict[str, Any] = {"ExitCode": None, "Reason": None, "CPU": 0.0, "Wall": 0.0,
                              "MaxRSS": 0}
    _log(f"running {command}")
    with open(os.path.join(workdir, out_name), "ab") as out:
        err = out if err_name == out_name else open(  # noqa: SIM115 - closed below
            os.path.join(workdir, err_name), "ab")
        try:
            proc = subprocess.Popen(command, cwd=workdir, env=env,  # noqa: S603 - payload
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True)
        except OSError as exc:
            err.write(f"cannot start {command[0]!r}: {exc}\n".encode())
            _log(f"cannot start {command[0]!r}: {exc}")
            _write_json(os.path.join(meta, RESULT), result)
            return 0
        finally:
            if err is not out:
                err.close()

    def sampled(dynamic: dict[str, Any], _static: dict[str, Any]) -> dict[str, Any]:
        _write_json(os.path.join(meta, USAGE), dynamic)
        return {}

    cpu_limit, wall_limit = spec.get("CPULimit"), spec.get("WallLimit")
    watchdog = Watchdog(proc.pid, heartbeat=sampled, workdir=workdir,
                        period=float(spec.get("Sample", 2.0)), check=1.0,
                        cpu_limit=float(cpu_limit) if cpu_limit else None,
                        wall_limit=float(wall_limit) if wall_limit else None, log=_log)
    signal.signal(signal.SIGTERM, lambda *_: watchdog.terminate(KILL_SIGNAL))
    watchdog.start()
    try:
        code = proc.wait()
    finally:
        watchdog.stop()
        watchdog.join(30)
        kill_tree(proc.pid, proc.pid, grace=0.5)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result.update(ExitCode=code, Reason=watchdog.reason,
                  CPU=round(max(watchdog.cpu, usage.ru_utime + usage.ru_stime), 2),
                  Wall=round(time.monotonic() - started, 2),
                  MaxRSS=max(watchdog.max_rss // 1024, usage.ru_maxrss))
    _write_json(os.path.join(meta, RESULT), result)
    _log(f"payload ended: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
