"""Tests of core.security.proxy: RFC 3820 proxies checked with the real ``openssl`` CLI, real
TLS handshakes (Python's ssl module) and, when installed, the grid's ``voms-clients``."""

from __future__ import annotations

import os
import queue
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from core.exceptions import CredentialError, InvalidArgumentError
from core.security.ca import CertificateAuthority
from core.security.proxy import create_proxy, default_proxy_path, write_proxy_file
from core.security.x509 import (
    DIRAC_GROUP_OID,
    INHERIT_ALL_POLICY_OID,
    LIMITED_POLICY_OID,
    PROXY_CERT_INFO_OID,
    X509Identity,
    decode_proxy_cert_info,
    der_ia5string,
    dn_string,
    encode_proxy_cert_info,
    identity_from_chain,
    key_matches,
    load_pem_chain,
    load_pem_key,
    peer_identity_from_der,
    verified_chain_der,
    verify_chain,
)

Run = Callable[..., subprocess.CompletedProcess[str]]
CraftCert = Callable[..., x509.Certificate]
ALICE = "/O=pilotwms/OU=Users/CN=alice"


class Cred(Protocol):
    cert_pem: bytes
    key_pem: bytes
    cert_path: Path
    key_path: Path


def pem_blocks(data: bytes) -> list[str]:
    return [line.decode()[11:-5] for line in data.splitlines() if line.startswith(b"-----BEGIN")]


def extension(cert: x509.Certificate, oid: str) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid))


def raw_value(ext: x509.Extension[x509.ExtensionType]) -> bytes:
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    return ext.value.value


