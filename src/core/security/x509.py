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
hashed CA directory. The module also holds the tiny DER encoder and decoder the proxy
extensions need.

Example::

    >>> from core.security.x509 import der_ia5string, decode_dirac_group, der_oid
    >>> der_ia5string("dirac_user").hex()
    '160a64697261635f75736572'
    >>> decode_dirac_group(der_ia5string("dirac_user"))
    'dirac_user'
    >>> der_oid("1.2.42.42").hex()
    '06032a2a2a'
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

DIRAC_GROUP_OID = "1.2.42.42"
PROXY_CERT_INFO_OID = "1.3.6.1.5.5.7.1.14"
#: the ProxyCertInfo OID of the GSI-3 (pre-RFC) draft, still read by the grid tools
PROXY_CERT_INFO_DRAFT_OID = "1.3.6.1.4.1.3536.1.222"
INHERIT_ALL_POLICY_OID = "1.3.6.1.5.5.7.21.1"
LIMITED_POLICY_OID = "1.3.6.1.4.1.3536.1.1.1.9"
INDEPENDENT_POLICY_OID = "1.3.6.1.5.5.7.21.2"

#: OpenSSL's X509_V_FLAG_ALLOW_PROXY_CERTS, missing from X509StoreFlags in old pyOpenSSL
_ALLOW_PROXY_CERTS = int(getattr(crypto.X509StoreFlags, "ALLOW_PROXY_CERTS", 0x40))

_LEGACY_PROXY_CNS = {"proxy": False, "limited proxy": True}  # last CN -> is limited

# -- tiny DER encoder / decoder ------------------------------------------------------------------

TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_OID = 0x06
TAG_UTF8STRING = 0x0C
TAG_PRINTABLESTRING = 0x13
TAG_IA5STRING = 0x16
TAG_SEQUENCE = 0x30


def der_length(length: int) -> bytes:
    """DER length octets: short form below 128, else 0x80|n followed by n big-endian bytes."""
    if length < 0:
        raise InvalidArgumentError(f"negative DER length {length}")
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def der_tlv(tag: int, content: bytes) -> bytes:
    """One DER element: tag byte, length, content."""
    return bytes([tag]) + der_length(len(content)) + content


def der_oid(dotted: str) -> bytes:
    """DER OBJECT IDENTIFIER from its dotted form, e.g. ``"1.2.42.42"``."""
    try:
        arcs = [int(arc) for arc in dotted.split(".")]
    except ValueError:
        raise InvalidArgumentError(f"not a dotted OID: {dotted!r}") from None
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40) or min(arcs) < 0:
        raise InvalidArgumentError(f"not a valid OID: {dotted!r}")
    body = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return der_tlv(TAG_OID, bytes(body))


def der_integer(value: int) -> bytes:
    """DER INTEGER (two's complement, minimal length)."""
    size = (value + (value < 0)).bit_length() // 8 + 1
    return der_tlv(TAG_INTEGER, value.to_bytes(size, "big", signed=True))


def der_sequence(*elements: bytes) -> bytes:
    """DER SEQUENCE of already encoded elements."""
    return der_tlv(TAG_SEQUENCE, b"".join(elements))


def der_octet_string(data: bytes) -> bytes:
    """DER OCTET STRING."""
    return der_tlv(TAG_OCTET_STRING, data)


def der_ia5string(text: str) -> bytes:
    """DER IA5String (ASCII only)."""
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"IA5String must be ASCII: {text!r}") from None
    return der_tlv(TAG_IA5STRING, raw)


def der_read(data: bytes) -> list[tuple[int, bytes]]:
    """Split ``data`` into its top-level DER elements, as ``(tag, content)`` pairs.

    Only low tag numbers (< 31) and definite lengths are accepted: that is all X509
    extensions use. Raises :class:`CredentialError` on malformed input.
    """
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 2:
            raise CredentialError("truncated DER element")
        tag, first = data[pos], data[pos + 1]
        if tag & 0x1F == 0x1F:
            raise CredentialError("high-tag-number DER elements are not supported")
        pos += 2
        if first < 0x80:
            length = first
        else:
            count = first & 0x7F
            if count == 0 or count > 4 or pos + count > len(data):
                raise CredentialError("bad DER length")
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
        if pos + length > len(data):
            raise CredentialError("DER element longer than its container")
        out.append((tag, data[pos : pos + length]))
        pos += length
    return out


