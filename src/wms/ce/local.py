"""Local CE: pilots as detached processes on this machine (the embedded default).

Each pilot gets a directory ``<WorkDir>/<uuid>/`` holding ``pilot.sh`` (the script), a small
``wrapper.sh`` that runs it, ``pid``, ``stdout``, ``stderr`` and, once the pilot ended,
``exit_code``. Everything the CE needs is on disk, so a restarted site director still knows its
pilots. The reference is ``local://<host>/<pid>-<uuid>``.

Statuses: running process -> Running; exit code 0 -> Done; any other exit code -> Failed (the
code is in :meth:`ProcessComputingElement.exit_code`); killed through :meth:`kill` -> Aborted;
process gone without an exit code (killed by someone else, host rebooted) -> Failed; unknown
reference or removed directory -> Deleted.

Example::

    >>> import tempfile, time
    >>> from wms.ce.local import LocalComputingElement
    >>> ce = LocalComputingElement("local", {"WorkDir": tempfile.mkdtemp()})
    >>> [ref] = ce.submit("#!/bin/sh\\necho hello\\n", queue="default")
    >>> for _ in range(100):
    ...     if ce.status([ref])[ref] != "Running":
    ...         break
    ...     time.sleep(0.05)
    >>> str(ce.status([ref])[ref]), ce.output(ref)
    ('Done', ('hello\\n', ''))
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wms.ce.base import CEError, ComputingElement, PilotStatus, embed_env, split_ref
from wms.ce.runner import CommandRunner, LocalRunner

__all__ = ["LocalComputingElement", "ProcessComputingElement"]

WRAPPER = """#!/bin/sh
# pilotwms pilot wrapper: runs ./pilot.sh, records its exit code
echo $$ > pid
./pilot.sh > stdout 2> stderr < /dev/null
rc=$?
echo "$rc" > exit_code.tmp && mv exit_code.tmp exit_code
"""

#: "<dir> alive|dead|exit|missing <code|-> <killed 0|1>" per pilot directory
PROBE = r"""
base=$1; shift
for d; do
  p=$base/$d
  if [ ! -d "$p" ]; then echo "$d missing - 0"; continue; fi
  k=0; [ -e "$p/killed" ] && k=1
  if [ -f "$p/exit_code" ]; then echo "$d exit $(cat "$p/exit_code") $k"; continue; fi
  pid=$(cat "$p/pid" 2>/dev/null)
  st=dead
  if [ -n "$pid" ] && [ -r "/proc/$pid/stat" ]; then
    line=$(cat "/proc/$pid/stat" 2>/dev/null); s=${line##*) }; s=${s%% *}
    if [ "$s" != Z ] && [ "$(readlink "/proc/$pid/cwd")" = "$p" ]; then st=alive; fi
  fi
  # the pilot may have ended between the two checks
  if [ $st = dead ] && [ -f "$p/exit_code" ]; then echo "$d exit $(cat "$p/exit_code") $k"
  else echo "$d $st - $k"; fi
done
"""

#: TERM the process group of each live pilot, wait up to 5 s, then KILL what is left
KILL = r"""
group_alive() {
  for s in /proc/[0-9]*/stat; do
    line=$(cat "$s" 2>/dev/null) || continue
    rest=${line##*) }
    set -- $rest
    [ "$1" != Z ] && [ "$3" = "$pg" ] && return 0
  done
  return 1
}
base=$1; shift; pids=
for d; do
  p=$base/$d
  [ -d "$p" ] || continue
  [ -f "$p/exit_code" ] && continue
  : > "$p/killed"
  pid=$(cat "$p/pid" 2>/dev/null)
  [ -n "$pid" ] || continue
  if [ "$(readlink "/proc/$pid/cwd")" = "$p" ]; then
    kill -TERM "-$pid" 2>/dev/null; pids="$pids $pid"
  fi
done
i=0
while [ -n "$pids" ] && [ $i -lt 20 ]; do
  left=
  for pg in $pids; do group_alive && left="$left $pg"; done
  pids=$left
  [ -n "$pids" ] && sleep 0.25
  i=$((i+1))
done
for pg in $pids; do kill -KILL "-$pg" 2>/dev/null; done
exit 0
"""


class ProcessComputingElement(ComputingElement):
    """Pilots as detached processes through a :class:`CommandRunner` (shared by Local and SSH)."""

    SCHEME = ""
    runner: CommandRunner
    base: str  # absolute, symlink-free pilot directory root

    def _job_dir(self, ref: str) -> str | None:
        job = split_ref(ref, self.SCHEME, self.ref_host)
        if job is None or "-" not in job:
            return None
        pid, _, ident = job.partition("-")
        try:
            uuid.UUID(ident)
        except ValueError:
            return None
        return ident if pid.isdigit() else None

    @property
    def ref_host(self) -> str:
        return self.runner.host

    def _own_dir(self, ref: str) -> str:
        ident = self._job_dir(ref)
        if ident is None:
            raise ValueError(f"{ref!r} is not a pilot reference of CE {self.name}")
        return ident

    def _launch(self, job_dir: str) -> int:
        raise NotImplementedError

    def submit(self, script: str, count: int = 1, *, queue: str, processors: int = 1,
               wall_seconds: int | None = None, memory_mb: int | None = None,
               env: Mapping[str, str] | None = None, gpus: int = 0,
               gpu_model: str | None = None) -> list[str]:
        self.check_submit(script, count, queue, processors, wall_seconds, memory_mb)
        text = embed_env(script, env)
        refs = []
        for _ in range(count):
            ident = str(uuid.uuid4())
            job_dir = f"{self.base}/{ident}"
            self.runner.write_file(f"{job_dir}/pilot.sh", text)
            self.runner.write_file(f"{job_dir}/wrapper.sh", WRAPPER)
            pid = self._launch(job_dir)
            refs.append(f"{self.SCHEME}://{self.ref_host}/{pid}-{ident}")
        return refs

    def _probe(self, refs: Sequence[str]) -> dict[str, list[str]]:
        dirs = {ref: self._job_dir(ref) for ref in refs}
        idents = sorted({d for d in dirs.values() if d})
        rows: dict[str, list[str]] = {}
        if idents:
            res = self.runner.run(["/bin/sh", "-c", PROBE, "sh", self.base, *idents], check=True)
            for line in res.stdout.splitlines():
                parts = line.split()
                if len(parts) == 4:
                    rows[parts[0]] = parts[1:]
        return {ref: rows.get(d or "", ["missing", "-", "0"]) for ref, d in dirs.items()}

    def status(self, refs: Sequence[str]) -> dict[str, PilotStatus]:
        result = {}
        for ref, (state, code, killed) in self._probe(refs).items():
            if state == "missing":
                result[ref] = PilotStatus.DELETED
            elif killed == "1":
                result[ref] = PilotStatus.ABORTED
            elif state == "alive":
                result[ref] = PilotStatus.RUNNING
            elif state == "exit" and code == "0":
                result[ref] = PilotStatus.DONE
            else:
                result[ref] = PilotStatus.FAILED
        return result

    def exit_code(self, ref: str) -> int | None:
        """The pilot's exit code once it has ended normally, else None."""
        state, code, _ = self._probe([ref])[ref]
        return int(code) if state == "exit" and code.lstrip("-").isdigit() else None

    def kill(self, refs: Sequence[str]) -> None:
        idents = [self._own_dir(ref) for ref in refs]
        if idents:
            self.runner.run(["/bin/sh", "-c", KILL, "sh", self.base, *idents], check=True)

    def output(self, ref: str) -> tuple[str, str]:
        job_dir = f"{self.base}/{self._own_dir(ref)}"
        return (self.runner.read_file(f"{job_dir}/stdout"),
                self.runner.read_file(f"{job_dir}/stderr"))

    def cleanup(self, refs: Sequence[str]) -> None:
        """Kill what still runs, then remove the pilots' directories."""
        idents = [self._own_dir(ref) for ref in refs]
        if idents:
            self.kill(refs)
            self.runner.run(["rm", "-rf", "--", *(f"{self.base}/{i}" for i in idents)],
                            check=True)

    def close(self) -> None:
        self.runner.close()


class LocalComputingElement(ProcessComputingElement):
    """Pilots as local processes.  Settings: ``WorkDir`` (required)."""

    TYPE = "Local"
    SCHEME = "local"
    KNOWN_KEYS = frozenset({"WorkDir"})

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        super().__init__(name, settings)
        work = Path(self.settings.get_str("WorkDir")).expanduser()
        try:
            work.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CEError(f"CE {name}: cannot create WorkDir {work}: {exc}") from exc
        self.base = str(work.resolve())
        self.runner = LocalRunner()

    def _launch(self, job_dir: str) -> int:
        proc = subprocess.Popen(  # noqa: S603 - fixed argument list
            ["/bin/sh", f"{job_dir}/wrapper.sh"], cwd=job_dir, start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        # written here too, so that a status right after submit sees the pid
        Path(job_dir, "pid").write_text(f"{proc.pid}\n")
        return proc.pid

    def _reap(self, refs: Sequence[str]) -> None:
        """Collect exited pilots that are our own children (no zombies in a long-lived SD)."""
        for ref in refs:
            job = split_ref(ref, self.SCHEME, self.ref_host) or ""
            pid = job.partition("-")[0]
            if pid.isdigit():
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(int(pid), os.WNOHANG)

    def status(self, refs: Sequence[str]) -> dict[str, PilotStatus]:
        self._reap(refs)
        return super().status(refs)

    def kill(self, refs: Sequence[str]) -> None:
        super().kill(refs)
        self._reap(refs)
