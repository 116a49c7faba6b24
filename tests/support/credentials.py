"""Credentials of every kind, made from the session's ``pilotwms init`` instance: user and
admin certificates, proxies with and without groups, limited proxies, a host certificate, a
registered-CA stranger, a foreign-CA certificate, and tokens of the instance's issuer.

Also (issue 16): certificates for any user name (:meth:`Creds.user`), tokens of another
configuration's issuer (:meth:`Creds.issuer_for`), expired tokens and job-scoped tokens as
the Matcher gives them (:meth:`Creds.job_token`), and revoked certificates with their CRL
(:meth:`Creds.revoked_user`)."""

from __future__ import annotations

import time
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
        self.ca = ca
        assert config.auth.signing is not None
        self.issuer = TokenIssuer(config.auth.signing)
        self._users: dict[str, tuple[Path, Path]] = {}

    def proxy(self, who: tuple[Path, Path], group: str | None = None,
              limited: bool = False, name: str = "proxy") -> Path:
        pem = create_proxy(who[0].read_bytes(), who[1].read_bytes(), group=group,
                           limited=limited)
        return write_pem(self.base / f"{name}-{uuid.uuid4().hex}.pem", pem, 0o600)

    def token(self, user: str, group: str, **kw: Any) -> str:
        return self.issuer.issue(user, group=group, vo="demo", **kw)

    def user(self, name: str) -> tuple[Path, Path]:
        """A certificate of the instance's CA for ``/O=pilotwms/OU=Users/CN=<name>``."""
        if name not in self._users:
            cert, key = self.ca.issue(name, kind="user")
            self._users[name] = (write_pem(self.base / f"{name}-cert.pem", cert, 0o644),
                                 write_pem(self.base / f"{name}-key.pem", key))
        return self._users[name]

    @staticmethod
    def issuer_for(config: Config) -> TokenIssuer:
        """The token issuer of another configuration (e.g. a server on its own port)."""
        assert config.auth.signing is not None
        return TokenIssuer(config.auth.signing)

    @staticmethod
    def expired_token(issuer: TokenIssuer, user: str, group: str, vo: str = "demo") -> str:
        return issuer.issue(user, group=group, vo=vo,
                            extra_claims={"exp": int(time.time()) - 300})

    @staticmethod
    def job_token(issuer: TokenIssuer, job_id: int, owner: str, group: str,
                  vo: str = "demo") -> str:
        """What the Matcher hands a pilot for ``job_id`` (wms.service.matcher)."""
        return issuer.issue(owner, group=group, vo=vo, lifetime=3600, scopes=[f"job:{job_id}"],
                            extra_claims={"properties": ["NormalUser", "ProductionManagement"]})
