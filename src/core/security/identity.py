"""Who is calling: the :class:`Identity` every service method receives.

An identity is made once per request by :mod:`core.security.authenticate` from an X509 chain or
a bearer token, and carries what rights checks need (group, VO, properties) plus what DIRAC's
``whoami`` reports.

Example::

    >>> ident = Identity(auth_method="token", username="alice", group="demo_user", vo="demo",
    ...                  properties=frozenset({"NormalUser"}), dn="/O=pilotwms/CN=alice",
    ...                  valid_dn=True, valid_group=True)
    >>> ident.authenticated, ident.whoami()["group"]
    (True, 'demo_user')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

AuthMethod = Literal["none", "x509", "token"]


@dataclass(frozen=True)
class Identity:
    auth_method: AuthMethod = "none"
    #: registry user name (or host name for host certificates); None when the DN is unknown
    username: str | None = None
    group: str | None = None
    vo: str | None = None
    properties: frozenset[str] = frozenset()
    #: the end-entity DN (behind any proxy); for tokens the user's first registry DN, if any
    dn: str | None = None
    #: DIRAC's "identity": the end-entity DN for X509, the token subject for tokens
    identity: str | None = None
    #: the presented credential's own subject and issuer (a proxy's, or the token's sub/iss)
    subject: str | None = None
    issuer: str | None = None
    is_proxy: bool = False
    is_limited_proxy: bool = False
    is_host: bool = False
    seconds_left: int = 0
    valid_dn: bool = False
    valid_group: bool = False
    #: token scopes, or job-scoped restrictions; empty for X509
    scopes: frozenset[str] = frozenset()
    extra_credentials: Any = None
    hostname: str | None = None
    #: the caller delegating through extraCredentials, when a trusted host acts for a user
    delegated_by: str | None = field(default=None)

    @property
    def authenticated(self) -> bool:
        """A registered DN or subject with a valid group (or a registered host)."""
        return self.auth_method != "none" and self.valid_dn and (self.valid_group or self.is_host)

    def whoami(self) -> dict[str, Any]:
        """The ``whoami`` reply, with DIRAC's key names."""
        reply: dict[str, Any] = {
            "DN": self.dn,
            "identity": self.identity,
            "subject": self.subject,
            "issuer": self.issuer,
            "username": self.username,
            "group": self.group,
            "properties": sorted(self.properties),
            "VO": self.vo,
            "isProxy": self.is_proxy,
            "isLimitedProxy": self.is_limited_proxy,
            "secondsLeft": self.seconds_left,
            "validDN": self.valid_dn,
            "validGroup": self.valid_group,
            "authMethod": self.auth_method,
        }
        if self.hostname is not None:
            reply["hostname"] = self.hostname
        if self.extra_credentials is not None:
            reply["extraCredentials"] = self.extra_credentials
        if self.scopes:
            reply["scopes"] = sorted(self.scopes)
        return reply


ANONYMOUS = Identity()
