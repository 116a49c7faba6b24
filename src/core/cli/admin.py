"""``pilotwms``: the operator command.

Subcommands::

    pilotwms init DIR [--user NAME] [--host H] [--port P] [--force]
    pilotwms serve [--config F] [--processes N] [--port P] [--no-tls]
    pilotwms services                                  # installed services
    pilotwms db init|upgrade|version [--config F]
    pilotwms ca init --dir D [--name N]
    pilotwms ca revoke --dir D --cert F [--reason R] [--days N]   # publishes <hash>.r0
    pilotwms ca crl --dir D [--days N]                  # re-issue the CRL (N < 0: expired)
    pilotwms cert issue (--user NAME | --host NAME) [--ca D] [--out D] [--days N]
    pilotwms proxy init [--cert F] [--key F] [--group G] [--hours H] [--limited] [--out F]
    pilotwms proxy info [FILE]
    pilotwms token issue --user U [--group G] [--lifetime S] [--out F] [--config F]
    pilotwms auth rotate-key|keys|housekeeping|delegations [--config F]   # login server
    pilotwms call SYSTEM/SERVICE METHOD [ARG ...]      # ARGs are JSON, else strings
    pilotwms dirac-config [--config F] [--out FILE] [--url URL] [--vo VO]  # the DIRAC client's
    pilotwms mover --config mover.yaml                  # a data mover (docs/transfers-admin.md)
    pilotwms transfer rotate-key [--config F]          # re-encrypt association secrets

``--config`` defaults to ``$PILOTWMS_CONFIG``; user-side commands (``proxy init``, ``call``)
read ``$PILOTWMS_CLIENT_CONFIG`` (default ``~/.pilotwms/client.yaml``).

Example::

    pilotwms init /tmp/demo && pilotwms serve --config /tmp/demo/config.yaml
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from cryptography import x509

from core.cli.common import print_json, run
from core.config.loader import load_config
from core.exceptions import ConfigError, CredentialError, InvalidArgumentError
from core.version import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pilotwms", description="pilotwms operator command")
    parser.add_argument("--version", action="version", version=f"pilotwms {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="make a complete self-contained instance in DIR")
    p.add_argument("directory", type=Path)
    p.add_argument("--user", default="alice", help="name of the demo user (default alice)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8443)
    p.add_argument("--force", action="store_true", help="replace a non-empty DIR")

    p = sub.add_parser("serve", help="run the services")
    p.add_argument("--config", type=Path)
    p.add_argument("--processes", type=int, help="worker processes (0 = one per CPU)")
    p.add_argument("--port", type=int, help="override Server.Port (0 = any free port)")
    p.add_argument("--no-tls", action="store_true",
                   help="plain HTTP, only behind a TLS-terminating balancer")
    p.add_argument("--log-level", default="INFO")

    sub.add_parser("services", help="list the installed services")

    p = sub.add_parser("db", help="database schemas")
    p.add_argument("action", choices=["init", "upgrade", "version", "history", "downgrade",
                                      "repair"])
    p.add_argument("repair", nargs="?", metavar="REPAIR",
                   help="with 'repair': what to rebuild (without: list them)")
    p.add_argument("--config", type=Path)
    p.add_argument("--system", help="history, downgrade: the system (e.g. WorkloadManagement)")
    p.add_argument("--to", type=int, metavar="VERSION", help="downgrade: the version to reach")

    p = sub.add_parser("ca", help="certification authority: init, revoke a certificate, "
                                  "re-issue the CRL")
    p.add_argument("action", choices=["init", "revoke", "crl"])
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--name", default="pilotwms dev CA")
    p.add_argument("--cert", type=Path, help="revoke: the certificate (PEM) to revoke")
    p.add_argument("--reason", choices=sorted(f.name for f in x509.ReasonFlags),
                   help="revoke: the CRL reason code")
    p.add_argument("--days", type=float, default=30,
                   help="revoke, crl: days until the CRL's nextUpdate (negative: expired)")

    p = sub.add_parser("cert", help="certificates")
    p.add_argument("action", choices=["issue"])
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user")
    who.add_argument("--host")
    p.add_argument("--ca", type=Path, default=Path(os.environ.get("PILOTWMS_CA", "ca")))
    p.add_argument("--out", type=Path, help="directory for the cert and key (default: .)")
    p.add_argument("--days", type=int, default=365)

    p = sub.add_parser("proxy", help="RFC 3820 proxies")
    p.add_argument("action", choices=["init", "info"])
    p.add_argument("file", nargs="?", type=Path, help="proxy file for 'info'")
    p.add_argument("--cert", type=Path)
    p.add_argument("--key", type=Path)
    p.add_argument("--group", "-g")
    p.add_argument("--hours", type=float, default=24.0)
    p.add_argument("--limited", action="store_true")
    p.add_argument("--out", type=Path)

    p = sub.add_parser("token", help="access tokens of this instance's issuer")
    p.add_argument("action", choices=["issue"])
    p.add_argument("--config", type=Path)
    p.add_argument("--user", required=True)
    p.add_argument("--group", "-g")
    p.add_argument("--lifetime", type=int, help="seconds (default Auth.Signing.Lifetime)")
    p.add_argument("--out", type=Path, help="write the token to this file (mode 600)")

    from core.auth.cli import add_parser as add_auth_parser

    add_auth_parser(sub)

    from core.cli.dirac_config import add_parser as add_dirac_config_parser

    add_dirac_config_parser(sub)

    p = sub.add_parser("agent", help="run an agent (see 'pilotwms agents')")
    p.add_argument("name")
    p.add_argument("--config", type=Path)
    p.add_argument("--once", action="store_true", help="one cycle, then exit")
    p.add_argument("--period", type=float, help="seconds between idle cycles")
    p.add_argument("--metrics-port", type=int,
                   help="serve Prometheus /metrics on this port (Monitoring.Metrics.AgentPort)")
    p.add_argument("--log-level", default="INFO")

    sub.add_parser("agents", help="list the installed agents")

    p = sub.add_parser("call", help="call a service method and print the reply")
    p.add_argument("service", help="System/Service")
    p.add_argument("method")
    p.add_argument("args", nargs="*")

    for ep in _plugin_commands():  # subcommands of installed systems (entry points)
        COMMANDS.update(ep.load()(sub))
    return parser


def _plugin_commands() -> list[Any]:
    """Entry points of ``pilotwms.commands``: ``register(subparsers) -> {name: handler}``
    (systems add their operator subcommands without core importing them)."""
    from importlib.metadata import entry_points

    return sorted(entry_points(group="pilotwms.commands"), key=lambda ep: ep.name)


def _server_config(path: Path | None) -> Any:
    return load_config(path)


def cmd_init(ns: argparse.Namespace) -> int:
    from core.cli.instance import create_instance

    inst = create_instance(ns.directory, user=ns.user, host=ns.host, port=ns.port,
                           force=ns.force)
    print(f"pilotwms instance ready in {inst.directory}")
    print(f"  start it:  pilotwms serve --config {inst.config}")
    print(f"  use it:    export PILOTWMS_CLIENT_CONFIG={inst.client_config}")
    if inst.dirac_cfg.exists():
        print(f"  DIRAC client: export DIRAC_ROOT_PATH={inst.dirac_root}; "
              "unset REQUESTS_CA_BUNDLE CURL_CA_BUNDLE")
        print(f"                ({inst.dirac_cfg}, see docs/interop-dirac.md)")
    print("  login server: on (Framework/Auth: discovery, JWKS, proxy exchange, refresh).")
    print("    No identity provider is configured, so dlogin's device flow cannot finish yet:")
    print(f"    add your VO's IdP under Auth.Server.IdPs in {inst.config} (docs/login.md);")
    print("    meanwhile use a proxy (pilotwms proxy init / dinit) or exchange it for a token.")
    return 0


def cmd_dirac_config(ns: argparse.Namespace) -> int:
    from core.cli.dirac_config import cmd_dirac_config as run_dirac_config

    return run_dirac_config(ns, _server_config(ns.config))


def cmd_serve(ns: argparse.Namespace) -> int:
    from core.rpc.runner import select_services, serve

    logging.basicConfig(level=ns.log_level.upper(),
                        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    config = _server_config(ns.config)
    if ns.port is not None:
        config = config.model_copy(
            update={"server": config.server.model_copy(update={"port": ns.port})})
    serve(config, select_services(config), processes=ns.processes, tls=not ns.no_tls)
    return 0


def cmd_services(ns: argparse.Namespace) -> int:
    from core.rpc.runner import available_services

    for name, cls in sorted(available_services().items()):
        print(f"{name:40s} {cls.__module__}.{cls.__qualname__}")
    return 0


def cmd_db(ns: argparse.Namespace) -> int:
    from core.cli import dbcmd

    config = _server_config(ns.config)
    if ns.action == "repair":
        if not ns.repair:
            for system, name, doc in dbcmd.repairs():
                print(f"{name:20s} {system}: {doc}")
            return 0
        print(dbcmd.repair(config, ns.repair))
        return 0
    if ns.action == "history":
        systems = [ns.system] if ns.system else [s.system for s in dbcmd.installed_schemas()]
        for system in systems:
            for revision, doc, reversible in dbcmd.history(system):
                kind = "reversible" if reversible else "one-way"
                print(f"{system:20s} {revision:28s} {kind:10s} {doc}")
        return 0
    if ns.action == "downgrade":
        if not ns.system or ns.to is None:
            raise InvalidArgumentError("db downgrade needs --system and --to")
        dbcmd.downgrade(config, ns.system, ns.to)
    elif ns.action != "version":
        {"init": dbcmd.init_all, "upgrade": dbcmd.upgrade_all}[ns.action](config)
    for status in dbcmd.statuses(config):
        print(dbcmd.describe(status))
    return 0


def cmd_ca(ns: argparse.Namespace) -> int:
    from core.security.ca import CertificateAuthority
    from core.security.x509 import dn_string, load_pem_chain

    if ns.action == "init":
        ca = CertificateAuthority.create(ns.dir, name=ns.name)
        print(f"CA created in {ns.dir}; hashed directory: {ca.certificates_dir}")
        return 0
    ca = CertificateAuthority.load(ns.dir)
    if ns.action == "crl":
        print(ca.write_crl(days=ns.days))
        return 0
    if ns.cert is None:
        raise InvalidArgumentError("ca revoke needs --cert")
    cert = load_pem_chain(ns.cert.read_bytes())[0]
    reason = x509.ReasonFlags[ns.reason] if ns.reason else None
    path = ca.revoke(cert, reason=reason, days=ns.days)
    print(f"revoked {dn_string(cert.subject)} (serial {cert.serial_number:x}); CRL: {path}")
    return 0


def cmd_cert(ns: argparse.Namespace) -> int:
    from core.security.ca import CertificateAuthority, write_pem

    ca = CertificateAuthority.load(ns.ca)
    kind: Literal["user", "host"] = "user" if ns.user else "host"
    name = ns.user or ns.host
    cert, key = ca.issue(name, kind=kind, days=ns.days)
    out = ns.out or Path(".")
    out.mkdir(parents=True, exist_ok=True)
    cert_path = write_pem(out / f"{kind}cert.pem", cert, 0o644)
    key_path = write_pem(out / f"{kind}key.pem", key, 0o600)
    print(f"{cert_path}\n{key_path}")
    return 0


def user_credential_paths(ns: argparse.Namespace) -> tuple[Path, Path]:
    if ns.cert:
        return ns.cert, ns.key or ns.cert
    env_cert, env_key = os.environ.get("X509_USER_CERT"), os.environ.get("X509_USER_KEY")
    if env_cert:
        return Path(env_cert), Path(env_key or env_cert)
    try:
        from core.client_config import load_client_config

        client = load_client_config()
        if client.cert:
            return client.cert, client.key or client.cert
    except ConfigError:
        pass
    globus = Path.home() / ".globus"
    return globus / "usercert.pem", globus / "userkey.pem"


def proxy_info(path: Path) -> dict[str, Any]:
    from core.security.x509 import dn_string, identity_from_chain, load_pem_chain

    chain = load_pem_chain(path.read_bytes())
    info = identity_from_chain(chain)
    return {
        "path": str(path),
        "subject": dn_string(chain[0].subject),
        "identity": info.dn,
        "issuer": dn_string(chain[0].issuer),
        "group": info.group,
        "isProxy": info.is_proxy,
        "isLimitedProxy": info.is_limited_proxy,
        "timeleft": str(timedelta(seconds=info.seconds_left())),
    }


def init_user_proxy(cert_path: Path, key_path: Path, *, group: str | None = None,
                    hours: float = 24.0, limited: bool = False, out: Path | None = None,
                    password: bytes | None = None) -> Path:
    """Make a proxy from a user certificate and key (asking for the key's passphrase on the
    terminal when it is encrypted and ``password`` is None); returns the proxy file's path."""
    from core.security.proxy import create_proxy, default_proxy_path, write_proxy_file

    try:
        cert_pem, key_pem = cert_path.read_bytes(), key_path.read_bytes()
    except OSError as exc:
        raise CredentialError(f"cannot read {exc.filename}: {exc.strerror}") from None
    if password is None and b"ENCRYPTED" in key_pem:
        if not sys.stdin.isatty():
            raise CredentialError(f"{key_path} is encrypted and there is no terminal to ask")
        password = getpass.getpass(f"Enter passphrase for {key_path}: ").encode()
    if hours <= 0:
        raise InvalidArgumentError("--hours must be positive")
    pem = create_proxy(cert_pem, key_pem, group=group, limited=limited,
                       lifetime=timedelta(hours=hours), password=password)
    return write_proxy_file(pem, out or default_proxy_path())


