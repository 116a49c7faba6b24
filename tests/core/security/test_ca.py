"""Tests of core.security.ca: the development CA's files, modes and hashed directory, and the
certificates it issues, checked against the real ``openssl`` CLI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from tests.core.security.certs import CraftCert, Cred, Run, chain_of

from core.exceptions import CredentialError, InvalidArgumentError
from core.security.ca import CertificateAuthority, subject_hash, write_hashed_dir, write_pem
from core.security.x509 import dn_string, key_matches, load_pem_chain

# -- the CA ------------------------------------------------------------------------------------


def test_ca_files_modes_and_hash_link(dev_ca: CertificateAuthority, openssl: Run) -> None:
    assert dev_ca.directory is not None
    ca_dir = dev_ca.directory
    assert (ca_dir / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (ca_dir / "ca.pem").stat().st_mode & 0o777 == 0o644
    out = openssl("x509", "-in", ca_dir / "ca.pem", "-noout", "-hash")
    assert out.returncode == 0, out.stderr
    link = dev_ca.certificates_dir / f"{out.stdout.strip()}.0"
    assert link.is_symlink() and os.readlink(link) == "ca.pem"
    assert load_pem_chain(link.read_bytes()) == [dev_ca.cert]
    assert sorted(p.name for p in dev_ca.certificates_dir.iterdir()) == sorted(
        ["ca.pem", link.name])
    assert subject_hash(dev_ca.cert) == out.stdout.strip()
    bc = dev_ca.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    assert dn_string(dev_ca.cert.subject) == "/O=pilotwms/CN=pilotwms dev CA"


def test_ca_load_round_trip(dev_ca: CertificateAuthority) -> None:
    assert dev_ca.directory is not None
    loaded = CertificateAuthority.load(dev_ca.directory)
    assert loaded.cert == dev_ca.cert
    assert key_matches(loaded.key, dev_ca.cert)
    assert loaded.certificates_dir == dev_ca.certificates_dir


def test_ca_load_errors(tmp_path: Path, dev_ca: CertificateAuthority,
                        other_ca: CertificateAuthority) -> None:
    with pytest.raises(CredentialError, match="cannot read"):
        CertificateAuthority.load(tmp_path / "nothing")
    assert other_ca.directory is not None
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "ca.pem").write_bytes(dev_ca.cert_pem)
    (mixed / "ca.key").write_bytes((other_ca.directory / "ca.key").read_bytes())
    with pytest.raises(CredentialError, match="not the key"):
        CertificateAuthority.load(mixed)


def test_ca_recreate_updates_hashed_dir(tmp_path: Path, openssl: Run) -> None:
    first = CertificateAuthority.create(tmp_path, name="first CA", days=2)
    second = CertificateAuthority.create(tmp_path, name="second CA", days=2)
    links = sorted(p.name for p in second.certificates_dir.iterdir() if p.is_symlink())
    assert links == [f"{subject_hash(second.cert)}.0"]
    assert subject_hash(first.cert) != subject_hash(second.cert)
    cert_pem, _key = second.issue("bob", kind="user", days=1)
    (tmp_path / "bob.pem").write_bytes(cert_pem)
    out = openssl("verify", "-CApath", second.certificates_dir, tmp_path / "bob.pem")
    assert out.returncode == 0, out.stderr
    # a CA created with the same name (same subject hash) reuses the slot for the new cert
    third = CertificateAuthority.create(tmp_path, name="second CA", days=2)
    assert sorted(p.name for p in third.certificates_dir.iterdir() if p.is_symlink()) == links
    out = openssl("verify", "-CApath", third.certificates_dir, tmp_path / "bob.pem")
    assert out.returncode != 0  # bob was signed by the replaced key


def test_write_hashed_dir_several_cas(
    tmp_path: Path, dev_ca: CertificateAuthority, other_ca: CertificateAuthority,
    user_cred: Cred, other_user_cred: Cred, openssl: Run, craft_cert: CraftCert,
    spare_key: rsa.RSAPrivateKey,
) -> None:
    target = tmp_path / "certificates"
    twin_subject = other_ca.cert.subject  # same subject, so same hash, different cert
    twin = craft_cert(subject=twin_subject, issuer=twin_subject, signer_key=spare_key,
                      extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)])
    paths = write_hashed_dir([dev_ca.cert, other_ca.cert, twin], target,
                             names=["dev", "other", "twin"])
    assert [p.name for p in paths] == ["dev.pem", "other.pem", "twin.pem"]
    other_hash = subject_hash(other_ca.cert)
    assert os.readlink(target / f"{other_hash}.0") == "other.pem"
    assert os.readlink(target / f"{other_hash}.1") == "twin.pem"
    # writing again is idempotent
    write_hashed_dir([other_ca.cert], target, names=["other"])
    assert not (target / f"{other_hash}.2").exists()
    for cred in (user_cred, other_user_cred):
        out = openssl("verify", "-CApath", target, cred.cert_path)
        assert out.returncode == 0, out.stderr
    default = write_hashed_dir([dev_ca.cert], tmp_path / "default")
    assert [p.name for p in default] == ["pilotwms_dev_CA.pem"]
    with pytest.raises(InvalidArgumentError):
        write_hashed_dir([dev_ca.cert], target, names=["a", "b"])


def test_write_pem_mode_and_symlink_replacement(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    link = tmp_path / "out.pem"
    link.symlink_to(victim)
    old_umask = os.umask(0)
    try:
        write_pem(link, b"secret", 0o600)
    finally:
        os.umask(old_umask)
    assert not link.is_symlink()
    assert link.read_bytes() == b"secret"
    assert link.stat().st_mode & 0o777 == 0o600
    assert victim.read_bytes() == b"untouched"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert write_pem(tmp_path / "default", b"x").stat().st_mode & 0o777 == 0o600
    assert write_pem(tmp_path / "public", b"x", 0o644).stat().st_mode & 0o777 == 0o644


def test_issue_user_certificate(dev_ca: CertificateAuthority, user_cred: Cred,
                                openssl: Run) -> None:
    cert = chain_of(user_cred)[0]
    assert dn_string(cert.subject) == "/O=pilotwms/OU=Users/CN=alice"
    assert dn_string(cert.issuer) == dn_string(dev_ca.cert.subject)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment
    assert not ku.value.key_cert_sign
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert user_cred.key_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    out = openssl("verify", "-CApath", dev_ca.certificates_dir, "-purpose", "sslclient",
                  user_cred.cert_path)
    assert out.returncode == 0, out.stderr
    out = openssl("verify", "-CApath", dev_ca.certificates_dir, "-purpose", "sslserver",
                  user_cred.cert_path)
    assert out.returncode != 0


def test_issue_host_certificates(dev_ca: CertificateAuthority, host_cred: Cred,
                                 tmp_path: Path, openssl: Run) -> None:
    cert = chain_of(host_cred)[0]
    assert dn_string(cert.subject) == "/O=pilotwms/OU=Hosts/CN=localhost"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert sorted(map(str, san.get_values_for_type(x509.IPAddress))) == ["127.0.0.1", "::1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    out = openssl("verify", "-CApath", dev_ca.certificates_dir, "-purpose", "sslserver",
                  host_cred.cert_path)
    assert out.returncode == 0, out.stderr

    cert_pem, _key = dev_ca.issue("wms.example.org", kind="host",
                                  extra_dns_names=["wms2.example.org", "10.0.0.7"])
    san = load_pem_chain(cert_pem)[0].extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["wms.example.org", "wms2.example.org"]
    assert list(map(str, san.get_values_for_type(x509.IPAddress))) == ["10.0.0.7"]
    path = tmp_path / "h.pem"
    path.write_bytes(cert_pem)
    out = openssl("verify", "-CApath", dev_ca.certificates_dir, "-verify_hostname",
                  "wms2.example.org", path)
    assert out.returncode == 0, out.stderr
    out = openssl("verify", "-CApath", dev_ca.certificates_dir, "-verify_hostname",
                  "localhost", path)
    assert out.returncode != 0


def test_issue_clips_to_ca_validity_and_checks_arguments(tmp_path: Path) -> None:
    short_ca = CertificateAuthority.create(tmp_path, days=2)
    cert = load_pem_chain(short_ca.issue("carol", kind="user", days=365)[0])[0]
    assert cert.not_valid_after_utc == short_ca.cert.not_valid_after_utc
    for bad in ({"kind": "robot"}, {"kind": "user", "days": 0},
                {"kind": "user", "key_size": 1024}):
        with pytest.raises(InvalidArgumentError):
            short_ca.issue("carol", **bad)  # type: ignore[arg-type]
    for name in ("", "a/b", "tab\there"):
        with pytest.raises(InvalidArgumentError):
            short_ca.issue(name, kind="user")
