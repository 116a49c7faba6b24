"""``pilotwms init DIR``: a complete, self-contained instance for trying pilotwms.

DIR receives: ``config.yaml`` (server), ``client.yaml`` (user side), a dev CA in ``ca/`` with its
hashed directory ``ca/certificates``, a host certificate for localhost/127.0.0.1 in ``host/``,
users with certificates in ``users/<name>/`` (the demo user, an administrator), the token
signing key ``jwk.json``, the SQLite database ``pilotwms.db`` with every schema created, and
``dirac/etc/dirac.cfg`` for the real DIRAC client (``pilotwms dirac-config``).

The login server (``Framework/Auth``: discovery, JWKS, device flow, X509-proxy exchange,
refresh) is on, with single-host settings: the issuer is this server's own URL, access tokens
live 20 minutes, refresh tokens a week; no identity provider is configured (``IdPs`` is
empty), so the device flow says so until the admin adds one (docs/login.md).

Example::

    pilotwms init /tmp/demo && pilotwms serve --config /tmp/demo/config.yaml &
    PILOTWMS_CLIENT_CONFIG=/tmp/demo/client.yaml pilotwms call Framework/Registry whoami
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from core.config.loader import load_config
from core.exceptions import AlreadyExistsError, InvalidArgumentError
from core.security.ca import CertificateAuthority, write_pem
from core.security.tokens import generate_signing_key

VO = "demo"
USER_GROUP = "demo_user"
ADMIN_GROUP = "demo_admin"
PILOT_GROUP = "demo_pilot"


@dataclass
class Instance:
    directory: Path

    @property
    def config(self) -> Path:
        return self.directory / "config.yaml"

    @property
    def client_config(self) -> Path:
        return self.directory / "client.yaml"

    @property
    def ca_dir(self) -> Path:
        return self.directory / "ca" / "certificates"

    @property
    def dirac_root(self) -> Path:
        """``DIRAC_ROOT_PATH`` for the real DIRAC client (its ``etc/dirac.cfg``)."""
        return self.directory / "dirac"

    @property
    def dirac_cfg(self) -> Path:
        return self.dirac_root / "etc" / "dirac.cfg"

    def user_cert(self, user: str) -> tuple[Path, Path]:
        base = self.directory / "users" / user
        return base / "usercert.pem", base / "userkey.pem"


#: dput's default SE name (COMDIRAC's), served by the instance's own storage service
DEFAULT_SE = "DIRAC-USER"


def _user_dn(name: str) -> str:
    return f"/O=pilotwms/OU=Users/CN={name}"


def server_config_data(directory: Path, *, user: str, host: str, port: int) -> dict[str, Any]:
    url = f"https://{host}:{port}"
    return {
        "Database": f"sqlite:///{directory / 'pilotwms.db'}",
        "Server": {
            "Host": host,
            "Port": port,
            "HostCert": "host/hostcert.pem",
            "HostKey": "host/hostkey.pem",
            "CADir": "ca/certificates",
            "Processes": 1,
        },
        # the login server, safe on one host: our own issuer, short access tokens, no IdP yet
        "Auth": {"Signing": {"Issuer": url, "KeyFile": "jwk.json", "Audience": "pilotwms"},
                 "Server": {"AccessTokenLifetime": 1200, "RefreshTokenLifetime": 604800,
                            "IdPs": {}}},
        # one site with local pilots (`pilotwms agent SiteDirector` feeds it) and one disk SE
        # served by this server, the default of dput and of jobs' output data
        "Resources": {
            "Sites": {"Demo.Local.site": {"CEs": {"localhost": {
                "CEType": "Local", "Settings": {"WorkDir": str(directory / "pilots")},
                "Queues": {"default": {"MaxCPUTime": 172800, "MaxWaitingPilots": 2,
                                       "MaxTotalPilots": 2}}}},
                "SEs": [DEFAULT_SE] if port else []}},
            # (with --port 0 the port is only known once serving: no SE then)
            "StorageElements": {DEFAULT_SE: {"Protocols": [
                {"Plugin": "HTTPS", "Host": host, "Port": port, "Path": str(directory / "se")}]}
            } if port else {},
        },
        # the optimiser schedules jobs with input data from the file catalog
        "Systems": {"DataManagement": {}},
        "Operations": {"Pilot": {"User": "pilot", "Group": PILOT_GROUP, "MaxFailedMatches": 5,
                                 "Poll": 1, "Heartbeat": 10}},
        "Registry": {
            "DefaultGroup": USER_GROUP,
            "VOs": {VO: {"DefaultGroup": USER_GROUP, "Description": "demo VO"}},
            "Users": {
                user: {"DNs": [_user_dn(user)]},
                "admin": {"DNs": [_user_dn("admin")]},
                "pilot": {"DNs": []},
            },
            "Groups": {
                USER_GROUP: {"VO": VO, "Users": [user, "admin"], "Properties": ["NormalUser"]},
                ADMIN_GROUP: {
                    "VO": VO,
                    "Users": ["admin"],
                    "Properties": ["NormalUser", "JobAdministrator", "Operator"],
                },
                PILOT_GROUP: {
                    "VO": VO,
                    "Users": ["pilot"],
                    "Properties": ["GenericPilot", "LimitedDelegation"],
                },
            },
            "Hosts": {
                "localhost": {"DN": "/O=pilotwms/OU=Hosts/CN=localhost",
                              "Properties": ["TrustedHost"]},
            },
        },
    }


def create_instance(
    directory: Path, *, user: str = "alice", host: str = "127.0.0.1", port: int = 8443,
    force: bool = False,
) -> Instance:
    """Make the instance; refuses to overwrite a non-empty DIR unless ``force``."""
    if not user.isidentifier() or user in ("admin", "pilot"):
        raise InvalidArgumentError(
            f"user name {user!r} must be an identifier other than admin/pilot")
    directory = directory.resolve()
    if directory.exists() and any(directory.iterdir()):
        if not force:
            raise AlreadyExistsError(f"{directory} is not empty (use --force to replace it)")
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    inst = Instance(directory)

    for sub in ("host", "users"):
        (directory / sub).mkdir()
    ca = CertificateAuthority.create(directory / "ca", name="pilotwms demo CA")
    cert, key = ca.issue("localhost", kind="host", extra_dns_names=[host])
    write_pem(directory / "host" / "hostcert.pem", cert, 0o644)
    write_pem(directory / "host" / "hostkey.pem", key, 0o600)
    for name in (user, "admin"):
        cert, key = ca.issue(name, kind="user")
        cert_path, key_path = inst.user_cert(name)
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        write_pem(cert_path, cert, 0o644)
        write_pem(key_path, key, 0o600)
    generate_signing_key(directory / "jwk.json")

    header = "# pilotwms instance made by `pilotwms init`; see docs/admin-guide.md\n"
    inst.config.write_text(header + yaml.safe_dump(
        server_config_data(directory, user=user, host=host, port=port), sort_keys=False))
    cert_path, key_path = inst.user_cert(user)
    client = {
        "URLs": [f"https://{host}:{port}"],
        "CADir": "ca/certificates",
        "Cert": str(cert_path.relative_to(directory)),
        "Key": str(key_path.relative_to(directory)),
        "Group": USER_GROUP,
        "VO": VO,
    }
    inst.client_config.write_text(
        "# pilotwms client settings; point PILOTWMS_CLIENT_CONFIG here\n"
        + yaml.safe_dump(client, sort_keys=False))

    from core.cli.dbcmd import init_all  # the schemas of every installed system

    config = load_config(inst.config)
    init_all(config)
    if port:  # with --port 0 the URLs are only known once serving
        from core.cli.dirac_config import write_dirac_cfg

        write_dirac_cfg(config, inst.dirac_cfg)
    return inst
