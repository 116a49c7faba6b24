"""Local and SSH CEs against real processes and a real sshd (tests/support/sshd.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.sshd import SSHServer
from tests.wms.ce.helpers import live_processes_with, wait_file, wait_final, wait_status

from core.exceptions import ConfigError
from wms.ce.base import PilotStatus, ce_class
from wms.ce.local import LocalComputingElement, ProcessComputingElement
from wms.ce.ssh import SSHComputingElement


@pytest.fixture(params=["Local", "SSH"])
def ce(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProcessComputingElement]:
    pilot_ce: ProcessComputingElement
    if request.param == "Local":
        pilot_ce = LocalComputingElement("local-ce", {"WorkDir": str(tmp_path / "pilots")})
    else:
        server: SSHServer = request.getfixturevalue("sshd_server")
        work = f"{server.home}/pilots-{uuid.uuid4().hex[:8]}"
        pilot_ce = SSHComputingElement("ssh-ce", {**server.settings, "WorkDir": work})
    with pilot_ce:
        yield pilot_ce


def test_submit_runs_to_done_with_output(ce: ProcessComputingElement, tmp_path: Path) -> None:
    marker = f"/tmp/pw-marker-{uuid.uuid4().hex}"
    script = f"#!/bin/sh\necho started $GREETING\necho to-err >&2\ntouch {marker}\nsleep 1\n"
    refs = ce.submit(script, 2, queue="default", env={"GREETING": "hello world"})
    assert len(refs) == 2 and len(set(refs)) == 2
    assert all(s in (PilotStatus.RUNNING, PilotStatus.DONE) for s in ce.status(refs).values())
    assert wait_final(ce, refs) == {ref: PilotStatus.DONE for ref in refs}
    assert ce.output(refs[0]) == ("started hello world\n", "to-err\n")
    assert ce.exit_code(refs[0]) == 0
    assert Path(marker).exists()
    Path(marker).unlink()
    ce.cleanup(refs)
    assert ce.status(refs) == {ref: PilotStatus.DELETED for ref in refs}


def test_failing_script_is_failed_with_exit_code(ce: ProcessComputingElement) -> None:
    [ref] = ce.submit("#!/bin/sh\necho bad >&2\nexit 3\n", queue="default")
    assert wait_final(ce, [ref]) == {ref: PilotStatus.FAILED}
    assert ce.exit_code(ref) == 3
    assert ce.output(ref) == ("", "bad\n")


def test_kill_kills_the_whole_tree(ce: ProcessComputingElement) -> None:
    tag = uuid.uuid4().hex
    ready = f"/tmp/pw-ready-{tag}"
    # a child and a grandchild that would outlive a plain kill of the wrapper
    script = (f"#!/bin/sh\n(sh -c 'sleep 300; echo {tag}' &)\nsleep 301 &\n"
              f"touch {ready}\nwait\n")
    [ref] = ce.submit(script, queue="default")
    assert wait_file(Path(ready))
    assert ce.status([ref])[ref] == PilotStatus.RUNNING
    assert live_processes_with(tag)
    ce.kill([ref])
    assert ce.status([ref])[ref] == PilotStatus.ABORTED
    assert live_processes_with(tag) == []
    Path(ready).unlink()
    ce.kill([ref])  # killing again is harmless


def test_status_survives_a_new_ce_object(ce: ProcessComputingElement) -> None:
    [ref] = ce.submit("#!/bin/sh\necho persisted\n", queue="default")
    assert wait_final(ce, [ref])[ref] == PilotStatus.DONE
    again = ce_class(ce.TYPE)(ce.name, ce.settings.values)
    assert isinstance(again, ProcessComputingElement)
    with again:
        assert again.status([ref]) == {ref: PilotStatus.DONE}
        assert again.output(ref) == ("persisted\n", "")


def test_unknown_refs_are_deleted(ce: ProcessComputingElement) -> None:
    host = ce.ref_host
    refs = [f"{ce.SCHEME}://{host}/1-{uuid.uuid4()}", f"{ce.SCHEME}://{host}/garbage",
            "slurm://elsewhere/12", f"{ce.SCHEME}://other-host/1-{uuid.uuid4()}"]
    assert ce.status(refs) == {ref: PilotStatus.DELETED for ref in refs}
    with pytest.raises(ValueError, match="not a pilot reference"):
        ce.output("slurm://elsewhere/12")


def test_running_status_while_sleeping(ce: ProcessComputingElement) -> None:
    [ref] = ce.submit("#!/bin/sh\nsleep 300\n", queue="default")
    assert wait_status(ce, ref, PilotStatus.RUNNING) == PilotStatus.RUNNING
    ce.kill([ref])
    assert ce.status([ref])[ref] == PilotStatus.ABORTED


def test_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="WorkDir is required"):
        LocalComputingElement("x", {})
    with pytest.raises(ConfigError, match="unknown setting.*WorkDri"):
        LocalComputingElement("x", {"WorkDri": str(tmp_path)})
    with pytest.raises(ConfigError, match="Host is required"):
        SSHComputingElement("x", {})
    with pytest.raises(ConfigError, match="BatchSystem must be None or Slurm"):
        SSHComputingElement("x", {"Host": "h", "BatchSystem": "PBS"})
    ce = LocalComputingElement("x", {"WorkDir": str(tmp_path)})
    with pytest.raises(ValueError, match="count"):
        ce.submit("echo", 0, queue="q")


def test_ssh_refuses_an_unpinned_host_key(sshd_server: SSHServer, tmp_path: Path) -> None:
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sshd_server.port} ssh-ed25519 "
                     "AAAAC3NzaC1lZDI1NTE5AAAAIOV4fJ0cC3tAlXkVBVj7OJkA0hFKg2VHwJ6bS0Q8T8Yt\n")
    with SSHComputingElement("x", {**sshd_server.settings, "KnownHosts": str(wrong)}) as ce:
        with pytest.raises(Exception, match="ssh to .* failed"):
            ce.submit("#!/bin/sh\ntrue\n", queue="q")
