"""Fixtures of the login-server tests: a configuration whose users sign in at the real
OpenID Connect provider of tests/support/oidc_idp.py, a database with the Auth schema (SQLite
and MariaDB through ``db_url``), and a pilotwms server hosting ``Framework/Auth``.

Registry additions: alice (IdP user alice) is also in ``demo_admin``; bob (IdP user bob) is in
``demo_user`` and ``demo_admin`` but the IdP does not put him in ``/demo/admins``, which the
VO's GroupRules require for ``demo_admin``; carol is known to the IdP only.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from core.auth.grants import AuthServer
from core.auth.service import AuthService
from core.auth.tables import AUTH_SCHEMA
from core.config.schema import Config
from core.db import init_schema, make_engine
from core.service.registry import RegistryService
from tests.support.credentials import Creds
from tests.support.oidc_idp import CONFIDENTIAL_CLIENT, USERS, OIDCProvider
from tests.support.servers import ThreadedServer

CLI = "pilotwms-cli"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def auth_config(config: Config, tmp_path: Path, idp_issuer: str, db: str, *,
                port: int | None = None, **server: Any) -> Config:
    """``config`` turned into a login server at https://127.0.0.1:<port> (own key copy)."""
    port = port or free_port()
    data = config.model_dump(by_alias=True, exclude_none=True)
    assert config.auth.signing is not None
    key = tmp_path / "keys" / "jwk.json"
    key.parent.mkdir(exist_ok=True)
    shutil.copy(config.auth.signing.key_file, key)
    data["Database"] = db
    data["Server"]["Port"] = port
    data["Auth"]["Signing"].update({"Issuer": f"https://127.0.0.1:{port}", "KeyFile": str(key)})
    data["Auth"]["Server"] = {
        "PollInterval": 0,
        "IdPs": {"demo": {"Issuer": idp_issuer, "ClientID": CONFIDENTIAL_CLIENT[0],
                          "ClientSecret": CONFIDENTIAL_CLIENT[1],
                          "Scopes": ["openid", "profile", "groups"], "GroupsClaim": "groups",
                          "GroupRules": {"/demo/admins": "demo_admin",
                                         "/demo/users": "demo_user"}}},
        **server,
    }
    reg = data["Registry"]
    for name in ("alice", "bob"):
        user = reg["Users"].setdefault(name, {"DNs": []})
        user["TokenSubjects"] = [{"Issuer": idp_issuer, "Subject": USERS[name]["sub"]}]
    for group in ("demo_user", "demo_admin"):
        members = reg["Groups"][group]["Users"]
        members.extend(u for u in ("alice", "bob") if u not in members)
    return Config.model_validate(data)


@pytest.fixture
def auth_cfg(config: Config, tmp_path: Path, oidc_idp: OIDCProvider, db_url: str) -> Config:
    cfg = auth_config(config, tmp_path, oidc_idp.issuer, db_url)
    init_schema(make_engine(db_url), AUTH_SCHEMA)
    return cfg


@pytest.fixture
def srv(auth_cfg: Config) -> Iterator[AuthServer]:
    engine = make_engine(auth_cfg.database_url("Auth"))
    yield AuthServer.from_config(auth_cfg, engine)
    engine.dispose()


@pytest.fixture
def auth_server(auth_cfg: Config) -> Iterator[ThreadedServer]:
    with ThreadedServer(auth_cfg, [AuthService, RegistryService],
                        port=auth_cfg.server.port) as server:
        yield server


class Client:
    """What a command-line client does, with ``requests`` (CA of the instance)."""

    def __init__(self, server: ThreadedServer, creds: Creds) -> None:
        self.base = server.url
        self.verify = str(creds.ca_dir)
        self.meta = requests.get(f"{self.base}/.well-known/openid-configuration",
                                 verify=self.verify, timeout=10).json()

    def post(self, endpoint: str, data: dict[str, str], **kw: Any) -> requests.Response:
        return requests.post(self.meta[f"{endpoint}_endpoint"], data=data, verify=self.verify,
                             timeout=30, **kw)

    def token(self, **data: str) -> requests.Response:
        return self.post("token", {"client_id": CLI, **data})

    def whoami(self, token: str) -> requests.Response:
        return requests.post(f"{self.base}/Framework/Registry", data={"method": "whoami"},
                             headers={"Authorization": f"Bearer {token}"},
                             verify=self.verify, timeout=30)


@pytest.fixture
def client(auth_server: ThreadedServer, creds: Creds) -> Client:
    return Client(auth_server, creds)


@pytest.fixture(autouse=True)
def _session_verify_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests lets $REQUESTS_CA_BUNDLE/$CURL_CA_BUNDLE override a Session's ``verify`` (the
    scripted user's session of tests/support/oidc_idp.py); our server's CA must win."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
