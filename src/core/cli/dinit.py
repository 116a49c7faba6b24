"""``dinit``: the X509 way in, as COMDIRAC's ``dinit``: a proxy with a group, a per-shell session.

::

    dinit [PROFILE] [-g GROUP] [--pwstdin] [--hours H] [--cert F --key F]
    dinit -D                         # destroy the proxy and end this shell's session
    dinit -i                         # show the proxy and the session

Makes an RFC 3820 proxy carrying the group (``-g``, else the profile's ``Group``, else the
client configuration's) from ``~/.globus/usercert.pem`` and ``userkey.pem`` (or
``$X509_USER_CERT``/``$X509_USER_KEY``, or ``Cert``/``Key`` of the client configuration),
asking for the key's passphrase on the terminal (``--pwstdin``: read it from the first line of
standard input). The proxy goes to ``$X509_USER_PROXY`` or ``/tmp/x509up_u<uid>``. The profile
(from ``~/.pilotwms/profiles.yaml``, ``default`` when present and none is named) and the group
are remembered for this shell (see :mod:`core.profiles`): the other commands then talk to the
profile's server with its VO.

Example::

    $ dinit --pwstdin admin <<< "$PASSPHRASE"
    profile        : admin
    path           : /tmp/x509up_u1000
    identity       : /O=pilotwms/OU=Users/CN=alice
    group          : demo_admin
    ...
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from core.cli.admin import init_user_proxy, proxy_info, user_credential_paths
from core.cli.common import run
from core.client_config import load_client_config
from core.exceptions import ConfigError, CredentialError, InvalidArgumentError
from core.oauth_client import default_token_file
from core.profiles import (
    Session,
    load_profiles,
    load_session,
    profiles_path,
    remove_session,
    save_session,
    session_path,
)
from core.security.proxy import default_proxy_path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dinit", description="Make a proxy with a group; "
                                "remember the profile for this shell.")
    p.add_argument("profile", nargs="?", help="a profile of ~/.pilotwms/profiles.yaml")
    p.add_argument("-g", "--group", help="the group the proxy carries")
    p.add_argument("-D", "--destroy", action="store_true",
                   help="remove the proxy and this shell's session")
    p.add_argument("-i", "--info", action="store_true", help="show the proxy and session")
    p.add_argument("--pwstdin", action="store_true",
                   help="read the key's passphrase from standard input")
    p.add_argument("--hours", type=float, default=24.0, help="proxy lifetime (default 24)")
    p.add_argument("--cert", type=Path, help="user certificate (default ~/.globus/usercert.pem)")
    p.add_argument("--key", type=Path, help="user key (default ~/.globus/userkey.pem)")
    return p


def _show(proxy: Path, session: Session | None) -> None:
    if session is not None:
        print(f"{'profile':15s}: {session.profile or '(client configuration)'}")
    for key, value in proxy_info(proxy).items():
        print(f"{key:15s}: {value}")


def cmd_dinit(argv: Sequence[str]) -> int:
    ns = _parser().parse_args(argv)
    proxy = default_proxy_path()
    if ns.destroy:
        existed = proxy.exists()
        proxy.unlink(missing_ok=True)
        ended = remove_session()
        print(f"Proxy {proxy} destroyed" if existed else f"No proxy at {proxy}")
        if ended:
            print("Session ended")
        return 0
    if ns.info:
        if not proxy.is_file():
            raise CredentialError(f"no proxy at {proxy}: run 'dinit'")
        _show(proxy, load_session())
        return 0
    profiles = load_profiles()
    name = ns.profile or ("default" if "default" in profiles else None)
    if name is not None and name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise InvalidArgumentError(f"no profile {name!r} in {profiles_path()} (known: {known})")
    profile = profiles.get(name or "", {})
    group = ns.group or profile.get("Group")
    if group is None:
        try:
            group = load_client_config(session=False).group
        except ConfigError:
            group = None
    password = None
    if ns.pwstdin:
        password = sys.stdin.readline().rstrip("\r\n").encode()
    cert, key = user_credential_paths(ns)
    path = init_user_proxy(cert, key, group=group, hours=ns.hours, password=password)
    session = Session(profile=name, group=ns.group, proxy=str(path))
    save_session(session)
    _show(path, session)
    print(f"{'session':15s}: {session_path()}")
    token_file = default_token_file()
    token = "$BEARER_TOKEN" if os.environ.get("BEARER_TOKEN") else (
        str(token_file) if token_file.is_file() else None)
    if token:
        print(f"NOTE: commands present the bearer token ({token}) before this proxy: "
              "run 'dlogout' to use the proxy", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(cmd_dinit, argv)


if __name__ == "__main__":
    sys.exit(main())
