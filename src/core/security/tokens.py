"""JSON Web Tokens: pilotwms's own issuer and the verification of any configured issuer.

JOSE work is done by ``joserfc``, the JOSE library of the Authlib project (``authlib.jose`` is
deprecated in its favour since Authlib 1.4); the OAuth2 server of later issues is Authlib itself.

Our own tokens carry ``sub`` (the registry user name), ``vo``, ``dirac_group`` and a ``scope`` of
``"vo:<vo> group:<group>"``. Tokens of external issuers are mapped by
:mod:`core.security.authenticate` using the issuer's ``GroupsClaim`` and ``GroupMap``.

Example::

    >>> import tempfile, pathlib
    >>> from core.config.schema import AuthConfig, SigningConfig
    >>> key = pathlib.Path(tempfile.mkdtemp()) / "jwk.json"
    >>> generate_signing_key(key)
    >>> signing = SigningConfig(issuer="https://127.0.0.1:8443", key_file=key)
    >>> token = TokenIssuer(signing).issue("alice", group="demo_user", vo="demo")
    >>> claims = TokenVerifier(AuthConfig(signing=signing)).verify(token)
    >>> claims["sub"], claims["dirac_group"]
    ('alice', 'demo_user')
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet, RSAKey

from core.config.schema import AuthConfig, IssuerConfig, SigningConfig
from core.exceptions import ConfigError, NotAuthenticatedError

#: accepted clock skew between issuer and service, in seconds
LEEWAY = 30


def generate_signing_key(path: Path) -> None:
    """Write a new RSA private JWK to ``path`` (mode 600; an existing key is kept)."""
    if path.exists():
        return
    key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, auto_kid=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as stream:
        json.dump(key.as_dict(private=True), stream)


def _load_jwk(path: Path) -> RSAKey:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read signing key {path}: {exc}") from None
    return RSAKey.import_key(data)


def retired_key_dir(key_file: Path) -> Path:
    """Where the public halves of replaced signing keys wait until their tokens expire."""
    return key_file.with_name(key_file.name + ".retired")


def rotate_signing_key(key_file: Path, keep_seconds: int) -> tuple[str, str]:
    """Replace the signing key; the old public key stays trusted for ``keep_seconds``.

    The old key's public half goes to :func:`retired_key_dir` (``<kid>.json`` with a
    ``pilotwms_until`` time), the new private key replaces ``key_file`` atomically, and retired
    keys past their time are deleted. Running servers notice the new file (issuers check its
    mtime; verifiers reload on an unknown ``kid``). Returns (old kid, new kid).
    """
    old = _load_jwk(key_file)
    retired = retired_key_dir(key_file)
    retired.mkdir(parents=True, exist_ok=True)
    now = int(time.time())
    public = {**old.as_dict(private=False), "pilotwms_until": now + keep_seconds}
    (retired / f"{old.kid}.json").write_text(json.dumps(public))
    new = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, auto_kid=True)
    tmp = key_file.with_name(key_file.name + f".new-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as stream:
        json.dump(new.as_dict(private=True), stream)
    os.replace(tmp, key_file)
    for path in retired.glob("*.json"):
        try:
            if int(json.loads(path.read_text()).get("pilotwms_until", 0)) < now:
                path.unlink()
        except (OSError, ValueError):
            continue
    return str(old.kid), str(new.kid)


def public_signing_keys(key_file: Path) -> list[RSAKey]:
    """The current public key and every retired one still within its time."""
    keys = [RSAKey.import_key(_load_jwk(key_file).as_dict(private=False))]
    now = time.time()
    retired = retired_key_dir(key_file)
    for path in sorted(retired.glob("*.json")) if retired.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if float(data.pop("pilotwms_until", 0)) >= now:
            keys.append(RSAKey.import_key(data))
    return keys


class TokenIssuer:
    """Signs access tokens for pilotwms's own issuer."""

    def __init__(self, signing: SigningConfig) -> None:
        self.signing = signing
        self._stamp = self._file_stamp()
        self.key = _load_jwk(signing.key_file)

    def _file_stamp(self) -> tuple[int, int]:
        try:
            st = self.signing.key_file.stat()
        except OSError:
            return (0, 0)
        return (st.st_ino, st.st_mtime_ns)

    def reload_if_rotated(self) -> None:
        """Pick up a key replaced by :func:`rotate_signing_key` (one ``stat``)."""
        stamp = self._file_stamp()
        if stamp != self._stamp:
            self.key = _load_jwk(self.signing.key_file)
            self._stamp = stamp

    def public_jwks(self) -> dict[str, Any]:
        """The current public key and the retired ones still trusted."""
        self.reload_if_rotated()
        return {"keys": [k.as_dict(private=False)
                         for k in public_signing_keys(self.signing.key_file)]}

    def issue(
        self,
        username: str,
        *,
        group: str,
        vo: str,
        lifetime: int | None = None,
        scopes: list[str] | None = None,
        extra_claims: dict[str, Any] | None = None,
    ) -> str:
        """An access token for ``username`` acting in ``group``; ``lifetime`` in seconds."""
        if not username or not group or not vo:
            raise ValueError("a token needs a user, a group and a VO")
        self.reload_if_rotated()
        now = int(time.time())
        scope = [f"vo:{vo}", f"group:{group}", *(scopes or [])]
        claims: dict[str, Any] = {
            "iss": self.signing.issuer,
            "sub": username,
            "aud": self.signing.audience,
            "iat": now,
            "nbf": now - 5,
            "exp": now + (lifetime or self.signing.lifetime),
            "jti": uuid.uuid4().hex,
            "vo": vo,
            "dirac_group": group,
            "preferred_username": username,
            "scope": " ".join(scope),
        }
        claims.update(extra_claims or {})
        header = {"alg": "RS256", "kid": self.key.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self.key)


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT without checking anything; only to pick the issuer's keys."""
    parts = token.split(".")
    if len(parts) != 3:
        raise NotAuthenticatedError("Malformed bearer token: not a JWT")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        raise NotAuthenticatedError("Malformed bearer token: bad payload") from None
    if not isinstance(claims, dict):
        raise NotAuthenticatedError("Malformed bearer token: payload is not an object")
    return claims


