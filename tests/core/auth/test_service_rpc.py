"""``Framework/Auth`` RPC methods: users store delegations; trusted hosts mint tokens from
them; the login routes are absent when ``Auth.Server`` is not configured."""

from __future__ import annotations

from typing import Any

import requests

from core.auth import grants
from core.auth.grants import AuthServer
from core.auth.service import AuthService
from core.config.schema import Config
from tests.core.auth.conftest import Client
from tests.support.credentials import Creds
from tests.support.servers import ThreadedServer


def _rpc(client: Client, method: str, *args: Any, token: str | None = None,
         cert: Any = None) -> requests.Response:
    import json

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{client.base}/Framework/Auth",
                         data={"method": method, "args": json.dumps(list(args))},
                         headers=headers, cert=cert, verify=client.verify, timeout=30)


def test_delegate_and_mint(client: Client, srv: AuthServer, creds: Creds) -> None:
    start = grants.start_device(srv, grants.CLI_CLIENT, "group:demo_user")
    grants.approve_device(srv, start["user_code"], "alice", None)
    token = grants.poll_device(srv, grants.CLI_CLIENT, start["device_code"])["access_token"]
    assert _rpc(client, "delegate", 3, token=token).json()["OK"]
    mine = _rpc(client, "getDelegations", token=token).json()["Value"]
    assert [(d["username"], d["group_name"], d["status"]) for d in mine] == [
        ("alice", "demo_user", "active")]
    # alice may not mint tokens for anyone; the trusted host may, for alice's delegation only
    assert _rpc(client, "mintDelegatedToken", "alice", "demo_user",
                token=token).status_code == 401
    host = tuple(map(str, creds.host))
    minted = _rpc(client, "mintDelegatedToken", "alice", "demo_user", cert=host).json()
    assert minted["OK"], minted
    who = client.whoami(minted["Value"]).json()["Value"]
    assert (who["username"], who["group"]) == ("alice", "demo_user")
    refused = _rpc(client, "mintDelegatedToken", "admin", "demo_admin", cert=host).json()
    assert not refused["OK"] and "no delegated credential" in refused["Message"]
    assert _rpc(client, "removeDelegation", "demo_user", token=token).json()["Value"] is True


def test_not_configured(config: Config, creds: Creds) -> None:
    config = config.model_copy(update={"auth": config.auth.model_copy(update={"server": None})})
    with ThreadedServer(config, [AuthService]) as server:
        meta = requests.get(f"{server.url}/.well-known/openid-configuration",
                            verify=str(creds.ca_dir), timeout=10)
        assert meta.status_code == 404
        reply = requests.post(f"{server.url}/Framework/Auth", data={"method": "delegate"},
                              cert=tuple(map(str, creds.alice)), verify=str(creds.ca_dir),
                              timeout=10).json()
        assert not reply["OK"] and "not configured" in reply["Message"]
