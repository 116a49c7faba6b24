"""Reading and checking X509 certificate chains, grid proxies included.

A grid client shows a chain *leaf first*: zero or more proxy certificates, then the end-entity
certificate (EEC) of the user or host, sometimes followed by CA certificates. The identity is
the EEC's DN; the DIRAC group travels in the proxies (extension ``1.2.42.42``).

Proxies are recognised as OpenSSL and the grid tools do:

* RFC 3820 proxies carry the critical ProxyCertInfo extension (``1.3.6.1.5.5.7.1.14``);
* GSI-3 draft proxies carry the same structure under ``1.3.6.1.4.1.3536.1.222``;
* legacy Globus (GT2) proxies have no extension: their subject is the issuer's subject plus a
  last ``CN=proxy`` or ``CN=limited proxy``.

:func:`identity_from_chain` checks the *structure* of the chain only (a TLS handshake has
checked the signatures); :func:`verify_chain` also checks signatures and validity against a
hashed CA directory. The DER of the proxy extensions is :mod:`core.security.der`'s (its
names are re-exported here).

Example::

    >>> from core.security import der, x509
    >>> x509.DIRAC_GROUP_OID, x509.decode_dirac_group is der.decode_dirac_group
    ('1.2.42.42', True)
    >>> from cryptography.x509 import Name
    >>> x509.dn_string(Name.from_rfc4514_string("CN=alice,O=demo"))  # DIRAC's DN form
    '/O=demo/CN=alice'
"""

from __future__ import annotations

import _ssl
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID
from OpenSSL import crypto

from core.exceptions import CredentialError, InvalidArgumentError
from core.security.der import (
    DIRAC_GROUP_OID,
    INDEPENDENT_POLICY_OID,
    INHERIT_ALL_POLICY_OID,
    LIMITED_POLICY_OID,
    PROXY_CERT_INFO_DRAFT_OID,
    PROXY_CERT_INFO_OID,
    ProxyCertInfo,
    decode_dirac_group,
    decode_proxy_cert_info,
    der_ia5string,
    der_integer,
    der_length,
    der_octet_string,
    der_oid,
    der_read,
    der_sequence,
    der_tlv,
    encode_proxy_cert_info,
)

__all__ = [
    "DIRAC_GROUP_OID",
    "PROXY_CERT_INFO_OID",
    "PROXY_CERT_INFO_DRAFT_OID",
    "INHERIT_ALL_POLICY_OID",
    "LIMITED_POLICY_OID",
    "INDEPENDENT_POLICY_OID",
    "ProxyCertInfo",
    "ProxyInfo",
    "X509Identity",
    "classify_proxy",
    "decode_dirac_group",
    "decode_proxy_cert_info",
    "der_ia5string",
    "der_integer",
    "der_length",
    "der_octet_string",
    "der_oid",
    "der_read",
    "der_sequence",
    "der_tlv",
    "dn_string",
    "encode_proxy_cert_info",
    "identity_from_chain",
    "key_matches",
    "load_pem_chain",
    "load_pem_key",
    "peer_identity_from_der",
    "verified_chain_der",
    "verify_chain",
]

#: OpenSSL's X509_V_FLAG_ALLOW_PROXY_CERTS, missing from X509StoreFlags in old pyOpenSSL
_ALLOW_PROXY_CERTS = int(getattr(crypto.X509StoreFlags, "ALLOW_PROXY_CERTS", 0x40))

_LEGACY_PROXY_CNS = {"proxy": False, "limited proxy": True}  # last CN -> is limited

# -- names and PEM -------------------------------------------------------------------------------

_SHORT_NAMES: dict[x509.ObjectIdentifier, str] = {
    NameOID.COUNTRY_NAME: "C",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COMMON_NAME: "CN",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.USER_ID: "UID",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.SURNAME: "SN",
    NameOID.GIVEN_NAME: "GN",
    NameOID.TITLE: "title",
    NameOID.STREET_ADDRESS: "street",
    NameOID.POSTAL_CODE: "postalCode",
    NameOID.DN_QUALIFIER: "dnQualifier",
    NameOID.PSEUDONYM: "pseudonym",
    NameOID.INITIALS: "initials",
    NameOID.GENERATION_QUALIFIER: "generationQualifier",
    NameOID.BUSINESS_CATEGORY: "businessCategory",
    NameOID.X500_UNIQUE_IDENTIFIER: "x500UniqueIdentifier",
    NameOID.JURISDICTION_COUNTRY_NAME: "jurisdictionC",
    NameOID.JURISDICTION_STATE_OR_PROVINCE_NAME: "jurisdictionST",
    NameOID.JURISDICTION_LOCALITY_NAME: "jurisdictionL",
    NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier",
    NameOID.UNSTRUCTURED_NAME: "unstructuredName",
}


