"""Run ``dlogin`` as a user does, with the user's approval at the IdP done in a thread.

Example::

    result = run_dlogin(["--issuer", idp.issuer], env,
                        lambda code: idp.approve_device(code, "alice", "alice-password"))
    assert result.returncode == 0
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PY = sys.executable
CODE = re.compile(r"enter the code (\S+)")


@dataclass
class LoginRun:
    returncode: int
    stdout: str
    stderr: str
    user_code: str | None
    approval_error: BaseException | None

    def fields(self) -> dict[str, str]:
        """The 'key : value' lines dlogin printed last."""
        out = {}
        for line in self.stdout.splitlines():
            key, sep, value = line.partition(":")
            if sep and " " not in key.strip() and not line.startswith("http"):
                out[key.strip()] = value.strip()
        return out


def run_dlogin(args: Sequence[str], env: dict[str, str],
               approve: Callable[[str], object] | None, *, module: str = "core.cli.login",
               timeout: float = 90, by_url: bool = False) -> LoginRun:
    """Run dlogin; ``approve`` gets the user code (or with ``by_url`` the complete
    verification URL dlogin printed) and plays the user in a thread."""
    proc = subprocess.Popen([PY, "-m", module, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    head: list[str] = []
    code = None
    url = None
    errors: list[BaseException] = []
    thread = None
    for line in proc.stdout:
        head.append(line)
        found = CODE.search(line)
        if found:
            code = found.group(1)
        elif line.startswith(("http://", "https://")) and "user_code=" in line:
            url = line.strip()
        if line.startswith("Waiting"):
            break
    if code is not None and approve is not None:
        given = url if by_url else code

        def act() -> None:
            try:
                approve(given or "")
            except BaseException as exc:  # noqa: BLE001 - reported to the test
                errors.append(exc)
        thread = threading.Thread(target=act, daemon=True)
        thread.start()
    try:
        rest, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        rest, err = proc.communicate()
    if thread is not None:
        thread.join(30)
    return LoginRun(proc.returncode, "".join(head) + rest, err, code,
                    errors[0] if errors else None)
