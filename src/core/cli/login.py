"""``dlogin`` and ``dlogout``: log in with the OAuth2 device flow (RFC 8628), log out (RFC 7009).

::

    dlogin [--group G] [--issuer URL] [--client-id ID] [--scope S] [--resource URI] [--ca PATH]
    dlogin --proxy [FILE]            # exchange an X509 proxy for a token (no browser, no IdP)
    dlogout

``dlogin`` finds the issuer by OpenID discovery: by default the pilotwms server of the client
configuration (``Issuer``, else the first of ``URLs``); ``--issuer`` names any RFC 8628 issuer
(an external IdP). It prints the verification URL and the code, and the complete URL on a line
of its own, polls until you approved in a browser, then saves the access token to
``$BEARER_TOKEN_FILE`` or ``/tmp/bt_u<uid>`` and the refresh token under ``~/.pilotwms/tokens``
(both mode 600; see :mod:`core.oauth_client`), and prints who you are: from the server's
``whoami`` when the issuer is the pilotwms server, else from the IdP's claims. Every command
refreshes the token silently before it expires. ``dlogout`` revokes both tokens at the issuer
and removes the files.

The client id is ``--client-id``, else ``ClientId`` of the client configuration, else
``pilotwms-cli`` (a public client); a confidential client's secret is read from
``$PILOTWMS_CLIENT_SECRET``. With a pilotwms issuer the group and VO are asked for with the
scopes ``group:<G>`` and ``vo:<VO>`` (as DiracX does); with an external IdP ``--group`` must be
one of the groups the IdP asserts (``groups`` claim).

``dlogin --proxy`` needs no identity provider: the proxy (``FILE``, else ``$X509_USER_PROXY``
or ``/tmp/x509up_u<uid>``, made by ``dinit``) is presented to the pilotwms login server, which
exchanges it for an access token of the proxy's user and group (no refresh token: run it again
when the token expires). On a server without an identity provider the device flow stops at
once and says what to do instead.

Example::

    $ dlogin --group demo_user
    To log in, open https://127.0.0.1:8443/auth/device in a browser and enter the code ABCD-EFGH
    https://127.0.0.1:8443/auth/device?user_code=ABCD-EFGH
    Waiting for the approval (the code expires in 10 minutes) ...
    subject    : 2d1c6b1e-...
    ...
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from core.cli.common import run
from core.client_config import ClientConfig, load_client_config
from core.exceptions import (
    ConfigError,
    CredentialError,
    NotAuthenticatedError,
    NotAuthorizedError,
    PilotWMSError,
)
from core.oauth_client import (
    LoginState,
    OAuthError,
    TokenStore,
    Verify,
    discover,
    exchange_proxy,
    jwt_claims,
    poll_device_flow,
    revoke_token,
    start_device_flow,
    userinfo,
)

DEFAULT_CLIENT_ID = "pilotwms-cli"
ENV_CLIENT_SECRET = "PILOTWMS_CLIENT_SECRET"  # noqa: S105 - the variable's name
EXTERNAL_SCOPE = "openid profile email offline_access groups"


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Log in with the OAuth2 device flow.")
    p.add_argument("-g", "--group", help="the group to act in")
    p.add_argument("--issuer", help="an OpenID issuer URL (default: the pilotwms server)")
    p.add_argument("--client-id", help=f"OAuth2 client id (default {DEFAULT_CLIENT_ID})")
    p.add_argument("--scope", help="scopes to ask for (replaces the defaults)")
    p.add_argument("--resource", help="RFC 8707 resource indicator (the token's audience)")
    p.add_argument("--ca", help="CA file or directory to verify the issuer's TLS certificate")
    p.add_argument("--proxy", nargs="?", const="", metavar="FILE",
                   help="exchange this X509 proxy (default: $X509_USER_PROXY or "
                        "/tmp/x509up_u<uid>) for a token instead of the device flow")
    return p


NO_IDP_HELP = (
    "{issuer} has no identity provider configured, so it cannot log you in with the device "
    "flow.\n"
    "  - use your X509 certificate: 'dinit' makes a proxy every command accepts, and\n"
    "    'dlogin --proxy' exchanges that proxy for an access token;\n"
    "  - or ask the administrator to add the VO's identity provider under Auth.Server.IdPs\n"
    "    of the server configuration (see docs/login.md).")


def _optional_config() -> ClientConfig | None:
    try:
        return load_client_config()
    except ConfigError:
        return None


def _same_server(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def _target(ns: argparse.Namespace) -> tuple[str, bool, ClientConfig | None, Verify]:
    """(issuer, is it the pilotwms server, client config, TLS verification)."""
    if ns.issuer:
        cfg = _optional_config()
        ours = cfg is not None and any(
            _same_server(ns.issuer, u) for u in [*cfg.urls, cfg.issuer or ""])
        issuer = ns.issuer
    else:
        cfg = load_client_config()
        issuer, ours = cfg.issuer or cfg.urls[0], True
    verify: Verify = True
    if ns.ca:
        verify = ns.ca
    elif ours and cfg is not None and cfg.ca_dir:
        verify = str(cfg.ca_dir)
    return issuer.rstrip("/"), ours, cfg, verify


def _fmt_left(seconds: float) -> str:
    return str(timedelta(seconds=max(0, int(seconds))))


def _show(info: dict[str, Any]) -> None:
    for key in ("subject", "issuer", "timeleft", "username", "group", "properties"):
        value = info.get(key)
        if isinstance(value, list | tuple):
            value = ", ".join(map(str, value))
        print(f"{key:11s}: {'' if value is None else value}")


def _whoami_pilotwms(cfg: ClientConfig, token: str) -> dict[str, Any]:
    from core.client_config import make_client
    from core.rpc.client import Credentials

    with make_client("Framework/Registry", cfg, Credentials(token=token)) as registry:
        who = registry.call("whoami")
    return {"subject": who.get("subject") or who.get("identity"), "issuer": who.get("issuer"),
            "timeleft": _fmt_left(who.get("secondsLeft") or 0), "username": who.get("username"),
            "group": who.get("group"), "properties": who.get("properties") or []}


def _claims_of(meta: dict[str, Any], tokens: dict[str, Any], verify: Verify) -> dict[str, Any]:
    claims = {**jwt_claims(str(tokens.get("id_token", ""))),
              **jwt_claims(str(tokens["access_token"]))}
    claims.update(userinfo(meta, str(tokens["access_token"]), verify))
    return claims


def cmd_login(argv: Sequence[str]) -> int:
    ns = _parser("dlogin").parse_args(argv)
    issuer, ours, cfg, verify = _target(ns)
    client_id = ns.client_id or (cfg.client_id if cfg and ours and cfg.client_id else None) \
        or DEFAULT_CLIENT_ID
    secret = os.environ.get(ENV_CLIENT_SECRET) or None
    group = ns.group or (cfg.group if cfg and ours else None)
    if ns.scope:
        scope = ns.scope
    elif ours:
        parts = ["openid", "offline_access"]
        vo = cfg.vo if cfg else None
        parts += [f"vo:{vo}"] if vo else []
        parts += [f"group:{group}"] if group else []
        scope = " ".join(parts)
    else:
        scope = EXTERNAL_SCOPE
    meta = discover(issuer, verify)
    if ns.proxy is not None:
        return _login_with_proxy(ns, meta, client_id, cfg, verify, group if ours else None)
    try:
        auth = start_device_flow(meta, client_id, scope, client_secret=secret, verify=verify,
                                 resource=ns.resource)
    except OAuthError as exc:
        if ours and "no identity provider" in exc.message:
            raise CredentialError(NO_IDP_HELP.format(issuer=issuer)) from None
        raise
    print(f"To log in, open {auth.verification_uri} in a browser and enter the code "
          f"{auth.user_code}")
    if auth.verification_uri_complete:
        print(auth.verification_uri_complete)
    print(f"Waiting for the approval (the code expires in {_fmt_left(auth.expires_in)}) ...",
          flush=True)
    tokens = poll_device_flow(meta, client_id, auth, client_secret=secret, verify=verify)
    store = TokenStore.default()
    if ours:
        info: dict[str, Any] | None = None
    else:
        claims = _claims_of(meta, tokens, verify)
        groups = claims.get("groups") or []
        if ns.group and ns.group not in groups:
            _revoke_all(meta.get("revocation_endpoint"), client_id, tokens, secret, verify)
            raise CredentialError(f"{issuer} does not put you in {ns.group!r} "
                                  f"(your groups: {', '.join(groups) or 'none'})")
        info = {"subject": claims.get("sub"), "issuer": claims.get("iss") or issuer,
                "timeleft": _fmt_left(float(tokens.get("expires_in") or 0)),
                "username": claims.get("preferred_username") or claims.get("email"),
                "group": ns.group or groups, "properties": tokens.get("scope", "").split()}
    if info is None and cfg is not None:
        try:
            info = _whoami_pilotwms(cfg, str(tokens["access_token"]))
        except (NotAuthenticatedError, NotAuthorizedError) as exc:
            _revoke_all(meta.get("revocation_endpoint"), client_id, tokens, secret, verify)
            raise CredentialError(f"the pilotwms server refuses this login: {exc.message}"
                                  ) from None
        except PilotWMSError as exc:
            print(f"(whoami failed: {exc.message}; showing the token's claims)", file=sys.stderr)
            claims = _claims_of(meta, tokens, verify)
            info = {"subject": claims.get("sub"), "issuer": claims.get("iss") or issuer,
                    "timeleft": _fmt_left(float(tokens.get("expires_in") or 0)),
                    "username": claims.get("preferred_username"),
                    "group": claims.get("dirac_group") or group,
                    "properties": str(claims.get("scope", "")).split()}
    state = LoginState.from_tokens(meta, client_id, tokens, client_secret=secret,
                                   verify=verify, group=group if ours else ns.group)
    previous = store.load_state()
    store.save(tokens, state)
    if previous is not None and previous.refresh_token:     # the login this one replaces
        _revoke_all(previous.revocation_endpoint, previous.client_id,
                    {"refresh_token": previous.refresh_token}, previous.client_secret,
                    previous.verify)
    print(f"Token saved in {store.token_file}")
    _show(info or {})
    return 0


def _login_with_proxy(ns: argparse.Namespace, meta: dict[str, Any], client_id: str,
                      cfg: ClientConfig | None, verify: Verify, group: str | None) -> int:
    """``dlogin --proxy``: the x509-proxy grant; the token saved as a device login's."""
    from core.security.proxy import default_proxy_path

    proxy = Path(ns.proxy) if ns.proxy else default_proxy_path()
    scope = ns.scope or (f"group:{ns.group}" if ns.group else "")
    tokens = exchange_proxy(meta, client_id, proxy, scope, verify=verify)
    store = TokenStore.default()
    state = LoginState.from_tokens(meta, client_id, tokens, verify=verify, group=group)
    store.save(tokens, state)
    print(f"Token saved in {store.token_file} (from the proxy {proxy}; it lasts "
          f"{_fmt_left(float(tokens.get('expires_in') or 0))}, run 'dlogin --proxy' again "
          "then)")
    if cfg is not None:
        try:
            _show(_whoami_pilotwms(cfg, str(tokens["access_token"])))
        except PilotWMSError as exc:
            print(f"(whoami failed: {exc.message})", file=sys.stderr)
    return 0


