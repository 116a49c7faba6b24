"""Authorization code + PKCE, refresh rotation and family revocation, RFC 7009 revocation
refused by services, key rotation, and the X509 proxy exchange, all through HTTP."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from core.auth.grants import X509_GRANT
from core.config.schema import Config
from core.security.tokens import rotate_signing_key
from tests.core.auth.conftest import CLI, Client
from tests.support.credentials import Creds
from tests.support.oidc_idp import DEVICE_GRANT, approve_device, login_via_browser

REDIRECT = "http://127.0.0.1:8765/portal/callback"


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _authorize_url(client: Client, challenge: str, scope: str = "group:demo_user") -> str:
    return client.meta["authorization_endpoint"] + "?" + urlencode({
        "response_type": "code", "client_id": CLI, "redirect_uri": REDIRECT, "scope": scope,
        "state": "st-1", "code_challenge": challenge, "code_challenge_method": "S256"})


def _device_login(client: Client, user: str = "alice", scope: str = "group:demo_user"
                  ) -> dict[str, str]:
    start = client.post("device_authorization", {"client_id": CLI, "scope": scope}).json()
    approve_device(start["verification_uri_complete"], user, f"{user}-password",
                   verify=client.verify)
    reply = client.token(grant_type=DEVICE_GRANT, device_code=start["device_code"])
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def test_authorization_code_with_pkce(client: Client) -> None:
    verifier, challenge = _pkce()
    back = login_via_browser(_authorize_url(client, challenge), "alice", "alice-password",
                             verify=client.verify)
    query = parse_qs(urlsplit(back).query)
    assert query["state"] == ["st-1"]
    code = query["code"][0]
    wrong = client.token(grant_type="authorization_code", code=code, redirect_uri=REDIRECT,
                         code_verifier=_pkce()[0])
    assert wrong.json()["error"] == "invalid_grant" and "PKCE" in wrong.text
    # the code was spent by the failed attempt: a new sign-in is needed
    spent = client.token(grant_type="authorization_code", code=code, redirect_uri=REDIRECT,
                         code_verifier=verifier)
    assert spent.json()["error"] == "invalid_grant" and "used" in spent.text
    back = login_via_browser(_authorize_url(client, challenge), "alice", "alice-password",
                             verify=client.verify)
    code = parse_qs(urlsplit(back).query)["code"][0]
    reply = client.token(grant_type="authorization_code", code=code, redirect_uri=REDIRECT,
                         code_verifier=verifier)
    assert reply.status_code == 200, reply.text
    who = client.whoami(reply.json()["access_token"]).json()["Value"]
    assert (who["username"], who["group"]) == ("alice", "demo_user")


def test_authorize_refusals(client: Client) -> None:
    _verifier, challenge = _pkce()
    url = _authorize_url(client, challenge).replace("S256", "plain")
    r = requests.get(url, verify=client.verify, allow_redirects=False, timeout=10)
    assert r.status_code == 302 and "error=invalid_request" in r.headers["Location"]
    evil = _authorize_url(client, challenge).replace("127.0.0.1%3A8765", "evil.example.org")
    r = requests.get(evil, verify=client.verify, allow_redirects=False, timeout=10)
    assert r.status_code == 400 and 'id="error"' in r.text   # no redirect to an unknown URI


def test_refresh_rotates_and_reuse_revokes_the_family(client: Client) -> None:
    first = _device_login(client)
    second = client.token(grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert second.status_code == 200, second.text
    second_tokens = second.json()
    assert second_tokens["refresh_token"] != first["refresh_token"]
    assert client.whoami(second_tokens["access_token"]).json()["OK"]
    # the first refresh token is spent: presenting it again is a theft signal
    reuse = client.token(grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    assert "reused" in reuse.json()["error_description"]
    # ... the whole family is gone: the newest refresh token and the access tokens too
    later = client.token(grant_type="refresh_token", refresh_token=second_tokens["refresh_token"])
    assert later.json()["error"] == "invalid_grant"
    for token in (first["access_token"], second_tokens["access_token"]):
        refused = client.whoami(token)
        assert refused.status_code == 401 and "revoked" in refused.json()["Message"]


def test_revocation_is_refused_by_services(client: Client) -> None:
    tokens = _device_login(client)
    access = tokens["access_token"]
    assert client.whoami(access).json()["OK"]
    assert client.post("revocation", {"client_id": CLI, "token": access}).status_code == 200
    refused = client.whoami(access)
    assert refused.status_code == 401 and "revoked" in refused.json()["Message"]
    info = client.post("userinfo", {}, headers={"Authorization": f"Bearer {access}"})
    assert info.status_code == 401
    # revoking the refresh token ends the session (RFC 7009 2.1)
    client.post("revocation", {"client_id": CLI, "token": tokens["refresh_token"]})
    again = client.token(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert again.json()["error"] == "invalid_grant"
    # unknown tokens are accepted silently, as the RFC asks
    assert client.post("revocation", {"client_id": CLI, "token": "junk"}).status_code == 200


def test_key_rotation_keeps_tokens_valid(client: Client, auth_cfg: Config) -> None:
    before = _device_login(client)
    kids_before = {k["kid"] for k in requests.get(client.meta["jwks_uri"], verify=client.verify,
                                                  timeout=10).json()["keys"]}
    assert auth_cfg.auth.signing is not None
    old, new = rotate_signing_key(auth_cfg.auth.signing.key_file, keep_seconds=3600)
    assert kids_before == {old}
    time.sleep(1.1)  # the verifier re-reads keys at most once a second
    after = client.token(grant_type="refresh_token", refresh_token=before["refresh_token"])
    assert after.status_code == 200, after.text
    jwks = requests.get(client.meta["jwks_uri"], verify=client.verify, timeout=10).json()
    assert {k["kid"] for k in jwks["keys"]} == {old, new}
    header = after.json()["access_token"].split(".")[0]
    assert new in base64.urlsafe_b64decode(header + "==").decode()
    assert client.whoami(before["access_token"]).json()["OK"]       # old key, still trusted
    assert client.whoami(after.json()["access_token"]).json()["OK"]  # new key


def _exchange(client: Client, cert: object, scope: str | None = None) -> requests.Response:
    data = {"client_id": CLI, "grant_type": X509_GRANT}
    if scope:
        data["scope"] = scope
    return client.post("token", data, cert=cert)


def test_proxy_exchange(client: Client, creds: Creds) -> None:
    proxy = str(creds.proxy(creds.admin, group="demo_admin"))
    reply = _exchange(client, proxy)
    assert reply.status_code == 200, reply.text
    assert "refresh_token" not in reply.json()
    who = client.whoami(reply.json()["access_token"]).json()["Value"]
    assert (who["username"], who["group"]) == ("admin", "demo_admin")
    # a proxy without a group: the group asked for in the scope, else the default group
    bare = str(creds.proxy(creds.admin))
    assert _exchange(client, bare, "group:demo_admin").json()["scope"].endswith("demo_admin")
    assert _exchange(client, bare).json()["scope"] == "vo:demo group:demo_user"


def test_proxy_exchange_refusals(client: Client, creds: Creds) -> None:
    cases = {
        "limited proxy": (str(creds.proxy(creds.admin, limited=True)), None, "limited"),
        "group not a member": (str(creds.proxy(creds.alice, group="demo_pilot")), None,
                               "not a member"),
        "bare proxy, other group": (str(creds.proxy(creds.alice)), "group:demo_pilot",
                                    "not a member"),
        "scope against proxy": (str(creds.proxy(creds.admin, group="demo_admin")),
                                "group:demo_user", "not demo_user"),
        "unknown DN": (tuple(map(str, creds.stranger)), None, "not a registered user"),
        "host certificate": (tuple(map(str, creds.host)), None, "not a registered user"),
        "no certificate": (None, None, "present an X509 proxy"),
    }
    for name, (cert, scope, why) in cases.items():
        reply = _exchange(client, cert, scope)
        assert reply.status_code == 400, (name, reply.text)
        assert why in reply.json()["error_description"], (name, reply.text)
