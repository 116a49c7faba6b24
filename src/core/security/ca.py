"""A small certificate authority for development and tests, and hashed CA directories.

:meth:`CertificateAuthority.create` makes a self-signed RSA CA and writes::

    <directory>/ca.pem                    the CA certificate
    <directory>/ca.key                    its key, mode 600
    <directory>/certificates/ca.pem       the CA certificate again, and
    <directory>/certificates/<hash>.0     a link to it named by OpenSSL's subject hash

so ``<directory>/certificates`` works as OpenSSL's ``capath`` (``X509_CERT_DIR``), like
``/etc/grid-security/certificates``. :meth:`CertificateAuthority.issue` makes user and host
certificates with the extensions grid software expects; :meth:`CertificateAuthority.revoke`
adds one to the CA's revocation list and :meth:`CertificateAuthority.write_crl` publishes it
as ``<directory>/crl.pem`` and ``<directory>/certificates/<hash>.r0`` (where fetch-crl puts
a CA's CRL).

Example::

    >>> import tempfile
    >>> from pathlib import Path
    >>> from core.security.ca import CertificateAuthority
    >>> from core.security.x509 import dn_string, load_pem_chain
    >>> ca = CertificateAuthority.create(Path(tempfile.mkdtemp()))
    >>> cert_pem, key_pem = ca.issue("alice", kind="user")
    >>> dn_string(load_pem_chain(cert_pem)[0].subject)
    '/O=pilotwms/OU=Users/CN=alice'
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto

from core.exceptions import CredentialError, InvalidArgumentError
from core.security.x509 import key_matches, load_pem_chain, load_pem_key

__all__ = [
    "CertificateAuthority",
    "subject_hash",
    "write_hashed_dir",
    "write_pem",
]

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
CRL_FILE = "crl.pem"
CERTIFICATES_DIR = "certificates"

#: clock skew tolerated by making certificates valid a little before "now"
BACKDATE = timedelta(minutes=5)
_LOCAL_NAMES = {"localhost", "127.0.0.1", "::1"}

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def write_pem(path: Path | str, data: bytes, mode: int = 0o600) -> Path:
    """Write ``data`` to ``path`` atomically with permissions ``mode`` (default: private).

    The data goes to a fresh file in the same directory, created private (0600) and
    set to ``mode`` before anything is written, then renamed over ``path``: readers see the
    old or the new content, and a private file is never readable by others, even briefly.
    A symlink at ``path`` is replaced, not followed.
    """
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return target


def subject_hash(cert: x509.Certificate) -> str:
    """OpenSSL's subject name hash (``openssl x509 -hash``) as 8 hex digits."""
    return f"{crypto.X509.from_cryptography(cert).subject_name_hash():08x}"


