"""The tiny DER encoder and decoder that the grid proxy extensions need.

Two X509 extensions matter to grid credentials: RFC 3820's ProxyCertInfo (and its GSI-3
draft twin) and DIRAC's group extension ``1.2.42.42``, an IA5String. This module writes and
reads them with a few DER primitives; everything else about certificates is left to
``cryptography`` (see :mod:`core.security.x509`, which re-exports these names).

Only low tag numbers and definite lengths are read: that is all these extensions use.
Malformed input raises :class:`~core.exceptions.CredentialError`; bad arguments to the
encoders raise :class:`~core.exceptions.InvalidArgumentError`.

Example::

    >>> from core.security.der import der_ia5string, decode_dirac_group, der_oid
    >>> der_ia5string("dirac_user").hex()
    '160a64697261635f75736572'
    >>> decode_dirac_group(der_ia5string("dirac_user"))
    'dirac_user'
    >>> der_oid("1.2.42.42").hex()
    '06032a2a2a'
    >>> decode_proxy_cert_info(encode_proxy_cert_info(path_len=0))
    ProxyCertInfo(policy_language='1.3.6.1.5.5.7.21.1', path_len=0, policy=None)
"""

from __future__ import annotations

from dataclasses import dataclass

from core.exceptions import CredentialError, InvalidArgumentError

DIRAC_GROUP_OID = "1.2.42.42"
PROXY_CERT_INFO_OID = "1.3.6.1.5.5.7.1.14"
#: the ProxyCertInfo OID of the GSI-3 (pre-RFC) draft, still read by the grid tools
PROXY_CERT_INFO_DRAFT_OID = "1.3.6.1.4.1.3536.1.222"
INHERIT_ALL_POLICY_OID = "1.3.6.1.5.5.7.21.1"
LIMITED_POLICY_OID = "1.3.6.1.4.1.3536.1.1.1.9"
INDEPENDENT_POLICY_OID = "1.3.6.1.5.5.7.21.2"

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