def save(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def openssl_verify(openssl: Run, ca_dir: Path, proxy_file: Path,
                   *extra: str) -> subprocess.CompletedProcess[str]:
    return openssl("verify", "-CApath", ca_dir, *extra, "-untrusted", proxy_file, proxy_file)


# -- the proxy certificate -----------------------------------------------------------------------


def test_proxy_file_layout(user_cred: Cred, group_proxy: Cred) -> None:
    assert pem_blocks(group_proxy.cert_pem) == ["CERTIFICATE", "RSA PRIVATE KEY", "CERTIFICATE"]
    proxy, user = load_pem_chain(group_proxy.cert_pem)
    assert user == load_pem_chain(user_cred.cert_pem)[0]
    key = load_pem_key(group_proxy.cert_pem)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert key_matches(key, proxy)


def test_proxy_follows_rfc3820(user_cred: Cred) -> None:
    before = datetime.now(timezone.utc).replace(microsecond=0)
    pem = create_proxy(user_cred.cert_pem, user_cred.key_pem, lifetime=timedelta(hours=3))
    after = datetime.now(timezone.utc)
    proxy, user = load_pem_chain(pem)
    serial = proxy.serial_number
    assert 0 < serial < 2**31
    assert proxy.issuer == user.subject
    assert proxy.subject.rdns[:-1] == user.subject.rdns
    assert proxy.subject.rdns[-1] == x509.RelativeDistinguishedName(
        [x509.NameAttribute(NameOID.COMMON_NAME, str(serial))])
    assert dn_string(proxy.subject) == f"{ALICE}/CN={serial}"
    pci = extension(proxy, PROXY_CERT_INFO_OID)
    assert pci.critical
    assert raw_value(pci) == encode_proxy_cert_info(INHERIT_ALL_POLICY_OID)
    assert decode_proxy_cert_info(raw_value(pci)).path_len is None
    ku = proxy.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment
    assert not (ku.value.key_cert_sign or ku.value.data_encipherment)
    assert {ext.oid.dotted_string for ext in proxy.extensions} == {
        PROXY_CERT_INFO_OID, x509.oid.ExtensionOID.KEY_USAGE.dotted_string}
    not_before = max(before - timedelta(minutes=5), user.not_valid_before_utc)
    assert not_before <= proxy.not_valid_before_utc <= after - timedelta(minutes=5)
    assert before + timedelta(hours=3) <= proxy.not_valid_after_utc <= after + timedelta(hours=3)
    other = load_pem_chain(create_proxy(user_cred.cert_pem, user_cred.key_pem))[0]
    assert other.serial_number != serial


def test_group_extension(group_proxy: Cred, tmp_path: Path, openssl: Run) -> None:
    proxy = load_pem_chain(group_proxy.cert_pem)[0]
    ext = extension(proxy, DIRAC_GROUP_OID)
    assert not ext.critical
    assert raw_value(ext) == b"\x16\x0adirac_user" == der_ia5string("dirac_user")
    out = openssl("asn1parse", "-inform", "DER", "-in", save(tmp_path / "g.der", raw_value(ext)))
    assert "IA5STRING         :dirac_user" in out.stdout


def test_openssl_text_shows_proxy_extension(group_proxy: Cred, user_cred: Cred,
                                            tmp_path: Path, openssl: Run) -> None:
    out = openssl("x509", "-in", group_proxy.cert_path, "-noout", "-text")
    assert out.returncode == 0, out.stderr
    lines = [line.strip() for line in out.stdout.splitlines()]
    index = lines.index("Proxy Certificate Information: critical")
    assert lines[index + 1:index + 3] == ["Path Length Constraint: infinite",
                                          "Policy Language: Inherit all"]
    assert "X509v3 Key Usage: critical" in lines
    assert "1.2.42.42:" in lines
    limited = save(tmp_path / "limited.pem",
                   create_proxy(user_cred.cert_pem, user_cred.key_pem, limited=True))
    out = openssl("x509", "-in", limited, "-noout", "-text")
    assert f"Policy Language: {LIMITED_POLICY_OID}" in out.stdout


def test_openssl_verify_accepts_our_proxies(user_cred: Cred, group_proxy: Cred,
                                            dev_ca: CertificateAuthority, tmp_path: Path,
                                            openssl: Run) -> None:
    ca_dir = dev_ca.certificates_dir
    limited = create_proxy(user_cred.cert_pem, user_cred.key_pem, limited=True)
    deep = create_proxy(group_proxy.cert_pem, group_proxy.key_pem)
    deeper = create_proxy(deep, deep, limited=True, lifetime=timedelta(hours=1))
    for name, data in [("plain", group_proxy.cert_pem), ("limited", limited),
                       ("deep", deep), ("deeper", deeper)]:
        path = save(tmp_path / f"{name}.pem", data)
        out = openssl_verify(openssl, ca_dir, path, "-allow_proxy_certs")
        assert out.returncode == 0, (name, out.stdout, out.stderr)
        assert out.stdout.strip() == f"{path}: OK"
    # OpenSSL refuses proxies unless asked to accept them: they really are RFC 3820 proxies
    out = openssl_verify(openssl, ca_dir, tmp_path / "plain.pem")
    assert out.returncode != 0 and "proxy certificates not allowed" in out.stdout + out.stderr


def test_delegation_from_proxy_file(group_proxy: Cred, user_cred: Cred) -> None:
    pem = create_proxy(group_proxy.cert_pem, group_proxy.cert_pem, lifetime=timedelta(days=30))
    assert pem_blocks(pem) == ["CERTIFICATE", "RSA PRIVATE KEY", "CERTIFICATE", "CERTIFICATE"]
    new, first, user = load_pem_chain(pem)
    assert load_pem_chain(group_proxy.cert_pem) == [first, user]
    assert new.issuer == first.subject
    assert new.not_valid_after_utc == first.not_valid_after_utc  # clipped to the signer
    ident = identity_from_chain([new, first, user])
    assert (ident.dn, ident.group, ident.chain_length) == (ALICE, "dirac_user", 3)
    # a CA certificate given after the user certificate is not copied into the proxy file
    with_ca = user_cred.cert_pem + load_pem_chain(group_proxy.cert_pem)[1].public_bytes(
        serialization.Encoding.PEM)
    assert len(load_pem_chain(create_proxy(with_ca, user_cred.key_pem))) == 2


def test_delegation_from_limited_proxy_stays_limited(user_cred: Cred) -> None:
    limited = create_proxy(user_cred.cert_pem, user_cred.key_pem, limited=True)
    child = load_pem_chain(create_proxy(limited, limited))[0]
    pci = decode_proxy_cert_info(raw_value(extension(child, PROXY_CERT_INFO_OID)))
    assert pci.policy_language == LIMITED_POLICY_OID


def test_lifetime_clipped_to_user_certificate(dev_ca: CertificateAuthority) -> None:
    cert_pem, key_pem = dev_ca.issue("shortlived", kind="user", days=1)
    user = load_pem_chain(cert_pem)[0]
    proxy = load_pem_chain(create_proxy(cert_pem, key_pem, lifetime=timedelta(days=2)))[0]
    assert proxy.not_valid_after_utc == user.not_valid_after_utc


def test_encrypted_user_key(user_cred: Cred) -> None:
    key = load_pem_key(user_cred.key_pem)
    encrypted = key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.BestAvailableEncryption(b"grid pass"))
    pem = create_proxy(user_cred.cert_pem, encrypted, password=b"grid pass")
    assert identity_from_chain(load_pem_chain(pem)).dn == ALICE
    assert b"ENCRYPTED" not in pem  # the proxy key is never encrypted
    with pytest.raises(CredentialError, match="passphrase is needed"):
        create_proxy(user_cred.cert_pem, encrypted)


