"""The user side: where the servers are and which credentials to present.

``client.yaml`` (found through ``$PILOTWMS_CLIENT_CONFIG``, default ``~/.pilotwms/client.yaml``)::

    URLs: [https://127.0.0.1:8443]
    CADir: ca/certificates         # relative paths are relative to this file
    Cert: users/alice/usercert.pem # optional: used only when no token nor proxy is found
    Key: users/alice/userkey.pem
    Group: demo_user               # default group for new proxies and logins
    VO: demo
    Issuer: https://127.0.0.1:8443 # optional: dlogin's OAuth2 issuer (default: first URL)
    ClientId: pilotwms-cli         # optional: dlogin's OAuth2 client id

The profile and group ``dinit`` chose for this shell apply over it (see :mod:`core.profiles`).

Credentials are looked for in this order (the first found wins):

1. a bearer token: ``$BEARER_TOKEN``, the file ``$BEARER_TOKEN_FILE``, ``/tmp/bt_u<uid>``
   (a token ``dlogin`` saved is refreshed first when it expires within a minute; an expired
   token that cannot be refreshed is skipped when a proxy follows, else it is an error);
2. a proxy: ``$X509_USER_PROXY``, ``/tmp/x509up_u<uid>``;
3. a certificate and key: ``$X509_USER_CERT``/``$X509_USER_KEY``, ``Cert``/``Key`` above.

Example::

    >>> cfg = ClientConfig.model_validate({"URLs": ["https://h:8443"]})
    >>> find_credentials(cfg, environ={}, uid=-1).describe()
    'no credentials'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import Field, ValidationError

from core.config.base import Section
from core.exceptions import ConfigError, CredentialError
from core.oauth_client import TokenStore, fresh_access_token, pilotwms_home
from core.rpc.client import Credentials, RPCClient

ENV_CLIENT_CONFIG = "PILOTWMS_CLIENT_CONFIG"


class ClientConfig(Section):
    urls: list[str] = Field(min_length=1)
    ca_dir: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    group: str | None = None
    vo: str | None = None
    issuer: str | None = None
    client_id: str | None = None


def client_config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get(ENV_CLIENT_CONFIG) or Path.home() / ".pilotwms" / "client.yaml")


def load_client_config(path: str | Path | None = None,
                       environ: Mapping[str, str] | None = None, *,
                       session: bool = True) -> ClientConfig:
    """The client configuration; with ``session``, as this shell's ``dinit`` session sees it."""
    target = Path(path) if path is not None else client_config_path(environ)
    try:
        data = yaml.safe_load(target.read_text())
    except OSError as exc:
        raise ConfigError(
            f"cannot read the client configuration {target}: {exc.strerror} "
            f"(set {ENV_CLIENT_CONFIG}, or run 'pilotwms init DIR')"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{target}: not valid YAML: {exc}") from None
    try:
        cfg = ClientConfig.model_validate(data or {},
                                          context={"base_dir": target.parent.resolve()})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{target}: {problems}") from None
    if not session:
        return cfg
    from core.profiles import apply_session

    return apply_session(cfg, environ)


def read_token_file(path: Path) -> str:
    """The token stored in a bearer token file (WLCG: first word, whitespace stripped)."""
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise CredentialError(f"cannot read token file {path}: {exc.strerror}") from None
    if not text:
        raise CredentialError(f"token file {path} is empty")
    return text.split()[0]


def find_credentials(cfg: ClientConfig, environ: Mapping[str, str] | None = None,
                     uid: int | None = None) -> Credentials:
    """The credentials to present, in the documented order."""
    env = os.environ if environ is None else environ
    uid = os.getuid() if uid is None else uid
    if env.get("BEARER_TOKEN"):
        return Credentials(token=env["BEARER_TOKEN"].strip())
    token_file = env.get("BEARER_TOKEN_FILE") or (f"/tmp/bt_u{uid}" if uid >= 0 else "")  # noqa: S108
    proxy = env.get("X509_USER_PROXY") or (f"/tmp/x509up_u{uid}" if uid >= 0 else "")  # noqa: S108
    if token_file and Path(token_file).is_file():
        read_token_file(Path(token_file))           # unreadable or empty: a clear error
        store = TokenStore(Path(token_file), pilotwms_home(env) / "tokens")
        try:
            token = fresh_access_token(store)
        except CredentialError:
            if not (proxy and Path(proxy).is_file()):
                raise
        else:
            if token:
                return Credentials(token=token)
    if proxy and Path(proxy).is_file():
        return Credentials(cert=proxy)
    if env.get("X509_USER_PROXY"):
        raise CredentialError(f"X509_USER_PROXY names a missing file {proxy}: make the proxy "
                              "with 'dinit' (or unset X509_USER_PROXY and log in with 'dlogin')")
    cert = env.get("X509_USER_CERT") or (str(cfg.cert) if cfg.cert else None)
    key = env.get("X509_USER_KEY") or (str(cfg.key) if cfg.key else None)
    if cert:
        return Credentials(cert=cert, key=key)
    return Credentials()


def make_client(service: str, cfg: ClientConfig | None = None,
                credentials: Credentials | None = None) -> RPCClient:
    """An :class:`RPCClient` for ``service`` set up from the client configuration."""
    cfg = cfg or load_client_config()
    creds = credentials or find_credentials(cfg)
    if creds.token is None and creds.cert is None:
        raise CredentialError(
            "No credentials found (no bearer token in $BEARER_TOKEN_FILE or /tmp/bt_u<uid>, "
            "no proxy in $X509_USER_PROXY or /tmp/x509up_u<uid>, no certificate): log in "
            "with 'dlogin' (a token), or make a proxy with 'dinit' (or 'pilotwms proxy init')"
        )
    return RPCClient(service, urls=cfg.urls, credentials=creds, ca_dir=cfg.ca_dir,
                     client_vo=cfg.vo)