def cmd_proxy(ns: argparse.Namespace) -> int:
    from core.security.proxy import default_proxy_path

    if ns.action == "info":
        path = ns.file or default_proxy_path()
        for key, value in proxy_info(path).items():
            print(f"{key:15s}: {value}")
        return 0
    cert_path, key_path = user_credential_paths(ns)
    path = init_user_proxy(cert_path, key_path, group=ns.group, hours=ns.hours,
                           limited=ns.limited, out=ns.out)
    for key, value in proxy_info(path).items():
        print(f"{key:15s}: {value}")
    return 0


def cmd_token(ns: argparse.Namespace) -> int:
    from core.security.authenticate import Authenticator
    from core.security.tokens import TokenIssuer

    config = _server_config(ns.config)
    if config.auth.signing is None:
        raise ConfigError("Auth.Signing is not configured: this instance issues no tokens")
    registry = Authenticator(config).registry
    if not registry.has_user(ns.user):
        raise InvalidArgumentError(f"no user {ns.user} in the registry")
    group = ns.group or registry.default_group(ns.user)
    if group is None or not registry.is_member(ns.user, group):
        raise InvalidArgumentError(f"{ns.user} is not a member of group {group}")
    gconf = registry.group(group)
    assert gconf is not None  # noqa: S101 - membership checked above
    token = TokenIssuer(config.auth.signing).issue(ns.user, group=group, vo=gconf.vo,
                                                   lifetime=ns.lifetime)
    if ns.out:
        fd = os.open(ns.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as stream:
            stream.write(token + "\n")
        os.chmod(ns.out, 0o600)
        print(f"token for {ns.user}@{group} written to {ns.out}")
    else:
        print(token)
    return 0


def cmd_auth(ns: argparse.Namespace) -> int:
    from core.auth.cli import run_auth

    return run_auth(_server_config(ns.config), ns)


def _agent_classes() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group="pilotwms.agents")}


