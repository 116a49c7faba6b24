"""The test IdP (tests/support/oidc_idp.py) behaves as a real OpenID Connect provider should.

Example::

    pytest -q tests/core/cli/test_idp_fixture.py
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.support.oidc_idp import (
    CONFIDENTIAL_CLIENT,
    DEVICE_GRANT,
    PUBLIC_CLIENT,
    USERS,
    IdPError,
    OIDCProvider,
)

SCOPE = "openid profile groups offline_access"


def _claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _device_login(idp: OIDCProvider, user: str, **client: Any) -> dict[str, Any]:
    auth = requests.post(idp.endpoint("device_authorization"), data={"scope": SCOPE, **client},
                         auth=client.pop("auth", None), timeout=10).json()
    assert auth["verification_uri_complete"].endswith(auth["user_code"])
    pending = requests.post(idp.endpoint("token"), data={
        "grant_type": DEVICE_GRANT, "device_code": auth["device_code"], **client}, timeout=10)
    assert pending.json()["error"] == "authorization_pending"
    idp.approve_device(auth["user_code"], user, USERS[user]["password"])
    r = requests.post(idp.endpoint("token"), data={
        "grant_type": DEVICE_GRANT, "device_code": auth["device_code"], **client}, timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_discovery(oidc_idp: OIDCProvider) -> None:
    meta = oidc_idp.discovery()
    assert meta["issuer"] == oidc_idp.issuer
    assert oidc_idp.issuer.startswith("http://127.0.0.1:")
    for name in ("authorization", "token", "device_authorization", "revocation", "userinfo"):
        assert meta[f"{name}_endpoint"].startswith(oidc_idp.issuer)
    assert DEVICE_GRANT in meta["grant_types_supported"]
    assert "groups" in meta["scopes_supported"] and "groups" in meta["claims_supported"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    keys = requests.get(meta["jwks_uri"], timeout=10).json()["keys"]
    assert keys and keys[0]["kty"] == "RSA" and "d" not in keys[0]


def test_device_flow_gives_groups_then_revocation_refuses(oidc_idp: OIDCProvider) -> None:
    tokens = _device_login(oidc_idp, "alice", client_id=PUBLIC_CLIENT)
    claims = _claims(tokens["id_token"])
    assert claims["sub"] == USERS["alice"]["sub"]
    assert claims["preferred_username"] == "alice"
    assert claims["groups"] == ["/demo", "/demo/users", "/demo/admins"]
    assert claims["iss"] == oidc_idp.issuer and claims["aud"] == PUBLIC_CLIENT
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    info = requests.get(oidc_idp.endpoint("userinfo"), headers=bearer, timeout=10)
    assert info.status_code == 200 and info.json()["groups"] == USERS["alice"]["groups"]

    r = requests.post(oidc_idp.endpoint("revocation"), timeout=10, data={
        "token": tokens["access_token"], "client_id": PUBLIC_CLIENT})
    assert r.status_code == 200
    refused = requests.get(oidc_idp.endpoint("userinfo"), headers=bearer, timeout=10)
    assert refused.status_code == 401
    assert "invalid_token" in refused.headers["www-authenticate"]


def test_refresh_rotates_and_revoked_refresh_is_refused(oidc_idp: OIDCProvider) -> None:
    tokens = _device_login(oidc_idp, "bob", client_id=PUBLIC_CLIENT)
    data = {"grant_type": "refresh_token", "client_id": PUBLIC_CLIENT}
    r = requests.post(oidc_idp.endpoint("token"), timeout=10,
                      data={**data, "refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200, r.text
    new = r.json()
    assert new["refresh_token"] != tokens["refresh_token"]
    assert _claims(new["id_token"])["groups"] == ["/demo", "/demo/users"]
    reused = requests.post(oidc_idp.endpoint("token"), timeout=10,
                           data={**data, "refresh_token": tokens["refresh_token"]})
    assert reused.json()["error"] == "invalid_grant"
    requests.post(oidc_idp.endpoint("revocation"), timeout=10, data={
        "token": new["refresh_token"], "client_id": PUBLIC_CLIENT})
    gone = requests.post(oidc_idp.endpoint("token"), timeout=10,
                         data={**data, "refresh_token": new["refresh_token"]})
    assert gone.json()["error"] == "invalid_grant"


def test_device_denied_and_wrong_password(oidc_idp: OIDCProvider) -> None:
    client_id, secret = CONFIDENTIAL_CLIENT
    auth = requests.post(oidc_idp.endpoint("device_authorization"), auth=(client_id, secret),
                         data={"scope": SCOPE}, timeout=10).json()
    with pytest.raises(IdPError, match="login refused"):
        oidc_idp.approve_device(auth["user_code"], "alice", "not-her-password")
    # the IdP holds that code in flight for the failed sign-in: deny on a fresh one
    auth = requests.post(oidc_idp.endpoint("device_authorization"), auth=(client_id, secret),
                         data={"scope": SCOPE}, timeout=10).json()
    oidc_idp.deny_device(auth["user_code"], "alice", "alice-password")
    r = requests.post(oidc_idp.endpoint("token"), auth=(client_id, secret), timeout=10,
                      data={"grant_type": DEVICE_GRANT, "device_code": auth["device_code"]})
    assert r.status_code == 400 and r.json()["error"] == "access_denied"


def test_authorization_code_with_pkce_for_the_confidential_client(oidc_idp: OIDCProvider) -> None:
    client_id, secret = CONFIDENTIAL_CLIENT
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    redirect = "http://127.0.0.1:61234/auth/callback"     # any loopback port and path
    params = {"client_id": client_id, "response_type": "code", "scope": SCOPE,
              "redirect_uri": redirect, "state": "st-1", "code_challenge": challenge,
              "code_challenge_method": "S256", "prompt": "consent"}
    url = requests.Request("GET", oidc_idp.endpoint("authorization"), params=params).prepare().url
    assert url is not None
    final = oidc_idp.login_via_browser(url, "carol", "carol-password")
    assert final.startswith(redirect + "?")
    query = parse_qs(urlsplit(final).query)
    assert query["state"] == ["st-1"] and query["iss"] == [oidc_idp.issuer]
    token = {"grant_type": "authorization_code", "code": query["code"][0],
             "redirect_uri": redirect}
    bad = requests.post(oidc_idp.endpoint("token"), auth=(client_id, secret), timeout=10,
                        data={**token, "code_verifier": secrets.token_urlsafe(48)})
    assert bad.json()["error"] == "invalid_grant"            # the code is now burnt too
    final = oidc_idp.login_via_browser(url, "carol", "carol-password")
    token["code"] = parse_qs(urlsplit(final).query)["code"][0]
    r = requests.post(oidc_idp.endpoint("token"), auth=(client_id, secret), timeout=10,
                      data={**token, "code_verifier": verifier})
    assert r.status_code == 200, r.text
    claims = _claims(r.json()["id_token"])
    assert claims["preferred_username"] == "carol" and claims["groups"] == []
    assert "refresh_token" in r.json()

    denied = oidc_idp.deny_via_browser(url.replace("st-1", "st-2"), "bob", "bob-password")
    assert parse_qs(urlsplit(denied).query)["error"] == ["access_denied"]
    with pytest.raises(IdPError, match="invalid_redirect_uri|redirect_uri"):
        oidc_idp.login_via_browser(url.replace("127.0.0.1%3A61234", "example.org"),
                                   "bob", "bob-password")


def test_extra_users_clients_and_short_ttl(tmp_path: Any) -> None:
    config = {"users": {"dave": {"sub": "dave-1", "password": "pw", "groups": ["/x"]}},
              "clients": [{"client_id": "other", "client_secret": "s3",
                           "grant_types": [DEVICE_GRANT, "refresh_token"],
                           "response_types": [], "redirect_uris": []}],
              "ttl": {"AccessToken": 7}}
    with OIDCProvider(config=config, workdir=tmp_path) as idp:
        auth = requests.post(idp.endpoint("device_authorization"), auth=("other", "s3"),
                             data={"scope": SCOPE}, timeout=10).json()
        idp.approve_device(auth["user_code"], "dave", "pw")
        r = requests.post(idp.endpoint("token"), auth=("other", "s3"), timeout=10,
                          data={"grant_type": DEVICE_GRANT, "device_code": auth["device_code"]})
        assert r.json()["expires_in"] == 7
        assert _claims(r.json()["id_token"])["groups"] == ["/x"]


def test_resource_indicator_gives_a_jwt_access_token_with_groups(oidc_idp: OIDCProvider) -> None:
    tokens = _device_login(oidc_idp, "bob", client_id=PUBLIC_CLIENT,
                           resource="https://pilotwms.test")
    claims = _claims(tokens["access_token"])
    assert claims["aud"] == "pilotwms" and claims["iss"] == oidc_idp.issuer
    assert claims["sub"] == USERS["bob"]["sub"] and claims["groups"] == USERS["bob"]["groups"]
    assert claims["exp"] - claims["iat"] == 600
    unknown = requests.post(oidc_idp.endpoint("device_authorization"), timeout=10, data={
        "client_id": PUBLIC_CLIENT, "scope": SCOPE, "resource": "https://elsewhere.test"})
    assert unknown.json()["error"] == "invalid_target"


def test_https_with_a_certificate_of_the_test_pki(tmp_path: Any) -> None:
    from core.security.ca import CA_CERT_FILE, CertificateAuthority

    ca = CertificateAuthority.create(tmp_path / "ca")
    cert, key = ca.issue("127.0.0.1", kind="host")
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    ca_file = str(tmp_path / "ca" / CA_CERT_FILE)
    with OIDCProvider(tls=(tmp_path / "cert.pem", tmp_path / "key.pem"), verify=ca_file) as idp:
        assert idp.issuer.startswith("https://127.0.0.1:")
        assert idp.discovery()["token_endpoint"].startswith(idp.issuer)
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(idp.issuer + "/jwks", timeout=10)      # not in the system's CAs
        auth = requests.post(idp.endpoint("device_authorization"), verify=ca_file, timeout=10,
                             data={"client_id": PUBLIC_CLIENT, "scope": SCOPE}).json()
        idp.approve_device(auth["user_code"], "alice", "alice-password")
        r = requests.post(idp.endpoint("token"), verify=ca_file, timeout=10, data={
            "client_id": PUBLIC_CLIENT, "grant_type": DEVICE_GRANT,
            "device_code": auth["device_code"]})
        assert _claims(r.json()["id_token"])["iss"] == idp.issuer