def _revoke_all(endpoint: Any, client_id: str, tokens: dict[str, Any], secret: str | None,
                verify: Verify) -> list[str]:
    problems = []
    if not endpoint:
        return ["the issuer has no revocation endpoint"]
    for hint in ("refresh_token", "access_token"):
        if tokens.get(hint):
            try:
                revoke_token(str(endpoint), client_id, str(tokens[hint]), hint,
                             client_secret=secret, verify=verify)
            except OAuthError as exc:
                if hint == "access_token" and exc.error == "unsupported_token_type":
                    print("(the issuer cannot revoke its self-contained access tokens: the one "
                          "removed stays valid until it expires)", file=sys.stderr)
                    continue
                problems.append(f"{hint}: {exc.message}")
            except PilotWMSError as exc:
                problems.append(f"{hint}: {exc.message}")
    return problems


def cmd_logout(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="dlogout", description="Revoke the tokens, remove them.")
    p.parse_args(argv)
    store = TokenStore.default()
    state = store.load_state()
    token = store.access_token()
    if state is None and token is None:
        print("Not logged in (no token file, no login state)")
        return 0
    problems: list[str] = []
    if state is not None:
        tokens = {"refresh_token": state.refresh_token, "access_token": token}
        problems = _revoke_all(state.revocation_endpoint, state.client_id, tokens,
                               state.client_secret, state.verify)
    for path in store.remove():
        print(f"Removed {path}")
    for problem in problems:
        print(f"WARNING: could not revoke the {problem}", file=sys.stderr)
    if state is not None and not problems:
        print(f"Tokens revoked at {state.issuer}")
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(cmd_login, argv)


def logout_main(argv: Sequence[str] | None = None) -> int:
    return run(cmd_logout, argv)


if __name__ == "__main__":
    sys.exit(main())
