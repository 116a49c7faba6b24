"""Proxy delegation: sign a service's certificate signing request (CSR) with our proxy.

GSI/ARC delegation never moves a private key: the service makes a key pair and sends a CSR,
the client signs it as an RFC 3820 proxy of its own credential and sends back the new
certificate followed by its own chain (without any key). This is what A-REX's
``/delegations`` endpoint expects (``POST ?action=new`` -> CSR, ``PUT`` -> signed chain).

The signed proxy has subject = signer subject + ``CN=<serial>``, a critical ProxyCertInfo
(inherit-all, or limited when the signer is limited), a critical keyUsage, the signer's DIRAC
group extension when it has one, and is valid from 5 minutes ago for ``lifetime`` but never
beyond the signer.

Example::

    >>> import tempfile
    >>> from pathlib import Path
    >>> from cryptography import x509
    >>> from cryptography.hazmat.primitives import hashes, serialization
    >>> from cryptography.hazmat.primitives.asymmetric import rsa
    >>> from core.security.ca import CertificateAuthority
    >>> from core.security.x509 import identity_from_chain, load_pem_chain
    >>> ca = CertificateAuthority.create(Path(tempfile.mkdtemp()))
    >>> cert, key = ca.issue("alice", kind="user")
    >>> service_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    >>> csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(
    ...     service_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    >>> chain = sign_proxy_request(csr, cert, key)
    >>> identity_from_chain(load_pem_chain(chain)).dn
    '/O=pilotwms/OU=Users/CN=alice'
"""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from core.exceptions import CredentialError
from core.security.x509 import (
    DIRAC_GROUP_OID,
    INHERIT_ALL_POLICY_OID,
    LIMITED_POLICY_OID,
    PROXY_CERT_INFO_OID,
    encode_proxy_cert_info,
    identity_from_chain,
    key_matches,
    load_pem_chain,
    load_pem_key,
)

__all__ = ["load_request", "sign_proxy_request"]

BACKDATE = timedelta(minutes=5)


def _header(der: bytes | bytearray, at: int) -> tuple[int, int, int]:
    """(tag, offset of the content, content length) of the DER element at ``at``."""
    tag, first = der[at], der[at + 1]
    if first < 0x80:
        return tag, at + 2, first
    size = first & 0x7F
    return tag, at + 2 + size, int.from_bytes(der[at + 2:at + 2 + size], "big")


def load_request(csr_pem: bytes) -> x509.CertificateSigningRequest:
    """The CSR, its signature checked. A-REX 6 writes version 2 ("Unknown (2)") in its
    delegation requests, which ``cryptography`` refuses to load: the version is read as 0
    (v1, the only one there is) and the signature is checked over the bytes as sent."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
        if not csr.is_signature_valid:
            raise CredentialError("the delegation request's signature is not valid")
        return csr
    except x509.InvalidVersion:
        pass
    except ValueError as exc:
        raise CredentialError(f"the delegation request is not a PEM CSR: {exc}") from None
    try:
        body = b"".join(line for line in csr_pem.strip().splitlines()
                        if not line.startswith(b"-----"))
        der = bytearray(base64.b64decode(body))
        _, info_at, _ = _header(der, 0)          # CertificationRequest ::= SEQUENCE {
        _, version_at, _ = _header(der, info_at)  # certificationRequestInfo SEQUENCE {
        tag, value_at, size = _header(der, version_at)  # version INTEGER
        if tag != 0x02 or size != 1:
            raise ValueError("no version in the request")
        sent = der[value_at]
        der[value_at] = 0
        csr = x509.load_der_x509_csr(bytes(der))
    except (ValueError, IndexError, binascii.Error) as exc:
        raise CredentialError(f"the delegation request is not a PEM CSR: {exc}") from None
    tbs = bytearray(csr.tbs_certrequest_bytes)
    tbs[value_at - info_at] = sent
    public, algorithm = csr.public_key(), csr.signature_hash_algorithm
    try:
        if isinstance(public, rsa.RSAPublicKey) and algorithm is not None:
            public.verify(csr.signature, bytes(tbs), padding.PKCS1v15(), algorithm)
        elif isinstance(public, ec.EllipticCurvePublicKey) and algorithm is not None:
            public.verify(csr.signature, bytes(tbs), ec.ECDSA(algorithm))
        else:
            raise CredentialError("the delegation request has an unsupported key")
    except InvalidSignature:
        raise CredentialError("the delegation request's signature is not valid") from None
    return csr


def sign_proxy_request(csr_pem: bytes, chain_pem: bytes, key_pem: bytes, *,
                       lifetime: timedelta = timedelta(hours=12)) -> bytes:
    """The PEM chain (new proxy certificate, then ``chain_pem``'s certificates up to the EEC)
    that delegates ``chain_pem``'s credential to the holder of the CSR's key."""
    csr = load_request(csr_pem)
    chain = load_pem_chain(chain_pem)
    key = load_pem_key(key_pem)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CredentialError("only RSA and EC keys can sign proxies")
    signer = chain[0]
    if not key_matches(key, signer):
        raise CredentialError("the private key does not belong to the signing certificate")
    ident = identity_from_chain(chain)
    now = datetime.now(timezone.utc)
    not_after = min(now + lifetime, ident.not_after)
    if not_after <= now:
        raise CredentialError("the signing credential has expired")
    serial = secrets.randbelow(2**31 - 1) + 1
    subject = x509.Name([*signer.subject.rdns, x509.RelativeDistinguishedName(
        [x509.NameAttribute(NameOID.COMMON_NAME, str(serial))])])
    policy = LIMITED_POLICY_OID if ident.is_limited_proxy else INHERIT_ALL_POLICY_OID
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer.subject)
        .public_key(csr.public_key())
        .serial_number(serial)
        .not_valid_before(max(now - BACKDATE, signer.not_valid_before_utc))
        .not_valid_after(not_after)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=True,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.UnrecognizedExtension(
            x509.ObjectIdentifier(PROXY_CERT_INFO_OID), encode_proxy_cert_info(policy)),
            critical=True)
    )
    for ext in signer.extensions:
        if ext.oid.dotted_string == DIRAC_GROUP_OID:
            builder = builder.add_extension(ext.value, critical=False)
    cert = builder.sign(key, hashes.SHA256())
    pem = serialization.Encoding.PEM
    return cert.public_bytes(pem) + b"".join(
        c.public_bytes(pem) for c in chain[: ident.chain_length])