def _attribute_text(attribute: x509.NameAttribute[Any]) -> str:
    name = _SHORT_NAMES.get(attribute.oid, attribute.oid.dotted_string)
    value = attribute.value
    text = value.hex() if isinstance(value, bytes) else str(value)
    return f"{name}={text}"


def dn_string(name: x509.Name) -> str:
    """The DN in the OpenSSL "oneline" style DIRAC uses: ``/O=pilotwms/OU=Users/CN=alice``.

    RDNs keep the certificate's order; the attributes of a multi-valued RDN are joined by
    ``+``. Values are not escaped, exactly as OpenSSL prints them.
    """
    return "".join(
        "/" + "+".join(_attribute_text(attribute) for attribute in rdn) for rdn in name.rdns
    )


_CERT_BLOCK = re.compile(
    rb"-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----\r?\n.*?-----END (?:X509 |TRUSTED )?"
    rb"CERTIFICATE-----",
    re.DOTALL,
)
_KEY_BLOCK = re.compile(
    rb"-----BEGIN ((?:RSA |EC |DSA |ENCRYPTED )?PRIVATE KEY)-----\r?\n.*?-----END \1-----",
    re.DOTALL,
)


def load_pem_chain(data: bytes) -> list[x509.Certificate]:
    """All ``CERTIFICATE`` blocks of ``data``, in order; other blocks (keys) are skipped."""
    if isinstance(data, str):
        data = data.encode("ascii", "replace")
    blocks = _CERT_BLOCK.findall(data)
    if not blocks:
        raise CredentialError("no PEM certificate found")
    chain = []
    for index, block in enumerate(blocks):
        block = block.replace(b"X509 CERTIFICATE", b"CERTIFICATE")
        block = block.replace(b"TRUSTED CERTIFICATE", b"CERTIFICATE")
        try:
            chain.append(x509.load_pem_x509_certificate(block))
        except ValueError as exc:
            raise CredentialError(f"PEM certificate #{index + 1} is invalid: {exc}") from None
    return chain


def load_der_chain(data: bytes) -> list[x509.Certificate]:
    """Certificates in DER, one after the other (HAProxy's ``ssl_c_der`` and
    ``ssl_c_chain_der``); an empty ``data`` is an empty chain."""
    chain = []
    pos = 0
    while pos < len(data):
        # a DER SEQUENCE: 0x30, then a short length or 0x8n and n length bytes
        if data[pos] != 0x30 or pos + 2 > len(data):
            raise CredentialError("DER certificate data is malformed")
        first = data[pos + 1]
        if first < 0x80:
            head, length = 2, first
        else:
            count = first & 0x7F
            if not 1 <= count <= 4 or pos + 2 + count > len(data):
                raise CredentialError("DER certificate data is malformed")
            head, length = 2 + count, int.from_bytes(data[pos + 2:pos + 2 + count], "big")
        end = pos + head + length
        if end > len(data):
            raise CredentialError("DER certificate data is truncated")
        try:
            chain.append(x509.load_der_x509_certificate(data[pos:end]))
        except ValueError as exc:
            raise CredentialError(f"DER certificate #{len(chain) + 1} is invalid: {exc}") \
                from None
        pos = end
    return chain


def load_pem_key(data: bytes, password: bytes | None = None) -> PrivateKeyTypes:
    """The first private key of ``data`` (which may also hold certificates, as a proxy does).

    Raises :class:`CredentialError` saying whether a passphrase is needed or was wrong.
    """
    if isinstance(data, str):
        data = data.encode("ascii", "replace")
    match = _KEY_BLOCK.search(data)
    if match is None:
        raise CredentialError("no PEM private key found")
    block = match.group(0)
    encrypted = match.group(1) == b"ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in block
    if encrypted and not password:
        raise CredentialError("the private key is encrypted: a passphrase is needed")
    try:
        return serialization.load_pem_private_key(block, password if encrypted else None)
    except (ValueError, TypeError) as exc:
        if encrypted:
            raise CredentialError("cannot decrypt the private key: wrong passphrase?") from None
        raise CredentialError(f"invalid private key: {exc}") from None


def key_matches(key: PrivateKeyTypes, cert: x509.Certificate) -> bool:
    """True when ``key`` is the private key of ``cert``."""
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)


