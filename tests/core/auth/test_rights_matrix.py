"""Which bearer tokens a service hosted beside the login server accepts: the issue's rights
matrix for tokens (expired, tampered, wrong audience, revoked, rotated refresh family, retired
key, unknown issuer, refresh token as bearer, removed user). Proxies and groups for the token
exchange are in test_tokens_http.py; certificates and proxies on RPC in tests/core/rpc."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from core.auth import grants
from core.auth.grants import AuthServer
from core.auth.service import AuthService
from core.config.schema import Config, SigningConfig
from core.security.tokens import TokenIssuer, generate_signing_key, rotate_signing_key
from tests.core.rpc.conftest import ProbeService
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer

CLI = grants.CLI_CLIENT


@pytest.fixture
def probe(auth_cfg: Config) -> Iterator[ThreadedServer]:
    with ThreadedServer(auth_cfg, [ProbeService, AuthService],
                        port=auth_cfg.server.port) as server:
        yield server


def _login(srv: AuthServer, user: str = "alice", group: str = "demo_user") -> dict[str, str]:
    start = grants.start_device(srv, CLI, f"group:{group}")
    grants.approve_device(srv, start["user_code"], user, None)
    return dict(grants.poll_device(srv, CLI, start["device_code"]))


def _tamper(token: str) -> str:
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["dirac_group"] = "demo_admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return ".".join([head, forged, sig])


def _call(server: ThreadedServer, creds: Creds, token: str, method: str = "users"
          ) -> requests.Response:
    return requests.post(f"{server.url}/Test/Probe", data={"method": method},
                         headers={"Authorization": f"Bearer {token}"},
                         verify=str(creds.ca_dir), timeout=30)


def test_token_rights_matrix(probe: ThreadedServer, srv: AuthServer, creds: Creds,
                             auth_cfg: Config, tmp_path: Path) -> None:
    issuer = srv.issuer
    good = _login(srv)["access_token"]
    # a family whose spent refresh token was presented again
    stolen = _login(srv)
    grants.refresh(srv, CLI, stolen["refresh_token"])
    with pytest.raises(grants.AuthServerError):
        grants.refresh(srv, CLI, stolen["refresh_token"])
    revoked = _login(srv)["access_token"]
    base = probe.url
    requests.post(f"{base}/auth/revoke", data={"client_id": CLI, "token": revoked},
                  verify=str(creds.ca_dir), timeout=30).raise_for_status()
    foreign_key = tmp_path / "foreign.json"
    generate_signing_key(foreign_key)
    foreign = TokenIssuer(SigningConfig(issuer="https://elsewhere.example.org",
                                        key_file=foreign_key))
    same_issuer_other_key = TokenIssuer(SigningConfig(issuer=srv.base_url,
                                                      key_file=foreign_key))
    tokens = {
        "valid": (good, None),
        "expired": (issuer.issue("alice", group="demo_user", vo="demo",
                                 extra_claims={"exp": int(time.time()) - 120}), "expired"),
        "tampered": (_tamper(good), "signature"),
        "wrong audience": (issuer.issue("alice", group="demo_user", vo="demo",
                                        extra_claims={"aud": "another-service"}), "aud"),
        "revoked": (revoked, "revoked"),
        "rotated refresh family": (stolen["access_token"], "revoked"),
        "unknown issuer": (foreign.issue("alice", group="demo_user", vo="demo"), "untrusted"),
        "unknown key": (same_issuer_other_key.issue("alice", group="demo_user", vo="demo"),
                        "No key for kid"),
        "refresh token as bearer": (stolen["refresh_token"], "not a JWT"),
        "group the user is not in": (issuer.issue("alice", group="demo_pilot", vo="demo"),
                                     "registered user"),
    }
    for name, (token, why) in tokens.items():
        reply = _call(probe, creds, token)
        if why is None:
            assert reply.json() == {"OK": True, "Value": "alice"}, (name, reply.text)
        else:
            assert reply.status_code == 401, (name, reply.text)
            assert why in reply.json()["Message"], (name, reply.text)
    # a retired key is trusted until its time is over, then refused
    assert auth_cfg.auth.signing is not None
    key_file = auth_cfg.auth.signing.key_file
    rotate_signing_key(key_file, keep_seconds=-1)   # the old key's time is already over
    time.sleep(1.1)
    refused = _call(probe, creds, good)
    assert refused.status_code == 401 and "No key for kid" in refused.json()["Message"]
    assert _call(probe, creds, _login(srv)["access_token"]).json()["OK"]  # new key works


def test_revocation_reaches_other_servers(auth_cfg: Config, srv: AuthServer,
                                          creds: Creds) -> None:
    """Two servers on one database (as two hosts): a token revoked at the first is refused by
    the second within 2 x RevocationCacheSeconds."""
    assert auth_cfg.auth.server is not None
    cfg = auth_cfg.model_copy(update={"auth": auth_cfg.auth.model_copy(update={
        "server": auth_cfg.auth.server.model_copy(update={"revocation_cache_seconds": 0.5})})})
    token = _login(srv)["access_token"]
    with ThreadedServer(cfg, [ProbeService, AuthService], port=cfg.server.port) as first, \
            ThreadedServer(cfg, [ProbeService]) as second:
        assert _call(second, creds, token).json()["OK"]      # loads its list now
        requests.post(f"{first.url}/auth/revoke", data={"client_id": CLI, "token": token},
                      verify=str(creds.ca_dir), timeout=30).raise_for_status()
        assert _call(first, creds, token).status_code == 401   # at once where revoked
        deadline = time.monotonic() + 30  # 2 x 0.5 s, polled: a loaded machine is slow
        while (refused := _call(second, creds, token)).status_code != 401 \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        assert refused.status_code == 401 and "revoked" in refused.json()["Message"]
