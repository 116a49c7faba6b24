"""The user side of OAuth2: device flow (RFC 8628), refresh, revocation (RFC 7009), token files.

Works with any issuer that publishes OpenID discovery
(``<issuer>/.well-known/openid-configuration``) with a ``device_authorization_endpoint``:
pilotwms's own server or an external IdP.

Where tokens live (WLCG bearer token discovery):

* the access token alone in ``$BEARER_TOKEN_FILE``, else ``/tmp/bt_u<uid>`` (mode 600);
* what is needed to refresh and revoke it (refresh token, endpoints, expiry) in
  ``~/.pilotwms/tokens/<key>.json`` (mode 600, directory 700), ``<key>`` naming the access token
  file, so several logins (several ``$BEARER_TOKEN_FILE``) coexist.

:func:`fresh_access_token` is what every command uses through ``find_credentials``: it returns
the token file's token, refreshed first (under a file lock: refresh tokens rotate) when it
expires within :data:`REFRESH_MARGIN` seconds.

Example (against an IdP: not a doctest, tests/core/auth runs it against the test IdP of
tests/support/oidc_idp.py)::

    meta = discover("http://127.0.0.1:9000")
    auth = start_device_flow(meta, "pilotwms-cli", "openid groups")
    print(auth.verification_uri_complete)       # the user opens it
    tokens = poll_device_flow(meta, "pilotwms-cli", auth)
    store = TokenStore.default()
    store.save(tokens, LoginState.from_tokens(meta, "pilotwms-cli", tokens))
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

from core.exceptions import CredentialError, InvalidArgumentError, ServiceUnavailableError

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: seconds: an access token expiring sooner than this is refreshed before use
REFRESH_MARGIN = 60
#: seconds between polls when the server does not say (RFC 8628 section 3.2)
DEFAULT_INTERVAL = 5
TIMEOUT = 15.0

Verify = bool | str


class OAuthError(CredentialError):
    """An OAuth2 error response (``error``/``error_description``) or an unusable reply."""

    def __init__(self, message: str, error: str = "", **extra: Any) -> None:
        super().__init__(message, **extra)
        self.error = error


def _json(r: requests.Response, what: str) -> dict[str, Any]:
    try:
        data = r.json()
    except ValueError:
        raise OAuthError(f"{what}: HTTP {r.status_code}, not JSON: {r.text[:200]!r}") from None
    if not isinstance(data, dict):
        raise OAuthError(f"{what}: HTTP {r.status_code}, not a JSON object")
    return data


def _post(url: str, data: Mapping[str, str], verify: Verify,
          auth: tuple[str, str] | None = None, cert: str | None = None) -> requests.Response:
    try:
        return requests.post(url, data=dict(data), auth=auth, verify=verify, timeout=TIMEOUT,
                             headers={"Accept": "application/json"}, cert=cert)
    except requests.RequestException as exc:
        raise ServiceUnavailableError(f"cannot reach {url}: {exc}") from None


def _error(data: Mapping[str, Any], what: str, status: int) -> OAuthError:
    error = str(data.get("error", ""))
    desc = str(data.get("error_description", ""))
    text = f"{error}: {desc}" if desc else (error or f"HTTP {status}")
    return OAuthError(f"{what}: {text}", error=error)


def discover(issuer: str, verify: Verify = True) -> dict[str, Any]:
    """The issuer's OpenID Provider metadata; checks the ``issuer`` it claims (RFC 8414)."""
    issuer = issuer.rstrip("/")
    if not issuer.startswith(("https://", "http://")):
        raise InvalidArgumentError(f"the issuer must be an http(s) URL, not {issuer!r}")
    url = f"{issuer}/.well-known/openid-configuration"
    try:
        r = requests.get(url, verify=verify, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise ServiceUnavailableError(f"cannot reach {url}: {exc}") from None
    if r.status_code != 200:
        raise OAuthError(f"{url}: HTTP {r.status_code}: no OpenID discovery there")
    meta = _json(r, url)
    if str(meta.get("issuer", "")).rstrip("/") != issuer:
        raise OAuthError(f"{url} claims the issuer {meta.get('issuer')!r}, not {issuer!r}")
    if "token_endpoint" not in meta:
        raise OAuthError(f"{url}: no token_endpoint")
    return meta


@dataclass(frozen=True)
class DeviceAuthorization:
    """The device authorization response (RFC 8628 section 3.2)."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: int
    interval: int


def start_device_flow(meta: Mapping[str, Any], client_id: str, scope: str, *,
                      client_secret: str | None = None, verify: Verify = True,
                      resource: str | None = None) -> DeviceAuthorization:
    """RFC 8628 section 3.1; ``resource`` is an RFC 8707 resource indicator."""
    endpoint = meta.get("device_authorization_endpoint")
    if not endpoint:
        raise OAuthError(f"{meta.get('issuer')} offers no device flow "
                         "(no device_authorization_endpoint in its discovery)")
    data = {"client_id": client_id, "scope": scope}
    if resource:
        data["resource"] = resource
    auth = (client_id, client_secret) if client_secret else None
    r = _post(str(endpoint), data, verify, auth)
    reply = _json(r, "device authorization")
    if r.status_code != 200:
        raise _error(reply, "device authorization refused", r.status_code)
    try:
        return DeviceAuthorization(
            device_code=str(reply["device_code"]), user_code=str(reply["user_code"]),
            verification_uri=str(reply.get("verification_uri") or reply["verification_url"]),
            verification_uri_complete=reply.get("verification_uri_complete"),
            expires_in=int(reply.get("expires_in", 600)),
            interval=int(reply.get("interval", DEFAULT_INTERVAL)))
    except (KeyError, TypeError, ValueError) as exc:
        raise OAuthError(f"device authorization: incomplete reply ({exc})") from None


def poll_device_flow(meta: Mapping[str, Any], client_id: str, auth: DeviceAuthorization, *,
                     client_secret: str | None = None, verify: Verify = True,
                     sleep: Callable[[float], None] = time.sleep,
                     clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Poll the token endpoint until the user approved; returns the token response.

    Honours ``interval``, ``authorization_pending``, ``slow_down`` (interval + 5 s, as RFC 8628
    section 3.5 says), and stops on ``expired_token``, ``access_denied`` or when ``expires_in``
    has passed.
    """
    interval = max(1, auth.interval)
    deadline = clock() + auth.expires_in
    data = {"grant_type": DEVICE_GRANT, "device_code": auth.device_code, "client_id": client_id}
    basic = (client_id, client_secret) if client_secret else None
    while True:
        sleep(interval)
        if clock() > deadline:
            raise OAuthError("the code expired before the login was approved: run it again",
                             error="expired_token")
        r = _post(str(meta["token_endpoint"]), data, verify, basic)
        reply = _json(r, "token request")
        if r.status_code == 200 and "access_token" in reply:
            return reply
        error = reply.get("error")
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += 5
            continue
        if error == "expired_token":
            raise OAuthError("the code expired before the login was approved: run it again",
                             error="expired_token")
        if error == "access_denied":
            raise OAuthError("the login was denied", error="access_denied")
        raise _error(reply, "token request refused", r.status_code)


X509_GRANT = "urn:pilotwms:params:oauth:grant-type:x509-proxy"


def exchange_proxy(meta: Mapping[str, Any], client_id: str, proxy: Path, scope: str = "", *,
                   verify: Verify = True) -> dict[str, Any]:
    """Exchange the X509 proxy (presented on the TLS connection) for an access token at a
    pilotwms login server (its ``x509-proxy`` grant; no refresh token: the proxy is the
    long-lived credential)."""
    if not proxy.is_file():
        raise CredentialError(f"no proxy at {proxy}: make one with dinit or pilotwms proxy init")
    data = {"grant_type": X509_GRANT, "client_id": client_id}
    if scope:
        data["scope"] = scope
    r = _post(str(meta["token_endpoint"]), data, verify, cert=str(proxy))
    reply = _json(r, "proxy exchange")
    if r.status_code != 200 or "access_token" not in reply:
        raise _error(reply, "proxy exchange refused", r.status_code)
    return reply


def refresh_tokens(token_endpoint: str, client_id: str, refresh_token: str, *,
                   client_secret: str | None = None, verify: Verify = True) -> dict[str, Any]:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
    basic = (client_id, client_secret) if client_secret else None
    r = _post(token_endpoint, data, verify, basic)
    reply = _json(r, "token refresh")
    if r.status_code != 200 or "access_token" not in reply:
        raise _error(reply, "token refresh refused", r.status_code)
    return reply


def revoke_token(revocation_endpoint: str, client_id: str, token: str, hint: str, *,
                 client_secret: str | None = None, verify: Verify = True) -> None:
    """RFC 7009: the server answers 200 for unknown and already revoked tokens too."""
    data = {"token": token, "token_type_hint": hint, "client_id": client_id}
    basic = (client_id, client_secret) if client_secret else None
    r = _post(revocation_endpoint, data, verify, basic)
    if r.status_code != 200:
        raise _error(_json(r, "revocation"), "revocation refused", r.status_code)


def userinfo(meta: Mapping[str, Any], access_token: str, verify: Verify = True
             ) -> dict[str, Any]:
    endpoint = meta.get("userinfo_endpoint")
    if not endpoint:
        return {}
    try:
        r = requests.get(str(endpoint), headers={"Authorization": f"Bearer {access_token}"},
                         verify=verify, timeout=TIMEOUT)
    except requests.RequestException:
        return {}
    return _json(r, "userinfo") if r.status_code == 200 else {}


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (for display only); {} when it is not a JWT."""
    import base64

    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        data = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# -- where tokens are kept ------------------------------------------------------------------
@dataclass
class LoginState:
    """What ``~/.pilotwms/tokens/<key>.json`` holds for one access token file."""

    issuer: str
    client_id: str
    token_endpoint: str
    revocation_endpoint: str | None
    expires_at: float                 # POSIX seconds
    access_token_sha256: str          # the file's token: a token put there by hand is not ours
    refresh_token: str | None = None
    client_secret: str | None = None
    verify: Verify = True
    scope: str = ""
    extra: dict[str, Any] = field(default_factory=dict)   # e.g. the group asked for

    @classmethod
    def from_tokens(cls, meta: Mapping[str, Any], client_id: str, tokens: Mapping[str, Any], *,
                    client_secret: str | None = None, verify: Verify = True,
                    now: float | None = None, **extra: Any) -> LoginState:
        state = cls(issuer=str(meta["issuer"]), client_id=client_id,
                    token_endpoint=str(meta["token_endpoint"]),
                    revocation_endpoint=meta.get("revocation_endpoint"),
                    expires_at=0.0, access_token_sha256="", client_secret=client_secret,
                    verify=verify, extra=dict(extra))
        state.update(tokens, now)
        return state

    def update(self, tokens: Mapping[str, Any], now: float | None = None) -> None:
        now = time.time() if now is None else now
        access = str(tokens["access_token"])
        self.access_token_sha256 = _sha256(access)
        lifetime = tokens.get("expires_in")
        if lifetime is None:
            exp = jwt_claims(access).get("exp")
            self.expires_at = float(exp) if isinstance(exp, int | float) else now + 3600
        else:
            self.expires_at = now + float(lifetime)
        if tokens.get("refresh_token"):      # rotated, or kept when the server does not rotate
            self.refresh_token = str(tokens["refresh_token"])
        self.scope = str(tokens.get("scope", self.scope))

    def seconds_left(self, now: float | None = None) -> int:
        return int(self.expires_at - (time.time() if now is None else now))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _write_private(path: Path, text: str) -> None:
    """Write atomically, mode 600 from the start; replaces a file or symlink, never follows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def default_token_file(environ: Mapping[str, str] | None = None, uid: int | None = None
                       ) -> Path:
    """``$BEARER_TOKEN_FILE``, else ``/tmp/bt_u<uid>`` (WLCG bearer token discovery)."""
    env = os.environ if environ is None else environ
    uid = os.getuid() if uid is None else uid
    return Path(env.get("BEARER_TOKEN_FILE") or f"/tmp/bt_u{uid}")  # noqa: S108


def pilotwms_home(environ: Mapping[str, str] | None = None) -> Path:
    """``~/.pilotwms`` (``$HOME`` from ``environ`` when given)."""
    env = os.environ if environ is None else environ
    home = env.get("HOME")
    return Path(home) / ".pilotwms" if home else Path.home() / ".pilotwms"


@dataclass
class TokenStore:
    """The access token file and its private login state; see the module docstring."""

    token_file: Path
    state_dir: Path

    @classmethod
    def default(cls, environ: Mapping[str, str] | None = None,
                uid: int | None = None) -> TokenStore:
        return cls(default_token_file(environ, uid), pilotwms_home(environ) / "tokens")

    @property
    def state_file(self) -> Path:
        key = _sha256(str(self.token_file.absolute()))[:16]
        return self.state_dir / f"{key}.json"

    def save(self, tokens: Mapping[str, Any], state: LoginState) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        _write_private(self.token_file, str(tokens["access_token"]) + "\n")
        _write_private(self.state_file, json.dumps(asdict(state), indent=1))

    def load_state(self) -> LoginState | None:
        try:
            data = json.loads(self.state_file.read_text())
            return LoginState(**data)
        except (OSError, ValueError, TypeError):
            return None

    def access_token(self) -> str | None:
        try:
            text = self.token_file.read_text().strip()
        except OSError:
            return None
        return text.split()[0] if text else None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock shared by every process refreshing this login."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        lock = self.state_file.with_suffix(".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def remove(self) -> list[Path]:
        removed = []
        for path in (self.token_file, self.state_file, self.state_file.with_suffix(".lock")):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
        return removed


def fresh_access_token(store: TokenStore, margin: float = REFRESH_MARGIN,
                       now: Callable[[], float] = time.time) -> str | None:
    """The token in ``store.token_file`` (None when there is none), refreshed when it expires
    within ``margin`` seconds and we hold its refresh token.

    Raises :class:`CredentialError` when it has expired and cannot be refreshed.
    """
    token = store.access_token()
    if token is None:
        return None
    state = store.load_state()
    if state is not None and state.access_token_sha256 != _sha256(token):
        with store.locked():             # another process may be between its two writes
            token, state = store.access_token(), store.load_state()
        if token is None:
            return None
    if state is None or state.access_token_sha256 != _sha256(token):
        exp = jwt_claims(token).get("exp")     # not ours: use it as it is, unless expired
        if isinstance(exp, int | float) and exp <= now():
            raise CredentialError(f"the token in {store.token_file} has expired: "
                                  "log in again with 'dlogin'")
        return token
    if state.expires_at - now() > margin:
        return token
    with store.locked():
        state = store.load_state()          # another process may have refreshed meanwhile
        token = store.access_token()
        if state is None or token is None:
            raise CredentialError("the login was removed meanwhile: log in with 'dlogin'")
        if state.expires_at - now() > margin:
            return token
        if not state.refresh_token:
            if state.expires_at > now():
                return token
            raise CredentialError(f"the token in {store.token_file} has expired and there is "
                                  "no refresh token: log in again with 'dlogin'")
        try:
            tokens = refresh_tokens(state.token_endpoint, state.client_id, state.refresh_token,
                                    client_secret=state.client_secret, verify=state.verify)
        except (OAuthError, ServiceUnavailableError) as exc:
            if state.expires_at > now():
                return token               # still valid: try again next time
            raise CredentialError(f"the token in {store.token_file} has expired and could not "
                                  f"be refreshed ({exc.message}): log in again with 'dlogin'"
                                  ) from None
        state.update(tokens, now())
        store.save(tokens, state)
        return str(tokens["access_token"])