# -- proxies and identities ----------------------------------------------------------------------


@dataclass(frozen=True)
class ProxyInfo:
    """What makes a certificate a proxy: its flavour, limitation and path constraint."""

    kind: Literal["rfc3820", "gsi3", "legacy"]
    limited: bool
    policy_language: str | None = None
    path_len: int | None = None


def _last_cn_is_extra(cert: x509.Certificate) -> bool:
    """True when the subject is the issuer plus exactly one single-valued CN RDN."""
    subject, issuer = cert.subject.rdns, cert.issuer.rdns
    if len(subject) != len(issuer) + 1 or subject[:-1] != issuer:
        return False
    last = list(subject[-1])
    return len(last) == 1 and last[0].oid == NameOID.COMMON_NAME


def classify_proxy(cert: x509.Certificate) -> ProxyInfo | None:
    """The proxy nature of ``cert``, or ``None`` for an ordinary (end-entity or CA) cert."""
    for oid, kind in (
        (PROXY_CERT_INFO_OID, "rfc3820"),
        (PROXY_CERT_INFO_DRAFT_OID, "gsi3"),
    ):
        try:
            ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid))
        except x509.ExtensionNotFound:
            continue
        if not ext.critical:
            raise CredentialError(
                f"proxy {dn_string(cert.subject)}: the ProxyCertInfo extension must be critical"
            )
        value = ext.value
        if not isinstance(value, x509.UnrecognizedExtension):  # pragma: no cover - future
            raise CredentialError("unexpected decoding of the ProxyCertInfo extension")
        info = decode_proxy_cert_info(value.value)
        return ProxyInfo(
            kind,  # type: ignore[arg-type]
            info.policy_language == LIMITED_POLICY_OID,
            info.policy_language,
            info.path_len,
        )
    if _last_cn_is_extra(cert):
        last_cn = next(iter(cert.subject.rdns[-1])).value
        if isinstance(last_cn, str) and last_cn in _LEGACY_PROXY_CNS:
            return ProxyInfo("legacy", _LEGACY_PROXY_CNS[last_cn])
    return None


def _group_of(cert: x509.Certificate) -> str | None:
    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(DIRAC_GROUP_OID))
    except x509.ExtensionNotFound:
        return None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):  # pragma: no cover - future
        raise CredentialError("unexpected decoding of the DIRAC group extension")
    return decode_dirac_group(value.value)


@dataclass(frozen=True)
class X509Identity:
    """Who a certificate chain belongs to.

    ``dn`` and ``issuer_dn`` are the end-entity certificate's, behind any proxies;
    ``not_after`` is the earliest expiry from the leaf to the EEC (CAs not counted);
    ``chain_length`` counts the certificates from the leaf to the EEC, both included.
    """

    dn: str
    issuer_dn: str
    is_proxy: bool
    is_limited_proxy: bool
    group: str | None
    not_after: datetime
    chain_length: int

    def seconds_left(self, now: datetime | None = None) -> int:
        """Whole seconds until ``not_after`` (0 once expired)."""
        now = now or datetime.now(timezone.utc)
        if now.tzinfo is None:
            raise InvalidArgumentError("now must be timezone-aware")
        return max(0, int((self.not_after - now).total_seconds()))


def identity_from_chain(chain: Sequence[x509.Certificate]) -> X509Identity:
    """The identity behind a chain given leaf first; signatures are *not* checked here.

    Walks the proxies down to the first non-proxy certificate (the EEC) and ignores what
    follows it. Checks each proxy's name (issuer subject plus one CN), that each proxy is
    issued by the next certificate, path length constraints and the proxy policy (only
    inherit-all and limited proxies carry their issuer's identity).
    """
    if not chain:
        raise CredentialError("empty certificate chain")
    proxies: list[tuple[x509.Certificate, ProxyInfo]] = []
    eec: x509.Certificate | None = None
    for cert in chain:
        info = classify_proxy(cert)
        if info is None:
            eec = cert
            break
        proxies.append((cert, info))
    if eec is None:
        raise CredentialError("the chain holds only proxies: its end-entity certificate is missing")

    for index, (cert, info) in enumerate(proxies):
        subject = dn_string(cert.subject)
        if not _last_cn_is_extra(cert):
            raise CredentialError(
                f"proxy {subject}: its subject must be its issuer's subject plus one CN"
            )
        signer = proxies[index + 1][0] if index + 1 < len(proxies) else eec
        if cert.issuer != signer.subject:
            raise CredentialError(
                f"proxy {subject} is issued by {dn_string(cert.issuer)}, "
                f"but the next certificate is {dn_string(signer.subject)}"
            )
        if info.path_len is not None and index > info.path_len:
            raise CredentialError(
                f"proxy {subject} allows {info.path_len} proxies below it, the chain has {index}"
            )
        if info.kind != "legacy" and info.policy_language not in (
            INHERIT_ALL_POLICY_OID,
            LIMITED_POLICY_OID,
        ):
            what = (
                "independent proxies do not carry their issuer's identity"
                if info.policy_language == INDEPENDENT_POLICY_OID
                else f"unsupported proxy policy language {info.policy_language}"
            )
            raise CredentialError(f"proxy {subject}: {what}")

    group = None
    for cert, _info in proxies:
        group = _group_of(cert)
        if group is not None:
            break
    certs = [cert for cert, _info in proxies] + [eec]
    return X509Identity(
        dn=dn_string(eec.subject),
        issuer_dn=dn_string(eec.issuer),
        is_proxy=bool(proxies),
        is_limited_proxy=any(info.limited for _cert, info in proxies),
        group=group,
        not_after=min(cert.not_valid_after_utc for cert in certs),
        chain_length=len(certs),
    )


