"""Credentials of every kind, made from the session's ``pilotwms init`` instance: user and
admin certificates, proxies with and without groups, limited proxies, a host certificate, a
registered-CA stranger, a foreign-CA certificate, and tokens of the instance's issuer."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from core.cli.instance import Instance
from core.config.schema import Config
from core.security.ca import CertificateAuthority, write_pem
from core.security.proxy import create_proxy
from core.security.tokens import TokenIssuer


class Creds:
    """Paths of every kind of credential, made from the session's instance."""

    def __init__(self, instance: Instance, base: Path, config: Config) -> None:
        self.instance = instance
        self.ca_dir = instance.ca_dir
        self.alice = instance.user_cert("alice")
        self.admin = instance.user_cert("admin")
        ca = CertificateAuthority.load(instance.directory / "ca")
        cert, key = ca.issue("stranger", kind="user")
        self.stranger = (write_pem(base / "stranger.pem", cert), write_pem(base / "sk.pem", key))
        cert, key = ca.issue("localhost", kind="host")
        self.host = (write_pem(base / "host.pem", cert), write_pem(base / "hk.pem", key))
        other = CertificateAuthority.create(base / "other-ca", name="other CA")
        cert, key = other.issue("alice", kind="user")
        self.foreign = (write_pem(base / "foreign.pem", cert), write_pem(base / "fk.pem", key))
        self.base = base
        assert config.auth.signing is not None
        self.issuer = TokenIssuer(config.auth.signing)

    def proxy(self, who: tuple[Path, Path], group: str | None = None,
              limited: bool = False, name: str = "proxy") -> Path:
        pem = create_proxy(who[0].read_bytes(), who[1].read_bytes(), group=group,
                           limited=limited)
        return write_pem(self.base / f"{name}-{uuid.uuid4().hex}.pem", pem, 0o600)

    def token(self, user: str, group: str, **kw: Any) -> str:
        return self.issuer.issue(user, group=group, vo="demo", **kw)