def cmd_agents(ns: argparse.Namespace) -> int:
    for name, ep in sorted(_agent_classes().items()):
        print(f"{name:30s} {ep.value}")
    return 0


def cmd_agent(ns: argparse.Namespace) -> int:
    import signal

    logging.basicConfig(level=ns.log_level.upper(),
                        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    known = _agent_classes()
    if ns.name not in known:
        raise InvalidArgumentError(f"no agent {ns.name}; installed: {', '.join(sorted(known))}")
    config = _server_config(ns.config)
    if ns.metrics_port is not None:
        metrics_conf = config.monitoring.metrics.model_copy(update={"agent_port": ns.metrics_port})
        config = config.model_copy(update={"monitoring": config.monitoring.model_copy(
            update={"metrics": metrics_conf})})
    agent = known[ns.name].load()(config, period=ns.period)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.stop())
    agent.run(once=ns.once)
    return 0


def _arg(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def cmd_call(ns: argparse.Namespace) -> int:
    from core.client_config import make_client

    with make_client(ns.service) as client:
        print_json(client.call(ns.method, *[_arg(a) for a in ns.args]))
    return 0


COMMANDS: dict[str, Any] = {
    "init": cmd_init, "serve": cmd_serve, "services": cmd_services, "db": cmd_db,
    "ca": cmd_ca, "cert": cmd_cert, "proxy": cmd_proxy, "token": cmd_token, "call": cmd_call,
    "agent": cmd_agent, "agents": cmd_agents, "auth": cmd_auth,
    "dirac-config": cmd_dirac_config,
}


def _main(argv: Sequence[str]) -> int:
    ns = _parser().parse_args(argv)
    return COMMANDS[ns.command](ns)


def main(argv: Sequence[str] | None = None) -> int:
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
