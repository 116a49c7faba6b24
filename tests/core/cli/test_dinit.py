"""``dinit`` as users run it: a proxy with a group from ~/.globus (encrypted key, --pwstdin),
profiles and per-shell sessions applied by the other commands, ``-i`` and ``-D``; real
subprocesses against a real HTTPS server.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from core.cli.instance import Instance
from core.config.schema import Config
from core.rpc.runner import available_services
from core.security.x509 import identity_from_chain, load_pem_chain, load_pem_key
from tests.support.servers import ThreadedServer

PY = sys.executable
PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def server(config: Config) -> Iterator[str]:
    with ThreadedServer(config, available_services().values()) as srv:
        yield srv.url


@pytest.fixture
def env(instance: Instance, server: str, tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    globus = home / ".globus"
    globus.mkdir(parents=True)
    cert, key = instance.user_cert("admin")
    (globus / "usercert.pem").write_bytes(cert.read_bytes())
    encrypted = load_pem_key(key.read_bytes()).private_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSPHRASE.encode()))
    (globus / "userkey.pem").write_bytes(encrypted)
    (globus / "userkey.pem").chmod(0o400)
    client = tmp_path / "client.yaml"
    client.write_text(f"URLs: [{server}]\nCADir: {instance.ca_dir}\nGroup: demo_user\nVO: demo\n")
    return {**os.environ, "HOME": str(home), "PILOTWMS_CLIENT_CONFIG": str(client),
            "X509_USER_PROXY": str(tmp_path / "x509up"), "BEARER_TOKEN": "",
            "BEARER_TOKEN_FILE": str(tmp_path / "no-token"), "PILOTWMS_SESSION": "shell-1",
            "X509_USER_CERT": "", "X509_USER_KEY": ""}


def run(env: dict[str, str], module: str, *args: str, stdin: str = ""
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", module, *args], capture_output=True, text=True, env=env,
                          input=stdin, timeout=120)


def fields(text: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in
                                                 text.splitlines()) if _}


def whoami(env: dict[str, str]) -> dict[str, object]:
    proc = run(env, "core.cli.admin", "call", "Framework/Registry", "whoami")
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def test_dinit_makes_a_group_proxy_from_globus_with_the_passphrase(env: dict[str, str]) -> None:
    proxy = Path(env["X509_USER_PROXY"])
    proc = run(env, "core.cli.dinit", "--pwstdin", stdin=PASSPHRASE + "\n")
    assert proc.returncode == 0, proc.stderr
    info = fields(proc.stdout)
    assert info["profile"] == "(client configuration)"
    assert info["path"] == str(proxy) and info["group"] == "demo_user"
    assert info["identity"] == "/O=pilotwms/OU=Users/CN=admin"
    assert info["isProxy"] == "True" and info["timeleft"].startswith("23:59")
    assert stat.S_IMODE(proxy.stat().st_mode) == 0o600
    assert identity_from_chain(load_pem_chain(proxy.read_bytes())).group == "demo_user"
    who = whoami(env)
    assert who["group"] == "demo_user" and who["authMethod"] == "x509"

    Path(env["BEARER_TOKEN_FILE"]).write_text("a-token\n")
    noted = run(env, "core.cli.dinit", "--pwstdin", stdin=PASSPHRASE)
    assert noted.returncode == 0 and noted.stderr == (
        f"NOTE: commands present the bearer token ({env['BEARER_TOKEN_FILE']}) before this "
        "proxy: run 'dlogout' to use the proxy\n")
    Path(env["BEARER_TOKEN_FILE"]).unlink()
    again = run(env, "core.cli.dinit", "-i")
    assert again.returncode == 0 and fields(again.stdout)["group"] == "demo_user"

    wrong = run(env, "core.cli.dinit", "--pwstdin", "-g", "demo_admin", stdin="wrong\n")
    assert wrong.returncode == 2
    assert wrong.stderr.strip() == ("ERROR: cannot decrypt the private key: wrong passphrase?")
    no_tty = run(env, "core.cli.dinit")
    assert no_tty.returncode == 2 and "is encrypted and there is no terminal" in no_tty.stderr

    gone = run(env, "core.cli.dinit", "-D")
    assert gone.returncode == 0
    assert gone.stdout.splitlines() == [f"Proxy {proxy} destroyed", "Session ended"]
    assert not proxy.exists()
    stat_proc = run(env, "wms.cli.dstat")
    assert stat_proc.returncode == 2 and "make the proxy with 'dinit'" in stat_proc.stderr


def test_profiles_and_per_shell_sessions(env: dict[str, str], server: str) -> None:
    home = Path(env["HOME"])
    (home / ".pilotwms").mkdir()
    (home / ".pilotwms" / "profiles.yaml").write_text(
        "admin:\n  Group: demo_admin\n"
        "elsewhere:\n  URLs: [https://127.0.0.1:9]\n  Group: demo_user\n")
    proc = run(env, "core.cli.dinit", "--pwstdin", "admin", stdin=PASSPHRASE)
    assert proc.returncode == 0, proc.stderr
    info = fields(proc.stdout)
    assert info["profile"] == "admin" and info["group"] == "demo_admin"
    session = home / ".pilotwms" / "sessions" / "shell-1.json"
    assert info["session"] == str(session)
    assert stat.S_IMODE(session.stat().st_mode) == 0o600
    who = whoami(env)
    assert who["group"] == "demo_admin"
    assert "JobAdministrator" in who["properties"]  # type: ignore[operator]

    # this shell's session sends the commands to the profile's server; another shell's does not
    proc = run(env, "core.cli.dinit", "--pwstdin", "elsewhere", stdin=PASSPHRASE)
    assert proc.returncode == 0, proc.stderr
    down = run(env, "core.cli.admin", "call", "Framework/Registry", "whoami")
    assert down.returncode == 2 and "127.0.0.1:9" in down.stderr
    other_shell = {**env, "PILOTWMS_SESSION": "shell-2"}
    assert whoami(other_shell)["group"] == "demo_user"

    unknown = run(env, "core.cli.dinit", "--pwstdin", "nope", stdin=PASSPHRASE)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (f"ERROR: no profile 'nope' in {home}/.pilotwms/profiles."
                                      "yaml (known: admin, elsewhere)")
    (home / ".pilotwms" / "profiles.yaml").write_text("admin:\n  Group: demo_admin\n")
    broken = run(env, "core.cli.admin", "call", "Framework/Registry", "whoami")
    assert broken.returncode == 2
    assert "uses the profile 'elsewhere', which" in broken.stderr
    assert run(env, "core.cli.dinit", "-D").returncode == 0      # ends the broken session
    assert not Path(env["X509_USER_PROXY"]).exists() and not (
        home / ".pilotwms" / "sessions" / "shell-1.json").exists()
    assert "make the proxy with 'dinit'" in run(env, "wms.cli.dstat").stderr