def test_create_proxy_errors(user_cred: Cred, other_user_cred: Cred, dev_ca: CertificateAuthority,
                             craft_cert: CraftCert) -> None:
    with pytest.raises(CredentialError, match="does not belong"):
        create_proxy(user_cred.cert_pem, other_user_cred.key_pem)
    for kwargs in ({"lifetime": timedelta(0)}, {"lifetime": timedelta(hours=-1)},
                   {"key_size": 1024}, {"group": ""}, {"group": "grüppe"},
                   {"group": "two\nlines"}):
        with pytest.raises(InvalidArgumentError):
            create_proxy(user_cred.cert_pem, user_cred.key_pem, **kwargs)  # type: ignore[arg-type]
    # an expired user certificate
    key = load_pem_key(user_cred.key_pem)
    user = load_pem_chain(user_cred.cert_pem)[0]
    now = datetime.now(timezone.utc)
    expired = craft_cert(subject=user.subject, issuer=dev_ca.cert.subject, signer_key=dev_ca.key,
                         public_key=key.public_key(), not_before=now - timedelta(days=2),
                         not_after=now - timedelta(days=1))
    expired_pem = expired.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CredentialError, match="expired"):
        create_proxy(expired_pem, user_cred.key_pem)
    with pytest.raises(CredentialError, match="no PEM certificate"):
        create_proxy(b"", user_cred.key_pem)


def test_no_delegation_beyond_path_length(user_cred: Cred, craft_cert: CraftCert) -> None:
    user = load_pem_chain(user_cred.cert_pem)[0]
    key = load_pem_key(user_cred.key_pem)
    for path_len, subject_cn, message in [(0, "1", "allows 0 proxies"),
                                          (None, "proxy", "legacy")]:
        extensions = []
        if path_len is not None:
            value = encode_proxy_cert_info(INHERIT_ALL_POLICY_OID, path_len)
            extensions = [(x509.UnrecognizedExtension(
                x509.ObjectIdentifier(PROXY_CERT_INFO_OID), value), True)]
        subject = x509.Name([*user.subject.rdns, x509.RelativeDistinguishedName(
            [x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])])
        proxy = craft_cert(subject=subject, issuer=user.subject, signer_key=key,
                           public_key=key.public_key(), extensions=extensions)
        chain = proxy.public_bytes(serialization.Encoding.PEM) + user_cred.cert_pem
        assert identity_from_chain(load_pem_chain(chain)).is_proxy
        with pytest.raises(CredentialError, match=message):
            create_proxy(chain, user_cred.key_pem)


# -- proxy files -------------------------------------------------------------------------------


def test_write_proxy_file_modes(tmp_path: Path, group_proxy: Cred) -> None:
    target = tmp_path / "x509up_test"
    target.write_bytes(b"old")
    target.chmod(0o644)
    old_umask = os.umask(0)
    try:
        assert write_proxy_file(group_proxy.cert_pem, target) == target
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == group_proxy.cert_pem
    assert target.stat().st_mode & 0o777 == 0o600
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    link = tmp_path / "x509up_link"
    link.symlink_to(victim)
    write_proxy_file(group_proxy.cert_pem, link)
    assert victim.read_bytes() == b"keep" and not link.is_symlink()
    with pytest.raises(CredentialError, match="cannot write"):
        write_proxy_file(group_proxy.cert_pem, tmp_path / "missing" / "x509up")