def _decode_oid(content: bytes) -> str:
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs or content[-1] & 0x80:
        raise CredentialError("malformed OBJECT IDENTIFIER")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in [first, arcs[0] - 40 * first, *arcs[1:]])


@dataclass(frozen=True)
class ProxyCertInfo:
    """The decoded ProxyCertInfo extension (RFC 3820 section 3.8)."""

    policy_language: str
    path_len: int | None = None
    policy: bytes | None = None


def encode_proxy_cert_info(
    policy_language: str = INHERIT_ALL_POLICY_OID,
    path_len: int | None = None,
    policy: bytes | None = None,
) -> bytes:
    """DER of ``ProxyCertInfo ::= SEQUENCE { pCPathLenConstraint INTEGER OPTIONAL,
    proxyPolicy SEQUENCE { policyLanguage OID, policy OCTET STRING OPTIONAL } }``."""
    if path_len is not None and path_len < 0:
        raise InvalidArgumentError("the proxy path length constraint cannot be negative")
    proxy_policy = der_oid(policy_language)
    if policy is not None:
        proxy_policy += der_octet_string(policy)
    head = der_integer(path_len) if path_len is not None else b""
    return der_sequence(head, der_sequence(proxy_policy))


def decode_proxy_cert_info(value: bytes) -> ProxyCertInfo:
    """Parse a ProxyCertInfo extension value (RFC 3820 or the GSI-3 draft layout).

    The draft put ``proxyPolicy`` first and the path length as ``[1] EXPLICIT INTEGER``, so
    the elements are recognised by their tags rather than by their position.
    """
    top = der_read(value)
    if len(top) != 1 or top[0][0] != TAG_SEQUENCE:
        raise CredentialError("ProxyCertInfo is not a DER SEQUENCE")
    path_len: int | None = None
    language: str | None = None
    policy: bytes | None = None
    for tag, content in der_read(top[0][1]):
        if tag == 0xA1:  # draft: [1] EXPLICIT INTEGER
            inner = der_read(content)
            if len(inner) != 1 or inner[0][0] != TAG_INTEGER:
                raise CredentialError("malformed proxy path length constraint")
            tag, content = inner[0]
        if tag == TAG_INTEGER:
            path_len = int.from_bytes(content, "big", signed=True)
        elif tag == TAG_SEQUENCE:
            parts = der_read(content)
            if not parts or parts[0][0] != TAG_OID:
                raise CredentialError("ProxyCertInfo has no policy language")
            language = _decode_oid(parts[0][1])
            if len(parts) > 1 and parts[1][0] == TAG_OCTET_STRING:
                policy = parts[1][1]
        else:
            raise CredentialError(f"unexpected element (tag 0x{tag:02x}) in ProxyCertInfo")
    if language is None:
        raise CredentialError("ProxyCertInfo has no proxy policy")
    return ProxyCertInfo(language, path_len, policy)


def decode_dirac_group(value: bytes) -> str:
    """The group name held by a DIRAC group extension value (a DER IA5String).

    UTF8String and PrintableString are accepted too, and so is the bare ASCII text old
    tools wrote without any DER wrapping.
    """
    try:
        elements = der_read(value)
    except CredentialError:
        elements = []
    if len(elements) == 1 and elements[0][0] in (
        TAG_IA5STRING,
        TAG_UTF8STRING,
        TAG_PRINTABLESTRING,
    ):
        raw = elements[0][1]
    else:
        raw = value
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CredentialError("the DIRAC group extension is not text") from None
    if not text.isprintable() or not text.strip():
        raise CredentialError(f"the DIRAC group extension holds an invalid name {text!r}")
    return text


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
