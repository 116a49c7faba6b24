"""Creating RFC 3820 proxy certificates, as ``voms-proxy-init -rfc`` and DIRAC do.

A proxy file holds, in this order: the proxy certificate, its unencrypted private key
(``-----BEGIN RSA PRIVATE KEY-----``, the form DIRAC/M2Crypto and the Globus tools read), and
the signing chain (the user certificate, preceded by the signing proxies when delegating from
a proxy). The proxy:

* has subject = issuer subject + ``CN=<serial>``, a random 31-bit serial;
* carries a critical ProxyCertInfo (no path length constraint, policy inherit-all, or the
  GSI limited-proxy policy), a critical keyUsage (digitalSignature, keyEncipherment) and,
  when asked, the DIRAC group as a non-critical ``1.2.42.42`` IA5String;
* is valid from 5 minutes ago and never beyond its signer.

Example::

    >>> import tempfile
    >>> from pathlib import Path
    >>> from core.security.ca import CertificateAuthority
    >>> from core.security.proxy import create_proxy
    >>> from core.security.x509 import identity_from_chain, load_pem_chain
    >>> ca = CertificateAuthority.create(Path(tempfile.mkdtemp()))
    >>> cert_pem, key_pem = ca.issue("alice", kind="user")
    >>> proxy_pem = create_proxy(cert_pem, key_pem, group="dirac_user")
    >>> ident = identity_from_chain(load_pem_chain(proxy_pem))
    >>> ident.dn, ident.group, ident.is_proxy
    ('/O=pilotwms/OU=Users/CN=alice', 'dirac_user', True)
"""

from __future__ import annotations

import os
import secrets
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from core.exceptions import CredentialError, InvalidArgumentError
from core.security.ca import write_pem
from core.security.x509 import (
    DIRAC_GROUP_OID,
    INHERIT_ALL_POLICY_OID,
    LIMITED_POLICY_OID,
    PROXY_CERT_INFO_OID,
    classify_proxy,
    der_ia5string,
    encode_proxy_cert_info,
    identity_from_chain,
    key_matches,
    load_pem_chain,
    load_pem_key,
)

__all__ = ["create_proxy", "default_proxy_path", "write_proxy_file"]

#: clock skew tolerated by making proxies valid a little before "now"
BACKDATE = timedelta(minutes=5)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def create_proxy(
    chain_pem: bytes,
    key_pem: bytes,
    *,
    group: str | None = None,
    lifetime: timedelta = timedelta(hours=24),
    limited: bool = False,
    key_size: int = 2048,
    password: bytes | None = None,
) -> bytes:
    """Sign a new RFC 3820 proxy with the first certificate of ``chain_pem``.

    ``chain_pem`` is a user (or host) certificate, or a proxy file to delegate from (then
    ``key_pem`` may be the same proxy file). ``password`` decrypts ``key_pem``. A proxy made
    from a limited proxy is limited too. Returns the proxy file content (see the module doc).
    """
    if lifetime <= timedelta(0):
        raise InvalidArgumentError("the proxy lifetime must be positive")
    if key_size < 2048:
        raise InvalidArgumentError("proxy keys shorter than 2048 bits are refused by OpenSSL 3")
    if group is not None and (not group or not group.isprintable()):
        raise InvalidArgumentError(f"invalid group name {group!r}")
    group_der = der_ia5string(group) if group is not None else None

    signer_chain = load_pem_chain(chain_pem)
    signer_key = load_pem_key(key_pem, password)
    signer = signer_chain[0]
    if not isinstance(signer_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CredentialError("only RSA and EC keys can sign proxies")
    if not key_matches(signer_key, signer):
        raise CredentialError("the private key does not belong to the signing certificate")
    signer_identity = identity_from_chain(signer_chain)

    # the new proxy sits above the signer's proxies: check their path length constraints
    depth = 0
    for cert in signer_chain:
        info = classify_proxy(cert)
        if info is None:
            break
        if info.kind == "legacy":
            raise CredentialError("cannot make an RFC 3820 proxy from a legacy (GT2) proxy")
        if info.path_len is not None and depth + 1 > info.path_len:
            raise CredentialError(
                f"the signing proxy allows {info.path_len} proxies below it: cannot delegate"
            )
        depth += 1
    limited = limited or signer_identity.is_limited_proxy

    now = datetime.now(timezone.utc)
    not_after = min(now + lifetime, signer_identity.not_after)
    if not_after <= now:
        raise CredentialError("the signing certificate has expired")
    not_before = max(now - BACKDATE, signer.not_valid_before_utc)

    serial = secrets.randbelow(2**31 - 1) + 1
    subject = x509.Name(
        [
            *signer.subject.rdns,
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, str(serial))]),
        ]
    )
    proxy_key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    policy = LIMITED_POLICY_OID if limited else INHERIT_ALL_POLICY_OID
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer.subject)
        .public_key(proxy_key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier(PROXY_CERT_INFO_OID), encode_proxy_cert_info(policy)
            ),
            critical=True,
        )
    )
    if group_der is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(DIRAC_GROUP_OID), group_der),
            critical=False,
        )
    proxy = builder.sign(signer_key, hashes.SHA256())
    key_out = proxy_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    chain_out = b"".join(_pem(cert) for cert in signer_chain[: signer_identity.chain_length])
    return _pem(proxy) + key_out + chain_out


def default_proxy_path() -> Path:
    """``$X509_USER_PROXY``, else the grid's conventional ``/tmp/x509up_u<uid>``."""
    env = os.environ.get("X509_USER_PROXY")
    if env:
        return Path(env)
    # the grid tools use this fixed name whatever $TMPDIR says
    return Path(f"/tmp/x509up_u{os.getuid()}")  # noqa: S108


def write_proxy_file(pem: bytes, path: Path | None = None) -> Path:
    """Write a proxy file (mode 600, never readable by others, atomically); returns its path.

    ``path`` defaults to :func:`default_proxy_path`. An existing file or symlink at the path
    is replaced, not written through.
    """
    target = Path(path) if path is not None else default_proxy_path()
    try:
        return write_pem(target, pem, 0o600)
    except OSError as exc:
        raise CredentialError(f"cannot write the proxy file {target}: {exc}") from None
