"""Mapping credentials to identities: tokens of our issuer and of external issuers, registry
rules for groups, and delegation through extraCredentials."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from core.config.schema import Config
from core.exceptions import NotAuthenticatedError, NotAuthorizedError
from core.security.authenticate import Authenticator
from core.security.tokens import TokenIssuer, generate_signing_key

IDP = "https://idp.example.org/"


def _config(tmp_path: Path, idp_key: RSAKey, **issuer: Any) -> Config:
    generate_signing_key(tmp_path / "jwk.json")
    return Config.model_validate({
        "Auth": {
            "Signing": {"Issuer": "https://wms", "KeyFile": str(tmp_path / "jwk.json")},
            "Issuers": [{"Issuer": IDP, "VO": "demo", "Audience": "pilotwms",
                         "JWKS": {"keys": [idp_key.as_dict(private=False)]},
                         "GroupMap": {"/demo": "demo_user", "/demo/prod": "demo_prod"},
                         **issuer}],
        },
        "Registry": {
            "VOs": {"demo": {"DefaultGroup": "demo_user"}, "other": {}},
            "Users": {
                "alice": {"DNs": ["/CN=alice"],
                          "TokenSubjects": [{"Issuer": IDP, "Subject": "sub-alice"}]},
                "bob": {"DNs": ["/CN=bob"]},
            },
            "Groups": {
                "demo_user": {"VO": "demo", "Users": ["alice", "bob"],
                              "Properties": ["NormalUser"]},
                "demo_prod": {"VO": "demo", "Users": ["alice"],
                              "Properties": ["ProductionManagement"]},
                "other_user": {"VO": "other", "Users": ["bob"]},
            },
        },
    })


@pytest.fixture(scope="module")
def idp_key() -> RSAKey:
    return RSAKey.generate_key(2048, auto_kid=True)


def idp_token(key: RSAKey, **claims: Any) -> str:
    now = int(time.time())
    base = {"iss": IDP, "sub": "sub-alice", "aud": "pilotwms", "iat": now, "exp": now + 600}
    base.update(claims)
    return jwt.encode({"alg": "RS256", "kid": key.kid}, base, key)


def test_external_token_groups_claim_is_mapped(tmp_path: Path, idp_key: RSAKey) -> None:
    auth = Authenticator(_config(tmp_path, idp_key))
    ident = auth.from_token(idp_token(idp_key, **{"wlcg.groups": ["/demo/prod", "/demo"]}))
    assert (ident.username, ident.group, ident.vo) == ("alice", "demo_prod", "demo")
    assert ident.properties == {"ProductionManagement"} and ident.authenticated
    assert ident.dn == "/CN=alice" and ident.issuer == IDP and ident.subject == "sub-alice"


def test_external_token_scope_picks_the_group(tmp_path: Path, idp_key: RSAKey) -> None:
    auth = Authenticator(_config(tmp_path, idp_key))
    ident = auth.from_token(idp_token(idp_key, scope="openid group:demo_user",
                                      **{"wlcg.groups": ["/demo/prod"]}))
    assert ident.group == "demo_user"


def test_external_token_default_group_and_other_claim(tmp_path: Path, idp_key: RSAKey) -> None:
    auth = Authenticator(_config(tmp_path, idp_key, GroupsClaim="groups"))
    # the configured claim is "groups": "wlcg.groups" is ignored, default group applies
    ident = auth.from_token(idp_token(idp_key, **{"wlcg.groups": ["/demo/prod"]}))
    assert ident.group == "demo_user"
    ident = auth.from_token(idp_token(idp_key, groups="/demo/prod"))
    assert ident.group == "demo_prod"


def test_external_token_unknown_subject_is_not_authenticated(tmp_path: Path,
                                                             idp_key: RSAKey) -> None:
    auth = Authenticator(_config(tmp_path, idp_key))
    ident = auth.from_token(idp_token(idp_key, sub="someone-else"))
    assert not ident.authenticated and ident.username is None


@pytest.mark.parametrize(
    ("claims", "reason"),
    [({"exp": int(time.time()) - 300}, "expired"),
     ({"aud": "another-service"}, "aud"),
     ({"iss": "https://evil.example.org/"}, "untrusted issuer")],
)
def test_external_token_refused(tmp_path: Path, idp_key: RSAKey, claims: dict[str, Any],
                                reason: str) -> None:
    auth = Authenticator(_config(tmp_path, idp_key))
    with pytest.raises(NotAuthenticatedError, match=reason):
        auth.from_token(idp_token(idp_key, **claims))


def test_token_signed_by_another_key(tmp_path: Path, idp_key: RSAKey) -> None:
    auth = Authenticator(_config(tmp_path, idp_key))
    rogue = RSAKey.generate_key(2048, auto_kid=True)
    with pytest.raises(NotAuthenticatedError):
        auth.from_token(idp_token(rogue))


def test_revoked_token(tmp_path: Path, idp_key: RSAKey) -> None:
    from core.security.tokens import TokenVerifier

    config = _config(tmp_path, idp_key)
    auth = Authenticator(config, TokenVerifier(config.auth, is_revoked=lambda jti: jti == "x"))
    with pytest.raises(NotAuthenticatedError, match="revoked"):
        auth.from_token(idp_token(idp_key, jti="x"))
    assert auth.from_token(idp_token(idp_key, jti="y")).authenticated


def test_verified_tokens_are_remembered_but_revocation_and_expiry_still_apply(
        tmp_path: Path, idp_key: RSAKey) -> None:
    from core.security.tokens import LEEWAY, TokenVerifier

    revoked: set[str] = set()
    verifier = TokenVerifier(_config(tmp_path, idp_key).auth, is_revoked=revoked.__contains__)
    now = int(time.time())
    token = idp_token(idp_key, jti="j1")
    first = verifier.verify(token)
    first["sub"] = "changed by the caller"  # callers get copies
    assert verifier.verify(token)["sub"] == "sub-alice"
    revoked.add("j1")  # revoked after it was remembered: refused at the next call
    with pytest.raises(NotAuthenticatedError, match="revoked"):
        verifier.verify(token)
    # expiry is checked on remembered tokens too (with the same leeway as the first check)
    short = idp_token(idp_key, jti="j2", exp=now - LEEWAY + 3)
    assert verifier.verify(short)["jti"] == "j2"
    time.sleep(max(0.0, now + 3.2 - time.time()))
    with pytest.raises(NotAuthenticatedError, match="expired"):
        verifier.verify(short)
    # the cache is bounded
    verifier.CACHE_SIZE = 2
    for jti in ("a", "b", "c"):
        verifier.verify(idp_token(idp_key, jti=jti))
    assert len(verifier._verified) == 2  # noqa: SLF001 - the bound itself is under test


def test_own_token_for_a_group_of_another_vo(tmp_path: Path, idp_key: RSAKey) -> None:
    config = _config(tmp_path, idp_key)
    assert config.auth.signing is not None
    issuer = TokenIssuer(config.auth.signing)
    ident = Authenticator(config).from_token(issuer.issue("bob", group="other_user", vo="other"))
    assert (ident.group, ident.vo, ident.authenticated) == ("other_user", "other", True)
    # a token claiming a group of one VO with the VO of another is not valid
    forged = issuer.issue("bob", group="other_user", vo="demo")
    assert not Authenticator(config).from_token(forged).authenticated


def test_job_credentials_are_ours_and_carry_no_more_than_granted(tmp_path: Path,
                                                                   idp_key: RSAKey) -> None:
    config = _config(tmp_path, idp_key)
    assert config.auth.signing is not None
    auth = Authenticator(config)
    # an external issuer cannot mint a job-scoped credential (it would act as the job owner)
    ident = auth.from_token(idp_token(idp_key, scope="openid job:7 group:demo_prod"))
    assert ident.authenticated and not any(s.startswith("job:") for s in ident.scopes)
    # our tokens may narrow the group's properties, never widen them
    issuer = TokenIssuer(config.auth.signing)
    narrowed = auth.from_token(issuer.issue(
        "alice", group="demo_prod", vo="demo", scopes=["job:7"],
        extra_claims={"properties": ["NormalUser", "JobAdministrator"]}))
    assert narrowed.authenticated and "job:7" in narrowed.scopes
    assert narrowed.properties == frozenset()  # demo_prod has neither
    full = auth.from_token(issuer.issue("alice", group="demo_prod", vo="demo"))
    assert full.properties == {"ProductionManagement"}
    kept = auth.from_token(issuer.issue("alice", group="demo_prod", vo="demo",
                                        extra_claims={"properties": ["ProductionManagement"]}))
    assert kept.properties == {"ProductionManagement"}


def test_default_group_order(tmp_path: Path, idp_key: RSAKey) -> None:
    reg = Authenticator(_config(tmp_path, idp_key)).registry
    assert reg.default_group("alice") == "demo_user"
    assert reg.default_group("bob", "other") == "other_user"
    assert reg.default_group("nobody") is None


def test_extra_credentials(tmp_path: Path, idp_key: RSAKey) -> None:
    config = _config(tmp_path, idp_key)
    auth = Authenticator(config)
    host = auth.for_user("alice", dn="/CN=alice", group=None, auth_method="x509")
    with pytest.raises(NotAuthorizedError, match="trusted hosts"):
        auth.apply_extra_credentials(host, ["/CN=bob", "demo_user"])
    assert auth.apply_extra_credentials(host, "hosts") is host