class _Trusted:
    def __init__(self, conf: IssuerConfig | None, keys: KeySet, audience: str | None,
                 algorithms: list[str]) -> None:
        self.conf = conf
        self.keys = keys
        self.audience = audience
        self.algorithms = algorithms


class TokenVerifier:
    """Verifies bearer tokens of the configured issuers (and of our own signing key).

    ``is_revoked(jti)`` is consulted after the signature checks, on every call; tokens
    without ``exp`` are refused. A token verified once is remembered until its ``exp`` (at most
    :attr:`CACHE_SIZE` of them, the least recently used forgotten first): pilots and clients
    present the same token for many calls, and the signature check (~0.1 ms for RS256) is then
    done once. Key rotation does not need the cache flushed: a retired key stays trusted until
    every token it signed has expired.
    """

    CACHE_SIZE = 4096

    def __init__(
        self, auth: AuthConfig, is_revoked: Callable[[str], bool] | None = None
    ) -> None:
        self._issuers: dict[str, _Trusted] = {}
        self._is_revoked = is_revoked
        self._verified: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._signing = auth.signing
        self._reloaded = time.monotonic()
        self._key_stamp: tuple[int, int] | None = None
        if auth.signing is not None:
            st = auth.signing.key_file.stat() if auth.signing.key_file.exists() else None
            self._key_stamp = (st.st_ino, st.st_mtime_ns) if st else None
            self._issuers[auth.signing.issuer.rstrip("/")] = _Trusted(
                None, KeySet(public_signing_keys(auth.signing.key_file)),  # type: ignore[arg-type]
                auth.signing.audience, ["RS256"]
            )
        for conf in auth.issuers:
            jwks = conf.jwks
            if jwks is None and conf.jwks_file is not None:
                try:
                    jwks = json.loads(conf.jwks_file.read_text())
                except (OSError, ValueError) as exc:
                    raise ConfigError(f"issuer {conf.issuer}: cannot read JWKS: {exc}") from None
            try:
                keys = KeySet.import_key_set(jwks or {"keys": []})  # type: ignore[arg-type]
            except (JoseError, ValueError, KeyError) as exc:
                raise ConfigError(f"issuer {conf.issuer}: bad JWKS: {exc}") from None
            self._issuers[conf.issuer.rstrip("/")] = _Trusted(
                conf, keys, conf.audience, conf.algorithms
            )

    def _reload_own_keys(self) -> None:
        """Keys rotated meanwhile (:func:`rotate_signing_key`): at most once a second, one
        ``stat`` of the key file; when it changed, the current and retired keys are re-read
        (so a retired key whose time is over stops being trusted) and the tokens verified so
        far are verified again."""
        now = time.monotonic()
        if self._signing is None or now - self._reloaded < 1.0:
            return
        self._reloaded = now
        try:
            st = self._signing.key_file.stat()
        except OSError:
            return
        stamp = (st.st_ino, st.st_mtime_ns)
        if stamp != self._key_stamp:
            self._key_stamp = stamp
            trusted = self._issuers[self._signing.issuer.rstrip("/")]
            trusted.keys = KeySet(public_signing_keys(self._signing.key_file))  # type: ignore[arg-type]
            with self._cache_lock:
                self._verified.clear()

    def issuer_config(self, issuer: str) -> IssuerConfig | None:
        """The configuration of an external issuer; None for our own."""
        trusted = self._issuers.get(issuer.rstrip("/"))
        return trusted.conf if trusted else None

    def is_own(self, issuer: str) -> bool:
        trusted = self._issuers.get(issuer.rstrip("/"))
        return trusted is not None and trusted.conf is None

    def verify(self, token: str) -> dict[str, Any]:
        """The verified claims; :class:`NotAuthenticatedError` says why a token is refused."""
        self._reload_own_keys()
        with self._cache_lock:
            known = self._verified.get(token)
            if known is not None:
                self._verified.move_to_end(token)
        if known is not None:
            if int(known["exp"]) + LEEWAY <= time.time():  # as the first check allowed
                with self._cache_lock:
                    self._verified.pop(token, None)
                raise NotAuthenticatedError("Bearer token has expired")
            self._check_revoked(known)
            return dict(known)
        claims = self._verify(token)
        self._check_revoked(claims)
        with self._cache_lock:
            self._verified[token] = claims
            while len(self._verified) > self.CACHE_SIZE:
                self._verified.popitem(last=False)
        return dict(claims)

    def _check_revoked(self, claims: dict[str, Any]) -> None:
        jti = claims.get("jti")
        if self._is_revoked is not None and isinstance(jti, str) and self._is_revoked(jti):
            raise NotAuthenticatedError("Bearer token has been revoked")

    def _verify(self, token: str) -> dict[str, Any]:
        issuer = unverified_claims(token).get("iss")
        if not isinstance(issuer, str):
            raise NotAuthenticatedError("Bearer token has no issuer")
        trusted = self._issuers.get(issuer.rstrip("/"))
        if trusted is None:
            raise NotAuthenticatedError(f"Bearer token from an untrusted issuer: {issuer}")
        try:
            decoded = jwt.decode(token, trusted.keys, algorithms=trusted.algorithms)
        except BadSignatureError:
            raise NotAuthenticatedError("Bearer token signature is not valid") from None
        except (JoseError, ValueError) as exc:
            raise NotAuthenticatedError(f"Bearer token cannot be verified: {exc}") from None
        options: dict[str, Any] = {
            "exp": {"essential": True},
            "iss": {"essential": True, "value": issuer},
        }
        if trusted.audience:
            options["aud"] = {"essential": True, "value": trusted.audience}
        registry = jwt.JWTClaimsRegistry(leeway=LEEWAY, **options)
        claims = dict(decoded.claims)
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise NotAuthenticatedError("Bearer token has expired") from None
        except MissingClaimError as exc:
            raise NotAuthenticatedError(
                f"Bearer token misses a claim: {exc.description}") from None
        except InvalidClaimError as exc:
            raise NotAuthenticatedError(
                f"Bearer token has a bad claim: {exc.description}") from None
        except JoseError as exc:
            raise NotAuthenticatedError(f"Bearer token refused: {exc}") from None
        return claims
