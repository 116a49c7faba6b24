"""``dlogin``/``dlogout`` as real subprocesses against the real IdP (tests/support/oidc_idp.py).

The user's approval happens at the IdP's pages, driven over HTTP in a thread; the device flow
polls every 5 s (the IdP gives no ``interval``), so each login takes about 5 s.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from core.client_config import ClientConfig, find_credentials, make_client
from core.exceptions import CredentialError
from core.oauth_client import TokenStore, fresh_access_token
from tests.core.cli.login_support import run_dlogin
from tests.support.oidc_idp import USERS, OIDCProvider

PY = sys.executable


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {**os.environ, "HOME": str(home), "BEARER_TOKEN_FILE": str(tmp_path / "bt"),
            "BEARER_TOKEN": "", "X509_USER_PROXY": str(tmp_path / "x509up"),
            "PILOTWMS_CLIENT_CONFIG": str(tmp_path / "no-client.yaml"),
            "PILOTWMS_SESSION": "test"}


def _approve(idp: OIDCProvider, user: str):  # type: ignore[no-untyped-def]
    return lambda code: idp.approve_device(code, user, USERS[user]["password"])


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_dlogin_device_flow_saves_private_tokens_and_dlogout_revokes(
        oidc_idp: OIDCProvider, env: dict[str, str], tmp_path: Path) -> None:
    run = run_dlogin(["--issuer", oidc_idp.issuer], env, _approve(oidc_idp, "alice"))
    assert run.approval_error is None
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == (f"To log in, open {oidc_idp.issuer}/device in a browser and enter the "
                        f"code {run.user_code}")
    assert lines[1] == f"{oidc_idp.issuer}/device?user_code={run.user_code}"
    info = run.fields()
    assert info["subject"] == USERS["alice"]["sub"]
    assert info["issuer"] == oidc_idp.issuer
    assert info["username"] == "alice"
    assert info["group"] == "/demo, /demo/users, /demo/admins"
    assert info["timeleft"].startswith("0:09:5") or info["timeleft"] == "0:10:00"
    assert "offline_access" in info["properties"]

    token_file = tmp_path / "bt"
    assert _mode(token_file) == 0o600
    store = TokenStore(token_file, Path(env["HOME"]) / ".pilotwms" / "tokens")
    assert _mode(store.state_file) == 0o600 and _mode(store.state_dir) == 0o700
    state = store.load_state()
    assert state is not None and state.refresh_token and state.client_id == "pilotwms-cli"
    token = token_file.read_text().strip()
    bearer = {"Authorization": f"Bearer {token}"}
    assert requests.get(oidc_idp.endpoint("userinfo"), headers=bearer,
                        timeout=10).json()["preferred_username"] == "alice"

    out = subprocess.run([PY, "-m", "core.cli.login", "--help"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert "--issuer" in out.stdout
    out = subprocess.run([PY, "-c", "from core.cli.login import logout_main; "
                          "raise SystemExit(logout_main())"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"Tokens revoked at {oidc_idp.issuer}" in out.stdout
    assert not token_file.exists() and not store.state_file.exists()
    assert requests.get(oidc_idp.endpoint("userinfo"), headers=bearer,
                        timeout=10).status_code == 401
    refused = requests.post(oidc_idp.endpoint("token"), timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": state.refresh_token,
        "client_id": "pilotwms-cli"})
    assert refused.json()["error"] == "invalid_grant"


def test_dlogin_refuses_a_group_the_idp_does_not_assert(
        oidc_idp: OIDCProvider, env: dict[str, str], tmp_path: Path) -> None:
    run = run_dlogin(["--issuer", oidc_idp.issuer, "--group", "/demo/admins"], env,
                     _approve(oidc_idp, "bob"))
    assert run.returncode == 2
    assert run.stderr.strip() == (f"ERROR: {oidc_idp.issuer} does not put you in "
                                  "'/demo/admins' (your groups: /demo, /demo/users)")
    assert not (tmp_path / "bt").exists()


def test_dlogin_denied(oidc_idp: OIDCProvider, env: dict[str, str], tmp_path: Path) -> None:
    run = run_dlogin(["--issuer", oidc_idp.issuer], env,
                     lambda code: oidc_idp.deny_device(code, "bob", "bob-password"))
    assert run.approval_error is None
    assert run.returncode == 2
    assert run.stderr.strip() == "ERROR: the login was denied"
    assert not (tmp_path / "bt").exists()


def test_dlogin_code_expires(env: dict[str, str], tmp_path: Path) -> None:
    with OIDCProvider(config={"ttl": {"DeviceCode": 2}}, workdir=tmp_path) as idp:
        run = run_dlogin(["--issuer", idp.issuer], env, None)
    assert run.returncode == 2
    assert run.stderr.strip() == ("ERROR: the code expired before the login was approved: "
                                  "run it again")


def test_unknown_issuer_and_no_device_flow(env: dict[str, str], tmp_path: Path) -> None:
    run = run_dlogin(["--issuer", "http://127.0.0.1:9"], env, None)
    assert run.returncode == 2 and "cannot reach http://127.0.0.1:9/.well-known" in run.stderr


def test_silent_refresh_when_near_expiry(env: dict[str, str], tmp_path: Path) -> None:
    # access tokens live 30 s: below the 60 s margin, so every use refreshes first
    with OIDCProvider(config={"ttl": {"AccessToken": 30}}, workdir=tmp_path) as idp:
        run = run_dlogin(["--issuer", idp.issuer], env, _approve(idp, "bob"))
        assert run.returncode == 0, run.stderr
        store = TokenStore(tmp_path / "bt", Path(env["HOME"]) / ".pilotwms" / "tokens")
        first = store.access_token()
        state = store.load_state()
        assert first and state and state.refresh_token
        cfg = ClientConfig.model_validate({"URLs": ["https://127.0.0.1:1"]})
        creds = find_credentials(cfg, environ=env)
        assert creds.token and creds.token != first
        assert store.access_token() == creds.token
        new_state = store.load_state()
        assert new_state and new_state.refresh_token != state.refresh_token
        assert 25 <= new_state.seconds_left() <= 30
        info = requests.get(idp.endpoint("userinfo"), timeout=10,
                            headers={"Authorization": f"Bearer {creds.token}"})
        assert info.json()["preferred_username"] == "bob"
        # commands started together refresh one after the other (file lock): each uses the
        # refresh token the previous one got, so no reuse of a rotated token
        code = ("from core.client_config import ClientConfig, find_credentials\n"
                "cfg = ClientConfig.model_validate({'URLs': ['https://127.0.0.1:1']})\n"
                "print(find_credentials(cfg).token)\n")
        procs = [subprocess.Popen([PY, "-c", code], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
        results = [p.communicate(timeout=60) for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, results
        tokens = {out.strip() for out, _err in results}
        assert len(tokens) == 4 and store.access_token() in tokens
        creds = find_credentials(cfg, environ=env)
        assert creds.token and creds.token not in tokens
        # the refresh token is revoked: still valid for a while, then a clear error
        new_state = store.load_state()
        assert new_state is not None
        # logging in again replaces the login and revokes the refresh token it replaces
        again = run_dlogin(["--issuer", idp.issuer], env, _approve(idp, "bob"))
        assert again.returncode == 0, again.stderr
        replaced = requests.post(idp.endpoint("token"), timeout=10, data={
            "grant_type": "refresh_token", "refresh_token": new_state.refresh_token,
            "client_id": "pilotwms-cli"})
        assert replaced.json()["error"] == "invalid_grant"
        creds = find_credentials(cfg, environ=env)
        new_state = store.load_state()
        assert new_state is not None
        revoked = requests.post(idp.endpoint("revocation"), timeout=10, data={
            "token": new_state.refresh_token, "client_id": "pilotwms-cli"})
        assert revoked.status_code == 200
        assert fresh_access_token(store) == creds.token          # 30 s left: use it
        with pytest.raises(CredentialError, match="could not be refreshed.*dlogin"):
            fresh_access_token(store, now=lambda: new_state.expires_at + 1)
        # ... and with a proxy around, commands fall back to it
        proxy = Path(env["X509_USER_PROXY"])
        proxy.write_text("placeholder")
        later = {**env}
        new_state.expires_at = 0
        store.save({"access_token": creds.token}, new_state)
        assert find_credentials(cfg, environ=later).cert == str(proxy)
        proxy.unlink()
        with pytest.raises(CredentialError, match="has expired.*dlogin"):
            find_credentials(cfg, environ=later)


def test_no_credentials_says_how_to_log_in(env: dict[str, str], tmp_path: Path) -> None:
    client = tmp_path / "client.yaml"
    client.write_text("URLs: [https://127.0.0.1:1]\n")
    env = {**env, "PILOTWMS_CLIENT_CONFIG": str(client)}
    proc = subprocess.run([PY, "-m", "wms.cli.dstat"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"ERROR: X509_USER_PROXY names a missing file {env['X509_USER_PROXY']}: make the proxy "
        "with 'dinit' (or unset X509_USER_PROXY and log in with 'dlogin')")
    message = ("No credentials found (no bearer token in $BEARER_TOKEN_FILE or /tmp/bt_u<uid>, "
               "no proxy in $X509_USER_PROXY or /tmp/x509up_u<uid>, no certificate): log in "
               "with 'dlogin' (a token), or make a proxy with 'dinit' (or 'pilotwms proxy init')")
    if not any(Path(f"/tmp/{n}{os.getuid()}").exists() for n in ("x509up_u", "bt_u")):
        # (the machine's own default proxy/token files, when present, would be used instead)
        env["X509_USER_PROXY"] = ""
        proc = subprocess.run([PY, "-m", "wms.cli.dstat"], capture_output=True, text=True,
                              env=env, timeout=60)
        assert proc.returncode == 2 and proc.stderr.strip() == f"ERROR: {message}"
    with pytest.raises(CredentialError) as err:
        make_client("Framework/Registry", ClientConfig.model_validate(
            {"URLs": ["https://127.0.0.1:1"]}), find_credentials(
            ClientConfig.model_validate({"URLs": ["https://h:1"]}), environ={}, uid=-1))
    assert err.value.message == message


def test_dlogin_over_https_with_ca(env: dict[str, str], tmp_path: Path) -> None:
    from core.security.ca import CA_CERT_FILE, CertificateAuthority

    ca = CertificateAuthority.create(tmp_path / "ca")
    cert, key = ca.issue("127.0.0.1", kind="host")
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    ca_file = str(tmp_path / "ca" / CA_CERT_FILE)
    with OIDCProvider(tls=(tmp_path / "cert.pem", tmp_path / "key.pem"), verify=ca_file,
                      workdir=tmp_path) as idp:
        untrusted = run_dlogin(["--issuer", idp.issuer], env, None)
        assert untrusted.returncode == 2 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
        run = run_dlogin(["--issuer", idp.issuer, "--ca", ca_file], env, _approve(idp, "carol"))
        assert run.returncode == 0, run.stderr
        assert run.fields()["username"] == "carol" and run.fields()["group"] == ""
        state = TokenStore(tmp_path / "bt", Path(env["HOME"]) / ".pilotwms" / "tokens"
                           ).load_state()
        assert state is not None and state.verify == ca_file
