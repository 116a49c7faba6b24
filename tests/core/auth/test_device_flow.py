"""The device flow through HTTP: a client asks for a code, the user approves it at the real
IdP (through pilotwms's verification page), the client polls, then calls a service."""

from __future__ import annotations

import pytest

from tests.core.auth.conftest import Client
from tests.support.oidc_idp import DEVICE_GRANT, IdPError, OIDCProvider, approve_device


def test_discovery_document(client: Client) -> None:
    meta = client.meta
    base = client.base
    assert meta["issuer"] == base
    for name, path in [("device_authorization_endpoint", "/auth/device"),
                       ("token_endpoint", "/auth/token"), ("jwks_uri", "/auth/jwks"),
                       ("authorization_endpoint", "/auth/authorize"),
                       ("revocation_endpoint", "/auth/revoke"),
                       ("userinfo_endpoint", "/auth/userinfo")]:
        assert meta[name] == base + path
    assert DEVICE_GRANT in meta["grant_types_supported"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert "group:demo_user" in meta["scopes_supported"]


def test_device_flow_then_whoami(client: Client, oidc_idp: OIDCProvider) -> None:
    start = client.post("device_authorization",
                        {"client_id": "pilotwms-cli", "scope": "group:demo_admin"}).json()
    assert start["verification_uri"] == client.base + "/auth/device/verify"
    pending = client.token(grant_type=DEVICE_GRANT, device_code=start["device_code"])
    assert pending.status_code == 400 and pending.json()["error"] == "authorization_pending"

    approve_device(start["verification_uri_complete"], "alice", "alice-password",
                   verify=client.verify)
    reply = client.token(grant_type=DEVICE_GRANT, device_code=start["device_code"])
    assert reply.status_code == 200, reply.text
    tokens = reply.json()
    assert tokens["token_type"] == "Bearer" and tokens["refresh_token"]
    assert tokens["scope"] == "vo:demo group:demo_admin"
    who = client.whoami(tokens["access_token"]).json()["Value"]
    assert (who["username"], who["group"], who["authMethod"]) == ("alice", "demo_admin", "token")
    assert "JobAdministrator" in who["properties"]
    # a device code gives tokens once
    again = client.token(grant_type=DEVICE_GRANT, device_code=start["device_code"])
    assert again.json()["error"] == "invalid_grant"


def test_default_group_and_userinfo(client: Client) -> None:
    start = client.post("device_authorization", {"client_id": "pilotwms-cli"}).json()
    approve_device(start["verification_uri_complete"], "bob", "bob-password",
                   verify=client.verify)
    tokens = client.token(grant_type=DEVICE_GRANT, device_code=start["device_code"]).json()
    info = client.post("userinfo", {},
                       headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
    assert (info["preferred_username"], info["group"], info["vo"]) == ("bob", "demo_user",
                                                                       "demo")
    bad = client.post("userinfo", {}, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and "invalid_token" in bad.headers["WWW-Authenticate"]


@pytest.mark.parametrize(("user", "scope", "why"), [
    ("bob", "group:demo_admin", "does not put bob"),      # GroupRules: IdP must assert it
    ("alice", "group:demo_pilot", "not a member"),          # registry: not in the group
    ("carol", "group:demo_user", "not registered"),         # IdP user unknown to pilotwms
])
def test_refused_sign_ins_deny_the_device(client: Client, user: str, scope: str,
                                          why: str) -> None:
    start = client.post("device_authorization",
                        {"client_id": "pilotwms-cli", "scope": scope}).json()
    with pytest.raises(IdPError, match=why):
        approve_device(start["verification_uri_complete"], user, f"{user}-password",
                       verify=client.verify)
    reply = client.token(grant_type=DEVICE_GRANT, device_code=start["device_code"])
    assert reply.json()["error"] == "access_denied"


def test_user_denies_consent(client: Client, oidc_idp: OIDCProvider) -> None:
    from tests.support.oidc_idp import deny_device

    start = client.post("device_authorization",
                        {"client_id": "pilotwms-cli", "scope": "group:demo_user"}).json()
    deny_device(start["verification_uri_complete"], "alice", "alice-password",
                verify=client.verify)
    reply = client.token(grant_type=DEVICE_GRANT, device_code=start["device_code"])
    assert reply.json()["error"] == "access_denied"


def test_device_errors(client: Client) -> None:
    unknown = client.post("device_authorization",
                          {"client_id": "pilotwms-cli", "scope": "group:nope"})
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_scope"
    bad_client = client.post("device_authorization", {"client_id": "who"})
    assert bad_client.status_code == 401 and bad_client.json()["error"] == "invalid_client"
    wrong = client.token(grant_type=DEVICE_GRANT, device_code="made-up")
    assert wrong.json()["error"] == "invalid_grant"
    grant = client.token(grant_type="password", username="alice")
    assert grant.json()["error"] == "unsupported_grant_type"


def test_verification_page_asks_before_signing_in(client: Client) -> None:
    import requests

    start = client.post("device_authorization",
                        {"client_id": "pilotwms-cli", "scope": "group:demo_user"}).json()
    page = requests.get(start["verification_uri_complete"], verify=client.verify, timeout=10)
    assert page.status_code == 200 and 'id="device-confirm-form"' in page.text
    assert "pilotwms-cli" in page.text and "group:demo_user" in page.text
    typed = requests.get(start["verification_uri"], verify=client.verify, timeout=10)
    assert 'name="user_code"' in typed.text
    go = requests.post(start["verification_uri"], data={"user_code": start["user_code"]},
                       verify=client.verify, allow_redirects=False, timeout=10)
    assert go.status_code == 302 and "code_challenge_method=S256" in go.headers["Location"]
    bad = requests.get(start["verification_uri"] + "?user_code=BBBB-BBBB",
                       verify=client.verify, timeout=10)
    assert bad.status_code == 400 and 'id="error"' in bad.text