def _slug(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    text = str(names[-1].value) if names else subject_hash(cert)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or subject_hash(cert)


def write_hashed_dir(
    ca_certs: Iterable[x509.Certificate],
    directory: Path | str,
    *,
    names: Sequence[str] | None = None,
) -> list[Path]:
    """Add CA certificates to an OpenSSL hashed directory (``capath``).

    Each certificate is written as ``<name>.pem`` (``names`` gives the stems, default: the
    CN made file-safe) with a relative symlink ``<hash>.<n>`` to it; ``n`` is the first free
    index for that hash, or the index already used by the same certificate. Links that
    pointed at a rewritten file for another hash are removed. Returns the PEM paths.
    """
    certs = list(ca_certs)
    if names is not None and len(names) != len(certs):
        raise InvalidArgumentError("names must give one file name per certificate")
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for index, cert in enumerate(certs):
        stem = names[index] if names is not None else _slug(cert)
        if not stem or "/" in stem or stem.startswith("."):
            raise InvalidArgumentError(f"bad certificate file name {stem!r}")
        pem_path = target / f"{stem}.pem"
        digest = subject_hash(cert)
        for link in target.iterdir():  # drop links to the file about to be rewritten
            if link.is_symlink() and os.readlink(link) == pem_path.name:
                if not link.name.startswith(digest + "."):
                    link.unlink()
        write_pem(pem_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        written.append(pem_path)
        der = cert.public_bytes(serialization.Encoding.DER)
        slot = 0
        while True:
            link = target / f"{digest}.{slot}"
            if not link.exists() and not link.is_symlink():
                break
            try:
                same = load_pem_chain(link.read_bytes())[0].public_bytes(
                    serialization.Encoding.DER
                ) == der
            except (OSError, CredentialError):
                same = False
            if same:
                break
            slot += 1
        tmp_link = target / f".{digest}.{slot}.tmp"
        if tmp_link.is_symlink() or tmp_link.exists():
            tmp_link.unlink()
        tmp_link.symlink_to(pem_path.name)
        os.replace(tmp_link, link)
    return written


def _name(*parts: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in parts])


def _alt_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


@dataclass
class CertificateAuthority:
    """A CA certificate and its key; ``directory`` is where it lives, when it was saved."""

    cert: x509.Certificate
    key: SigningKey
    directory: Path | None = None

    @classmethod
    def create(
        cls,
        directory: Path | str,
        name: str = "pilotwms dev CA",
        days: int = 3650,
    ) -> CertificateAuthority:
        """Make a new self-signed CA (RSA 2048) and save it in ``directory``."""
        if days <= 0:
            raise InvalidArgumentError("days must be positive")
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = _name((NameOID.ORGANIZATION_NAME, "pilotwms"), (NameOID.COMMON_NAME, name))
        now = datetime.now(timezone.utc)
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        write_pem(target / CA_KEY_FILE, key_pem, 0o600)
        write_pem(target / CA_CERT_FILE, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        write_hashed_dir([cert], target / CERTIFICATES_DIR, names=["ca"])
        return cls(cert=cert, key=key, directory=target)

    @classmethod
    def load(cls, directory: Path | str) -> CertificateAuthority:
        """Read a CA saved by :meth:`create`."""
        target = Path(directory)
        try:
            cert_pem = (target / CA_CERT_FILE).read_bytes()
            key_pem = (target / CA_KEY_FILE).read_bytes()
        except OSError as exc:
            raise CredentialError(f"cannot read the CA in {target}: {exc}") from None
        cert = load_pem_chain(cert_pem)[0]
        key = load_pem_key(key_pem)
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise CredentialError("the CA key must be an RSA or EC key")
        if not key_matches(key, cert):
            raise CredentialError(f"{target / CA_KEY_FILE} is not the key of the CA certificate")
        return cls(cert=cert, key=key, directory=target)

    @property
    def certificates_dir(self) -> Path:
        """The hashed CA directory (OpenSSL ``capath``) next to the CA files."""
        if self.directory is None:
            raise InvalidArgumentError("this CA was not saved in a directory")
        return self.directory / CERTIFICATES_DIR

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate in PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        common_name: str,
        *,
        kind: Literal["user", "host"],
        days: int = 365,
        organization: str = "pilotwms",
        extra_dns_names: Iterable[str] = (),
        key_size: int = 2048,
    ) -> tuple[bytes, bytes]:
        """Issue a user or host certificate; returns ``(cert PEM, unencrypted key PEM)``.

        User: ``/O=<organization>/OU=Users/CN=<name>``, clientAuth; its keyUsage
        (digitalSignature, keyEncipherment) and ``CA:FALSE`` let it sign RFC 3820 proxies.
        Host: ``/O=<organization>/OU=Hosts/CN=<name>``, serverAuth and clientAuth, with the
        name and ``extra_dns_names`` as subjectAltName (IP addresses become IP entries);
        ``localhost``, ``127.0.0.1`` and ``::1`` are all added when any of them is named.
        The validity never goes beyond the CA's.
        """
        if kind not in ("user", "host"):
            raise InvalidArgumentError(f"kind must be 'user' or 'host', not {kind!r}")
        if not common_name or "/" in common_name or not common_name.isprintable():
            raise InvalidArgumentError(f"invalid common name {common_name!r}")
        if days <= 0:
            raise InvalidArgumentError("days must be positive")
        if key_size < 2048:
            raise InvalidArgumentError("keys shorter than 2048 bits are refused by OpenSSL 3")
        key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
        unit = "Users" if kind == "user" else "Hosts"
        subject = _name(
            (NameOID.ORGANIZATION_NAME, organization),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            (NameOID.COMMON_NAME, common_name),
        )
        now = datetime.now(timezone.utc)
        not_after = min(now + timedelta(days=days), self.cert.not_valid_after_utc)
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if kind == "host":
            usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(max(now - BACKDATE, self.cert.not_valid_before_utc))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
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
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if kind == "host":
            names = [common_name, *extra_dns_names]
            if _LOCAL_NAMES.intersection(names):
                names += sorted(_LOCAL_NAMES)
            unique = list(dict.fromkeys(names))
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_alt_name(name) for name in unique]),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    # -- revocation ------------------------------------------------------------------------------

    def _current_crl(self) -> x509.CertificateRevocationList | None:
        if self.directory is None or not (self.directory / CRL_FILE).exists():
            return None
        try:
            return x509.load_pem_x509_crl((self.directory / CRL_FILE).read_bytes())
        except (OSError, ValueError) as exc:
            raise CredentialError(f"cannot read {self.directory / CRL_FILE}: {exc}") from None

    def revoke(self, cert: x509.Certificate, *, reason: x509.ReasonFlags | None = None,
               when: datetime | None = None, days: float = 30) -> Path:
        """Add ``cert`` (issued by this CA) to the revocation list and publish a new CRL valid
        for ``days``; returns the path of the ``<hash>.r0`` file."""
        if cert.issuer != self.cert.subject:
            raise InvalidArgumentError("this certificate was not issued by this CA")
        current = self._current_crl()
        entries = list(current) if current is not None else []
        if not any(e.serial_number == cert.serial_number for e in entries):
            builder = x509.RevokedCertificateBuilder().serial_number(cert.serial_number) \
                .revocation_date(when or datetime.now(timezone.utc))
            if reason is not None:
                builder = builder.add_extension(x509.CRLReason(reason), critical=False)
            entries.append(builder.build())
        return self.write_crl(entries, days=days)

    def write_crl(self, entries: Iterable[x509.RevokedCertificate] | None = None, *,
                  days: float = 30, this_update: datetime | None = None) -> Path:
        """Publish the CRL (``entries``: default, the current ones) valid from
        ``this_update`` (default: now) for ``days``; a negative ``days`` makes an expired
        CRL, for tests. Returns the path of the ``<hash>.r0`` file."""
        if self.directory is None:
            raise InvalidArgumentError("this CA was not saved in a directory")
        current = self._current_crl()
        if entries is None:
            entries = list(current) if current is not None else []
        number = 1
        if current is not None:
            try:
                number = current.extensions.get_extension_for_class(
                    x509.CRLNumber).value.crl_number + 1
            except x509.ExtensionNotFound:
                pass
        start = this_update or datetime.now(timezone.utc)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(start - BACKDATE if days > 0 else start + timedelta(days=days) * 2)
            .next_update(start + timedelta(days=days))
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
        )
        for entry in entries:
            builder = builder.add_revoked_certificate(entry)
        pem = builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        write_pem(self.directory / CRL_FILE, pem, 0o644)
        target = self.certificates_dir / f"{subject_hash(self.cert)}.r0"
        write_pem(target, pem, 0o644)
        return target