def test_default_proxy_path(tmp_path: Path, group_proxy: Cred,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("X509_USER_PROXY", raising=False)
    assert default_proxy_path() == Path(f"/tmp/x509up_u{os.getuid()}")
    monkeypatch.setenv("X509_USER_PROXY", str(tmp_path / "env_proxy"))
    assert default_proxy_path() == tmp_path / "env_proxy"
    written = write_proxy_file(group_proxy.cert_pem)
    assert written == tmp_path / "env_proxy"
    assert written.stat().st_mode & 0o777 == 0o600


# -- real TLS handshakes -----------------------------------------------------------------------


class TLSServer:
    """A TLS server in a thread that records, per connection, the verified peer chain."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.results: queue.Queue[list[bytes] | Exception] = queue.Queue()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _addr = self.listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(10)
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    self.results.put(verified_chain_der(tls))
                    tls.sendall(b"hello")
            except (ssl.SSLError, OSError) as exc:
                self.results.put(exc)
            finally:
                conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()

    def connect(self, ca_dir: Path, cert_file: Path | None = None,
                key_file: Path | None = None) -> bytes:
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.load_verify_locations(capath=str(ca_dir))
        if cert_file is not None:
            client.load_cert_chain(cert_file, key_file)
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw:
            with client.wrap_socket(raw, server_hostname="localhost") as tls:
                return tls.recv(16)

    def peer(self) -> list[bytes] | Exception:
        return self.results.get(timeout=10)


@contextmanager
def tls_server(host_cred: Cred, ca_dir: Path, allow_proxies: bool = True) -> Iterator[TLSServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(host_cred.cert_path, host_cred.key_path)
    context.load_verify_locations(capath=str(ca_dir))
    context.verify_mode = ssl.CERT_OPTIONAL
    if allow_proxies:
        context.verify_flags |= ssl.VERIFY_ALLOW_PROXY_CERTS
    server = TLSServer(context)
    try:
        yield server
    finally:
        server.close()


def peer_identity(server: TLSServer) -> tuple[X509Identity, int]:
    chain = server.peer()
    assert isinstance(chain, list), chain
    return peer_identity_from_der(chain), len(chain)


def test_tls_with_user_certificate_and_proxies(host_cred: Cred, user_cred: Cred,
                                              group_proxy: Cred, dev_ca: CertificateAuthority,
                                              tmp_path: Path) -> None:
    ca_dir = dev_ca.certificates_dir
    deep = save(tmp_path / "deep.pem",
                create_proxy(group_proxy.cert_pem, group_proxy.key_pem, limited=True))
    with tls_server(host_cred, ca_dir) as server:
        assert server.connect(ca_dir, user_cred.cert_path, user_cred.key_path) == b"hello"
        ident, length = peer_identity(server)
        assert (ident.dn, ident.is_proxy, ident.group, length) == (ALICE, False, None, 2)

        assert server.connect(ca_dir, group_proxy.cert_path) == b"hello"  # cert+key in one file
        ident, length = peer_identity(server)
        assert (ident.dn, ident.is_proxy, ident.group) == (ALICE, True, "dirac_user")
        assert (ident.chain_length, length) == (2, 3)  # the verified chain ends with the CA

        assert server.connect(ca_dir, deep) == b"hello"
        ident, length = peer_identity(server)
        assert (ident.dn, ident.is_limited_proxy, ident.group, length) == (
            ALICE, True, "dirac_user", 4)

        assert server.connect(ca_dir) == b"hello"  # no client certificate at all
        assert server.peer() == []


def expect_refused(server: TLSServer, ca_dir: Path, cert_file: Path,
                   key_file: Path | None = None) -> None:
    try:
        # with TLS 1.3 the client may finish its handshake before the server's alert arrives
        reply = server.connect(ca_dir, cert_file, key_file)
    except (ssl.SSLError, OSError):
        reply = b""
    assert reply == b""
    result = server.peer()
    assert isinstance(result, ssl.SSLError), result


def test_tls_refuses_bad_clients(host_cred: Cred, other_user_cred: Cred, user_cred: Cred,
                                 group_proxy: Cred, dev_ca: CertificateAuthority,
                                 craft_cert: CraftCert, tmp_path: Path) -> None:
    ca_dir = dev_ca.certificates_dir
    other_proxy = save(tmp_path / "other.pem",
                       create_proxy(other_user_cred.cert_pem, other_user_cred.key_pem))
    # alice's key "issues" an ordinary certificate for someone else
    user = load_pem_chain(user_cred.cert_pem)[0]
    key = load_pem_key(user_cred.key_pem)
    admin = x509.Name([*user.subject.rdns[:-1], x509.RelativeDistinguishedName(
        [x509.NameAttribute(NameOID.COMMON_NAME, "admin")])])
    fake = craft_cert(subject=admin, issuer=user.subject, signer_key=key,
                      public_key=key.public_key())
    fake_file = save(tmp_path / "fake.pem", fake.public_bytes(serialization.Encoding.PEM)
                     + user_cred.cert_pem)
    with tls_server(host_cred, ca_dir) as server:
        expect_refused(server, ca_dir, other_user_cred.cert_path, other_user_cred.key_path)
        expect_refused(server, ca_dir, other_proxy)
        expect_refused(server, ca_dir, fake_file, user_cred.key_path)
        assert server.connect(ca_dir, group_proxy.cert_path) == b"hello"  # still serving
        assert isinstance(server.peer(), list)
    with tls_server(host_cred, ca_dir, allow_proxies=False) as server:
        expect_refused(server, ca_dir, group_proxy.cert_path)


# -- interoperability with the grid's voms-clients -----------------------------------------------

@pytest.fixture
def voms_clients() -> None:
    """The grid's voms-clients must be installed (scripts/test.sh does): a missing tool fails."""
    assert shutil.which("voms-proxy-init"), "install voms-clients (apt-get install voms-clients)"


needs_voms = pytest.mark.usefixtures("voms_clients")


def run_voms(*args: str | Path, ca_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "X509_CERT_DIR": str(ca_dir), "HOME": str(ca_dir.parent)}
    env.pop("X509_USER_PROXY", None)
    proc = subprocess.run([*map(str, args)], capture_output=True, timeout=60, check=False,
                          env=env)
    return subprocess.CompletedProcess(proc.args, proc.returncode,
                                       proc.stdout.decode(errors="replace"),
                                       proc.stderr.decode(errors="replace"))


@needs_voms
@pytest.mark.parametrize("limited", [False, True])
def test_voms_proxy_init_proxies_are_understood(user_cred: Cred, dev_ca: CertificateAuthority,
                                                tmp_path: Path, limited: bool) -> None:
    ca_dir = dev_ca.certificates_dir
    out_file = tmp_path / "voms_proxy.pem"
    args = ["voms-proxy-init", "-rfc", "-cert", user_cred.cert_path, "-key", user_cred.key_path,
            "-out", out_file, "-certdir", ca_dir, "-bits", "2048", "-valid", "12:00"]
    out = run_voms(*args, *(["-limited"] if limited else []), ca_dir=ca_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    data = out_file.read_bytes()
    assert pem_blocks(data) == ["CERTIFICATE", "RSA PRIVATE KEY", "CERTIFICATE"]
    ident = verify_chain(load_pem_chain(data), ca_dir)
    assert (ident.dn, ident.is_proxy, ident.is_limited_proxy, ident.group) == (
        ALICE, True, limited, None)
    assert key_matches(load_pem_key(data), load_pem_chain(data)[0])
    # and we can delegate from it
    ours = create_proxy(data, data, group="dirac_user")
    assert verify_chain(load_pem_chain(ours), ca_dir).group == "dirac_user"


@needs_voms
def test_voms_proxy_info_reads_our_proxies(group_proxy: Cred, dev_ca: CertificateAuthority,
                                           tmp_path: Path) -> None:
    ca_dir = dev_ca.certificates_dir
    deep = save(tmp_path / "deep.pem", create_proxy(group_proxy.cert_pem, group_proxy.key_pem))
    for path, depth in ((group_proxy.cert_path, 1), (deep, 2)):
        out = run_voms("voms-proxy-info", "-file", path, "-all", ca_dir=ca_dir)
        assert out.returncode == 0, out.stdout + out.stderr
        fields = {key.strip(): value.strip() for key, _sep, value in
                  (line.partition(":") for line in out.stdout.splitlines()) if _sep}
        assert fields["type"] == "RFC compliant proxy"
        assert fields["strength"] == "2048 bits"
        assert fields["key usage"] == "Digital Signature, Key Encipherment"
        assert fields["subject"].startswith(ALICE + "/CN=")
        assert fields["subject"].count("/CN=") == 1 + depth
        assert fields["issuer"] == fields["subject"].rsplit("/CN=", 1)[0]
