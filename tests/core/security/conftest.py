"""Fixtures for the X509 tests: a dev CA, a second unrelated CA, user and host credentials.

Everything is made once per session (RSA key generation is the slow part) in a temporary
directory; tests that need credentials of their own make them from these CAs.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from core.security.ca import CertificateAuthority
from core.security.proxy import create_proxy, write_proxy_file


@dataclass(frozen=True)
class Cred:
    """A certificate (or proxy chain) and its key, in memory and on disk."""

    cert_pem: bytes
    key_pem: bytes
    cert_path: Path
    key_path: Path


def _save(directory: Path, name: str, cert_pem: bytes, key_pem: bytes) -> Cred:
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / f"{name}.pem"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(key_pem)
    key_path.chmod(0o600)
    return Cred(cert_pem, key_pem, cert_path, key_path)


@pytest.fixture(scope="session")
def x509_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("x509")


@pytest.fixture(scope="session")
def dev_ca(x509_dir: Path) -> CertificateAuthority:
    return CertificateAuthority.create(x509_dir / "ca")


@pytest.fixture(scope="session")
def other_ca(x509_dir: Path) -> CertificateAuthority:
    return CertificateAuthority.create(x509_dir / "other-ca", name="other CA")


@pytest.fixture(scope="session")
def user_cred(dev_ca: CertificateAuthority, x509_dir: Path) -> Cred:
    cert_pem, key_pem = dev_ca.issue("alice", kind="user")
    return _save(x509_dir / "creds", "alice", cert_pem, key_pem)


@pytest.fixture(scope="session")
def host_cred(dev_ca: CertificateAuthority, x509_dir: Path) -> Cred:
    cert_pem, key_pem = dev_ca.issue("localhost", kind="host")
    return _save(x509_dir / "creds", "localhost", cert_pem, key_pem)


@pytest.fixture(scope="session")
def other_user_cred(other_ca: CertificateAuthority, x509_dir: Path) -> Cred:
    cert_pem, key_pem = other_ca.issue("alice", kind="user")
    return _save(x509_dir / "creds", "other-alice", cert_pem, key_pem)


@pytest.fixture(scope="session")
def group_proxy(user_cred: Cred, x509_dir: Path) -> Cred:
    """A proxy of alice with group ``dirac_user``; cert and key paths are the same file."""
    pem = create_proxy(user_cred.cert_pem, user_cred.key_pem, group="dirac_user")
    path = write_proxy_file(pem, x509_dir / "creds" / "x509up_group")
    return Cred(pem, pem, path, path)


@pytest.fixture(scope="session")
def openssl() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the ``openssl`` CLI; returns the completed process (never raises on failure)."""

    def run(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["openssl", *map(str, args)],
            input=stdin,
            capture_output=True,
            timeout=30,
            check=False,
        )
        return subprocess.CompletedProcess(
            proc.args,
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
        )

    return run


@pytest.fixture(scope="session")
def spare_key() -> rsa.RSAPrivateKey:
    """One extra RSA key, reused as the public key of hand-made certificates."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


CraftCert = Callable[..., x509.Certificate]


@pytest.fixture(scope="session")
def craft_cert(spare_key: rsa.RSAPrivateKey) -> CraftCert:
    """Build and sign a certificate by hand, to make odd or broken chains.

    Keywords: ``subject``, ``issuer`` (x509.Name), ``signer_key``, ``public_key`` (default:
    ``spare_key``'s), ``extensions`` (pairs of extension value and criticality),
    ``not_before``, ``not_after``, ``serial``.
    """

    def build(
        *,
        subject: x509.Name,
        issuer: x509.Name,
        signer_key: rsa.RSAPrivateKey,
        public_key: rsa.RSAPublicKey | None = None,
        extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        serial: int = 4242,
    ) -> x509.Certificate:
        now = datetime.now(timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key or spare_key.public_key())
            .serial_number(serial)
            .not_valid_before(not_before or now - timedelta(minutes=5))
            .not_valid_after(not_after or now + timedelta(hours=12))
        )
        for value, critical in extensions:
            builder = builder.add_extension(value, critical=critical)
        return builder.sign(signer_key, hashes.SHA256())

    return build