def verify_chain(
    chain: Sequence[x509.Certificate],
    ca_dir: str | Path,
    now: datetime | None = None,
) -> X509Identity:
    """Verify ``chain`` (leaf first, proxies allowed) against a hashed CA directory.

    For chains that did not come through our own TLS handshake, e.g. the PEM a
    TLS-terminating balancer forwards. Signatures, validity at ``now`` (default: the current
    time), CA constraints and RFC 3820 proxy rules are checked by OpenSSL; CRLs are not.
    Returns the identity; raises :class:`CredentialError` on any failure.
    """
    identity = identity_from_chain(chain)
    path = Path(ca_dir)
    if not path.is_dir():
        raise CredentialError(f"CA directory {path} does not exist")
    store = crypto.X509Store()
    if now is not None:
        if now.tzinfo is None:
            raise InvalidArgumentError("now must be timezone-aware")
        # pyOpenSSL converts with timetuple(): give it UTC fields
        store.set_time(now.astimezone(timezone.utc))
    store.set_flags(_ALLOW_PROXY_CERTS)
    try:
        store.load_locations(None, str(path))
    except crypto.Error as exc:
        raise CredentialError(f"cannot use CA directory {path}: {exc}") from None
    leaf = crypto.X509.from_cryptography(chain[0])
    untrusted = [crypto.X509.from_cryptography(cert) for cert in chain[1:]]
    context = crypto.X509StoreContext(store, leaf, untrusted)
    try:
        context.verify_certificate()
    except crypto.X509StoreContextError as exc:
        failing = dn_string(exc.certificate.to_cryptography().subject)
        depth = exc.errors[1] if len(exc.errors) > 1 else "?"
        raise CredentialError(
            f"certificate chain verification failed at depth {depth} ({failing}): {exc}"
        ) from None
    return identity


def peer_identity_from_der(der_chain: Sequence[bytes]) -> X509Identity:
    """:func:`identity_from_chain` for a chain of DER blobs, leaf first."""
    chain = []
    for index, der in enumerate(der_chain):
        try:
            chain.append(x509.load_der_x509_certificate(der))
        except ValueError as exc:
            raise CredentialError(f"DER certificate #{index + 1} is invalid: {exc}") from None
    return identity_from_chain(chain)


def verified_chain_der(ssl_sock_or_obj: Any) -> list[bytes]:
    """The peer chain verified by a TLS handshake, leaf first, as DER blobs.

    Accepts an :class:`ssl.SSLSocket`, an :class:`ssl.SSLObject` or their private ``_sslobj``.
    Uses the public ``get_verified_chain()`` of Python >= 3.13 (which already returns DER)
    and the private one of Python 3.10-3.12 (which returns ``_ssl.Certificate`` objects).
    Empty when the peer sent no certificate.
    """
    getter = getattr(ssl_sock_or_obj, "get_verified_chain", None)
    if getter is None:
        getter = getattr(getattr(ssl_sock_or_obj, "_sslobj", None), "get_verified_chain", None)
    if getter is None:
        raise InvalidArgumentError(f"{type(ssl_sock_or_obj).__name__} has no TLS verified chain")
    certs = getter() or []
    return [
        cert if isinstance(cert, bytes) else cert.public_bytes(_ssl.ENCODING_DER)
        for cert in certs
    ]
