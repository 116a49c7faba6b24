"""Turn what came with a request (a verified X509 chain, a bearer token, a balancer's header)
into an :class:`~core.security.identity.Identity`.

Rules, following DIRAC:

* X509: the DN is the end-entity DN behind any proxies; the group is the one in the proxy's
  DIRAC group extension, else the user's default group. A DN unknown to the registry gives an
  identity with ``valid_dn=False``; a group the user is not in gives ``valid_group=False``.
  Neither is authenticated, so only methods open to ``all`` accept them.
* Host certificates map to ``Registry.Hosts`` and get the host's properties.
* Every certificate chain is checked against the CA directory's CRLs (:mod:`core.security.crl`):
  a revoked user, host or proxy-issuer certificate is refused.
* Tokens: ``Authorization: Bearer``; see :meth:`Authenticator.from_token`.
* ``extraCredentials`` (``[DN, group]``) lets a ``TrustedHost`` act for a user, as DIRAC does.

Example::

    >>> from core.config.schema import Config
    >>> cfg = Config.model_validate({"Registry": {
    ...     "VOs": {"demo": {"DefaultGroup": "demo_user"}},
    ...     "Users": {"alice": {"DNs": ["/O=pilotwms/OU=Users/CN=alice"]}},
    ...     "Groups": {"demo_user": {"VO": "demo", "Users": ["alice"],
    ...                              "Properties": ["NormalUser"]}}}})
    >>> auth = Authenticator(cfg)
    >>> ident = auth.for_user("alice", dn="/O=pilotwms/OU=Users/CN=alice", group=None,
    ...                       auth_method="x509")
    >>> ident.group, ident.authenticated
    ('demo_user', True)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from cryptography import x509 as cx509

from core.config.schema import Config
from core.exceptions import NotAuthenticatedError, NotAuthorizedError
from core.security.crl import CRLStore, ca_directory
from core.security.identity import Identity
from core.security.registry import Registry
from core.security.tokens import TokenVerifier
from core.security.x509 import dn_string, identity_from_chain


class Authenticator:
    """Maps credentials to identities; one per server process, shared by all requests."""

    def __init__(self, config: Config, verifier: TokenVerifier | None = None,
                 crls: CRLStore | None = None) -> None:
        self.config = config
        self.registry = Registry(config.registry)
        self.verifier = verifier if verifier is not None else TokenVerifier(config.auth)
        conf = config.server.crls
        #: the CRLs of the CA directory, checked for every chain (see core.security.crl)
        self.crls = crls if crls is not None else CRLStore(
            ca_directory(config), expired_policy=conf.expired_policy,
            reload_seconds=conf.reload_seconds)

    def check_revoked(self, chain: Sequence[cx509.Certificate]) -> None:
        """:class:`CredentialError` if a certificate of ``chain`` is revoked (or its CA's CRL
        cannot be used); cheap enough for every request (a reload is checked every
        ``Server.CRLs.ReloadSeconds``)."""
        self.crls.check_chain(chain)

    # -- building blocks ---------------------------------------------------------------------

    def for_user(
        self,
        username: str | None,
        *,
        dn: str | None,
        group: str | None,
        auth_method: str,
        vo: str | None = None,
        **fields: Any,
    ) -> Identity:
        """The identity of a registry user in ``group`` (or their default group)."""
        reg = self.registry
        valid_dn = username is not None and reg.has_user(username)
        chosen = group
        if valid_dn and chosen is None:
            chosen = reg.default_group(username or "", vo)
        gconf = reg.group(chosen) if chosen else None
        valid_group = bool(
            valid_dn and gconf is not None and reg.is_member(username or "", chosen or "")
            and (vo is None or gconf.vo == vo)
        )
        return Identity(
            auth_method=auth_method,  # type: ignore[arg-type]
            username=username if valid_dn else None,
            dn=dn,
            group=chosen,
            vo=gconf.vo if gconf else vo,
            properties=frozenset(gconf.properties) if (gconf and valid_group) else frozenset(),
            valid_dn=valid_dn,
            valid_group=valid_group,
            **fields,
        )

    # -- X509 ----------------------------------------------------------------------------------

    def from_chain(self, chain: Sequence[cx509.Certificate]) -> Identity:
        """Identity of a chain that TLS (or :func:`verify_chain`) has verified; leaf first.
        A revoked certificate in the chain raises :class:`CredentialError`."""
        info = identity_from_chain(chain)
        self.check_revoked(chain)
        leaf = chain[0]
        common: dict[str, Any] = {
            "identity": info.dn,
            "subject": dn_string(leaf.subject),
            "issuer": dn_string(leaf.issuer),
            "is_proxy": info.is_proxy,
            "is_limited_proxy": info.is_limited_proxy,
            "seconds_left": info.seconds_left(),
        }
        host = self.registry.host_for_dn(info.dn)
        if host is not None and not info.is_proxy:
            name, hconf = host
            return Identity(
                auth_method="x509", username=name, dn=info.dn, properties=frozenset(
                    hconf.properties), valid_dn=True, valid_group=False, is_host=True,
                hostname=name, **common,
            )
        username = self.registry.user_for_dn(info.dn)
        return self.for_user(username, dn=info.dn, group=info.group, auth_method="x509", **common)

    # -- tokens ----------------------------------------------------------------------------------

    def from_token(self, token: str) -> Identity:
        """Identity of a bearer token; an invalid token raises :class:`NotAuthenticatedError`.

        Our own tokens name the user in ``sub`` and the group in ``dirac_group``. For external
        issuers the user is found by (issuer, sub) in ``Users.<u>.TokenSubjects``; the group is
        ``group:<g>`` from ``scope`` if present, else the first value of the issuer's groups
        claim that ``GroupMap`` maps to a group the user is in, else the user's default group in
        the issuer's VO.
        """
        claims = self.verifier.verify(token)
        issuer = str(claims["iss"])
        subject = str(claims.get("sub", ""))
        scopes = frozenset(str(claims.get("scope", "")).split())
        left = max(0, int(claims["exp"]) - int(time.time()))
        fields: dict[str, Any] = {"identity": subject, "subject": subject, "issuer": issuer,
                  "seconds_left": left, "scopes": scopes}
        requested = next((s[6:] for s in scopes if s.startswith("group:")), None)
        own = self.verifier.is_own(issuer)
        if not own:
            # job-scoped credentials are ours alone: an external issuer cannot mint one
            fields["scopes"] = scopes = frozenset(s for s in scopes if not s.startswith("job:"))
        if own:
            username = subject if self.registry.has_user(subject) else None
            group = claims.get("dirac_group") or requested
            vo = claims.get("vo")
        else:
            conf = self.verifier.issuer_config(issuer)
            assert conf is not None  # noqa: S101 - verify() accepted the issuer
            username = self.registry.user_for_subject(issuer, subject)
            vo = conf.vo
            group = requested
            if group is None and username is not None:
                values = claims.get(conf.groups_claim) or []
                if isinstance(values, str):
                    values = [values]
                for value in values:
                    mapped = conf.group_map.get(str(value))
                    if mapped and self.registry.is_member(username, mapped):
                        group = mapped
                        break
        dns = self.registry.dns_of(username) if username else []
        ident = self.for_user(
            username, dn=dns[0] if dns else None, group=group, auth_method="token",
            vo=vo if isinstance(vo, str) else None, **fields,
        )
        granted = claims.get("properties")
        if own and isinstance(granted, list):
            # a token of ours may carry fewer properties than its group (a job's credential
            # carries its owner's ordinary rights only); never more than the registry gives
            ident = replace(ident, properties=ident.properties & frozenset(map(str, granted)))
        return ident

    # -- delegation ------------------------------------------------------------------------------

    def apply_extra_credentials(self, ident: Identity, extra: Any) -> Identity:
        """A TrustedHost may act for ``[DN, group]``; anyone else sending it is refused.

        ``"hosts"`` (DIRAC's marker that the host acts for itself) changes nothing.
        """
        if extra in (None, "", "hosts"):
            return ident
        if "TrustedHost" not in ident.properties or not ident.authenticated:
            raise NotAuthorizedError("extraCredentials are only accepted from trusted hosts")
        if not (isinstance(extra, list | tuple) and len(extra) == 2):
            raise NotAuthorizedError("extraCredentials must be [DN, group]")
        dn, group = str(extra[0]), str(extra[1])
        username = self.registry.user_for_dn(dn)
        if username is None:
            raise NotAuthenticatedError(f"extraCredentials name an unknown DN {dn}")
        delegated = self.for_user(username, dn=dn, group=group, auth_method=ident.auth_method,
                                  identity=dn, subject=dn, issuer=ident.issuer,
                                  seconds_left=ident.seconds_left, extra_credentials=extra)
        return replace(delegated, delegated_by=ident.username)

    def check_vo(self, ident: Identity, client_vo: str | None) -> None:
        """DIRAC's ``clientVO``: a client that names a VO must be acting in it."""
        # DIRAC's client sends the literal "unknown" when the user configured no VO
        if not client_vo or client_vo == "unknown" or not ident.authenticated:
            return
        if ident.vo and ident.vo != client_vo:
            raise NotAuthorizedError(
                f"Client VO {client_vo} does not match the VO {ident.vo} of group {ident.group}"
            )
