"""Tests of core.security.x509: DER helpers, names, PEM, chain identities and verification,
checked against the real ``openssl`` CLI where it helps (the dev CA: test_ca.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from tests.core.security.certs import CraftCert, Cred, Run, chain_of, pem

from core.exceptions import CredentialError, InvalidArgumentError
from core.security.ca import CertificateAuthority
from core.security.proxy import create_proxy
from core.security.x509 import (
    DIRAC_GROUP_OID,
    INDEPENDENT_POLICY_OID,
    INHERIT_ALL_POLICY_OID,
    LIMITED_POLICY_OID,
    PROXY_CERT_INFO_DRAFT_OID,
    PROXY_CERT_INFO_OID,
    ProxyCertInfo,
    X509Identity,
    classify_proxy,
    decode_dirac_group,
    decode_proxy_cert_info,
    der_ia5string,
    der_integer,
    der_length,
    der_oid,
    der_read,
    der_sequence,
    der_tlv,
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


def plus_cn(name: x509.Name, value: str) -> x509.Name:
    extra = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, value)])
    return x509.Name([*name.rdns, extra])


def pci(policy: str = INHERIT_ALL_POLICY_OID, path_len: int | None = None,
        oid: str = PROXY_CERT_INFO_OID, critical: bool = True,
        ) -> tuple[x509.ExtensionType, bool]:
    value = encode_proxy_cert_info(policy, path_len)
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value), critical


def group_ext(group: str) -> tuple[x509.ExtensionType, bool]:
    oid = x509.ObjectIdentifier(DIRAC_GROUP_OID)
    return x509.UnrecognizedExtension(oid, der_ia5string(group)), False


def user_key(cred: Cred) -> rsa.RSAPrivateKey:
    key = load_pem_key(cred.key_pem)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


# -- DER ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "expected"),
    [(0, "00"), (127, "7f"), (128, "8180"), (255, "81ff"), (256, "820100"),
     (65536, "83010000")],
)
def test_der_length_short_and_long_forms(length: int, expected: str) -> None:
    assert der_length(length).hex() == expected
    # and the reader agrees with the writer
    assert der_read(der_tlv(0x04, b"x" * length)) == [(0x04, b"x" * length)]


def test_der_length_refuses_negative() -> None:
    with pytest.raises(InvalidArgumentError):
        der_length(-1)


@pytest.mark.parametrize(
    ("dotted", "expected"),
    [
        ("2.5.4.3", "0603550403"),
        ("1.2.840.113549", "06062a864886f70d"),
        ("1.3.6.1.5.5.7.1.14", "06082b0601050507010e"),
        ("2.999.3", "0603883703"),  # the X.690 example with a first arc above 39
        ("1.2.42.42", "06032a2a2a"),
    ],
)
def test_der_oid_known_encodings(dotted: str, expected: str) -> None:
    assert der_oid(dotted).hex() == expected
    # decoding back through a ProxyCertInfo
    assert decode_proxy_cert_info(der_sequence(der_sequence(der_oid(dotted)))).policy_language \
        == dotted


@pytest.mark.parametrize("dotted", ["1", "3.1", "1.40", "a.b", "1.2.-3", ""])
def test_der_oid_refuses_invalid(dotted: str) -> None:
    with pytest.raises(InvalidArgumentError):
        der_oid(dotted)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, "020100"), (127, "02017f"), (128, "02020080"), (256, "02020100"),
     (-1, "0201ff"), (-128, "020180"), (-129, "0202ff7f")],
)
def test_der_integer(value: int, expected: str) -> None:
    assert der_integer(value).hex() == expected


def test_proxy_cert_info_encoding_exact_bytes() -> None:
    assert encode_proxy_cert_info().hex() == "300c300a06082b06010505071501"
    assert encode_proxy_cert_info(LIMITED_POLICY_OID, 0).hex() == (
        "3012020100300d060b2b060104019b5001010109"
    )
    with pytest.raises(InvalidArgumentError):
        encode_proxy_cert_info(path_len=-1)


def test_proxy_cert_info_matches_openssl_asn1parse(tmp_path: Path, openssl: Run) -> None:
    der = tmp_path / "pci.der"
    der.write_bytes(encode_proxy_cert_info(INHERIT_ALL_POLICY_OID, 3, b"abc"))
    out = openssl("asn1parse", "-inform", "DER", "-in", der)
    assert out.returncode == 0, out.stderr
    lines = [line.split(":", 1)[1].split() for line in out.stdout.splitlines()]
    assert lines == [
        ["d=0", "hl=2", "l=", "20", "cons:", "SEQUENCE"],
        ["d=1", "hl=2", "l=", "1", "prim:", "INTEGER", ":03"],
        ["d=1", "hl=2", "l=", "15", "cons:", "SEQUENCE"],
        ["d=2", "hl=2", "l=", "8", "prim:", "OBJECT", ":Inherit", "all"],
        ["d=2", "hl=2", "l=", "3", "prim:", "OCTET", "STRING", ":abc"],
    ]
    der.write_bytes(encode_proxy_cert_info(LIMITED_POLICY_OID))
    out = openssl("asn1parse", "-inform", "DER", "-in", der)
    assert "OBJECT            :1.3.6.1.4.1.3536.1.1.1.9" in out.stdout


def test_ia5string_matches_openssl_asn1parse(tmp_path: Path, openssl: Run) -> None:
    der = tmp_path / "group.der"
    der.write_bytes(der_ia5string("dirac_user"))
    out = openssl("asn1parse", "-inform", "DER", "-in", der)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0:d=0", "hl=2", "l=", "10", "prim:", "IA5STRING",
                                  ":dirac_user"]
    long_group = "g" * 200  # long-form length
    der.write_bytes(der_ia5string(long_group))
    out = openssl("asn1parse", "-inform", "DER", "-in", der)
    assert out.stdout.split()[2:4] == ["l=", "200"] and f":{long_group}" in out.stdout


def test_proxy_cert_info_round_trip_and_draft_layout() -> None:
    info = decode_proxy_cert_info(encode_proxy_cert_info(LIMITED_POLICY_OID, 5, b"pol"))
    assert info == ProxyCertInfo(LIMITED_POLICY_OID, 5, b"pol")
    # GSI-3 draft: policy first, then [1] EXPLICIT INTEGER
    draft = der_sequence(der_sequence(der_oid(INHERIT_ALL_POLICY_OID)), der_tlv(0xA1,
                                                                                der_integer(2)))
    assert decode_proxy_cert_info(draft) == ProxyCertInfo(INHERIT_ALL_POLICY_OID, 2)


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\x04\x00",  # not a SEQUENCE
        der_sequence(der_integer(1)),  # no policy
        der_sequence(der_sequence(der_integer(1))),  # policy without language
        der_sequence(der_tlv(0x05, b"")),  # unexpected element
        b"\x30\x05\x30",  # truncated
        b"\x30\x85\x00\x00\x00\x00\x01",  # absurd length
    ],
)
def test_proxy_cert_info_refuses_garbage(value: bytes) -> None:
    with pytest.raises(CredentialError):
        decode_proxy_cert_info(value)


def test_dirac_group_decoding_variants() -> None:
    assert decode_dirac_group(der_ia5string("lhcb_user")) == "lhcb_user"
    assert decode_dirac_group(der_tlv(0x0C, b"utf8_group")) == "utf8_group"
    assert decode_dirac_group(b"bare_group") == "bare_group"  # old tools: no DER wrapping
    for bad in (der_ia5string("bad\ngroup"), der_ia5string(" "), b"\xff\xfe"):
        with pytest.raises(CredentialError):
            decode_dirac_group(bad)
    with pytest.raises(InvalidArgumentError):
        der_ia5string("grüppe")


# -- names and PEM -----------------------------------------------------------------------------


def test_dn_string_matches_openssl_compat_format(
    tmp_path: Path, dev_ca: CertificateAuthority, craft_cert: CraftCert, openssl: Run
) -> None:
    attr = x509.NameAttribute
    name = x509.Name([
        x509.RelativeDistinguishedName([attr(NameOID.DOMAIN_COMPONENT, "ch")]),
        x509.RelativeDistinguishedName([attr(NameOID.DOMAIN_COMPONENT, "cern")]),
        x509.RelativeDistinguishedName([attr(NameOID.COUNTRY_NAME, "CH")]),
        x509.RelativeDistinguishedName([attr(NameOID.STATE_OR_PROVINCE_NAME, "Geneva")]),
        x509.RelativeDistinguishedName([attr(NameOID.LOCALITY_NAME, "Meyrin")]),
        x509.RelativeDistinguishedName([attr(NameOID.ORGANIZATION_NAME, "CERN")]),
        x509.RelativeDistinguishedName([attr(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                             "Organic Units")]),
        x509.RelativeDistinguishedName([attr(NameOID.COMMON_NAME, "alice"),
                                        attr(NameOID.USER_ID, "alice01")]),
        x509.RelativeDistinguishedName([attr(NameOID.EMAIL_ADDRESS, "alice@cern.ch")]),
        x509.RelativeDistinguishedName([attr(NameOID.SERIAL_NUMBER, "1234")]),
    ])
    cert = craft_cert(subject=name, issuer=dev_ca.cert.subject, signer_key=dev_ca.key)
    path = tmp_path / "c.pem"
    path.write_bytes(pem(cert))
    out = openssl("x509", "-in", path, "-noout", "-subject", "-nameopt", "compat")
    assert out.returncode == 0, out.stderr
    expected = out.stdout.strip().removeprefix("subject=")
    # OpenSSL sorts the members of a multi-valued RDN by DER; so does cryptography
    assert dn_string(cert.subject) == expected
    assert dn_string(cert.subject).startswith("/DC=ch/DC=cern/C=CH/ST=Geneva/L=Meyrin/O=CERN/")
    assert "/emailAddress=alice@cern.ch/serialNumber=1234" in dn_string(cert.subject)
    odd = x509.Name([attr(x509.ObjectIdentifier("1.2.3.4"), "x")])
    assert dn_string(odd) == "/1.2.3.4=x"


def test_load_pem_chain_keeps_order_and_skips_keys(group_proxy: Cred, user_cred: Cred) -> None:
    chain = load_pem_chain(group_proxy.cert_pem)
    assert len(chain) == 2
    assert chain[1] == chain_of(user_cred)[0]
    assert dn_string(chain[0].issuer) == dn_string(chain[1].subject)
    assert load_pem_chain(group_proxy.cert_pem.decode()) == chain  # type: ignore[arg-type]


def test_load_pem_chain_errors(user_cred: Cred) -> None:
    with pytest.raises(CredentialError, match="no PEM certificate"):
        load_pem_chain(user_cred.key_pem)
    broken = user_cred.cert_pem + b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    with pytest.raises(CredentialError, match="#2"):
        load_pem_chain(broken)


def test_load_pem_key_plain_and_inside_proxy_file(group_proxy: Cred, user_cred: Cred) -> None:
    assert key_matches(load_pem_key(user_cred.key_pem), chain_of(user_cred)[0])
    proxy_key = load_pem_key(group_proxy.cert_pem)  # key block after the first certificate
    chain = load_pem_chain(group_proxy.cert_pem)
    assert key_matches(proxy_key, chain[0])
    assert not key_matches(proxy_key, chain[1])


@pytest.mark.parametrize("fmt", ["pkcs8", "traditional"])
def test_load_pem_key_passphrases(user_cred: Cred, fmt: str) -> None:
    key = user_key(user_cred)
    private_format = (serialization.PrivateFormat.PKCS8 if fmt == "pkcs8"
                      else serialization.PrivateFormat.TraditionalOpenSSL)
    encrypted = key.private_bytes(serialization.Encoding.PEM, private_format,
                                  serialization.BestAvailableEncryption(b"s3cret"))
    with pytest.raises(CredentialError, match="passphrase is needed"):
        load_pem_key(encrypted)
    with pytest.raises(CredentialError, match="wrong passphrase"):
        load_pem_key(encrypted, b"wrong")
    assert key_matches(load_pem_key(encrypted, b"s3cret"), chain_of(user_cred)[0])


def test_load_pem_key_errors(user_cred: Cred) -> None:
    with pytest.raises(CredentialError, match="no PEM private key"):
        load_pem_key(user_cred.cert_pem)
    bogus = b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"
    with pytest.raises(CredentialError, match="invalid private key"):
        load_pem_key(bogus)


# -- identities --------------------------------------------------------------------------------


def test_identity_of_plain_certificate(user_cred: Cred, dev_ca: CertificateAuthority) -> None:
    cert = chain_of(user_cred)[0]
    for chain in ([cert], [cert, dev_ca.cert]):  # CAs after the EEC are ignored
        ident = identity_from_chain(chain)
        assert ident == X509Identity(
            dn="/O=pilotwms/OU=Users/CN=alice", issuer_dn="/O=pilotwms/CN=pilotwms dev CA",
            is_proxy=False, is_limited_proxy=False, group=None,
            not_after=cert.not_valid_after_utc, chain_length=1,
        )
    assert ident.not_after.tzinfo is not None


def test_identity_of_proxies(user_cred: Cred, dev_ca: CertificateAuthority) -> None:
    plain = create_proxy(user_cred.cert_pem, user_cred.key_pem)
    ident = identity_from_chain(load_pem_chain(plain))
    assert (ident.dn, ident.is_proxy, ident.is_limited_proxy, ident.group,
            ident.chain_length) == ("/O=pilotwms/OU=Users/CN=alice", True, False, None, 2)
    assert ident.issuer_dn == "/O=pilotwms/CN=pilotwms dev CA"

    grouped = create_proxy(user_cred.cert_pem, user_cred.key_pem, group="dirac_admin")
    assert identity_from_chain(load_pem_chain(grouped) + [dev_ca.cert]).group == "dirac_admin"

    limited = create_proxy(user_cred.cert_pem, user_cred.key_pem, limited=True)
    assert identity_from_chain(load_pem_chain(limited)).is_limited_proxy


def test_identity_of_delegated_proxies(user_cred: Cred) -> None:
    first = create_proxy(user_cred.cert_pem, user_cred.key_pem, group="g1")
    second = create_proxy(first, first)  # no group: inherited from below
    ident = identity_from_chain(load_pem_chain(second))
    assert (ident.group, ident.chain_length, ident.is_limited_proxy) == ("g1", 3, False)
    third = create_proxy(second, second, group="g3", limited=True)
    ident = identity_from_chain(load_pem_chain(third))
    assert (ident.group, ident.chain_length, ident.is_limited_proxy) == ("g3", 4, True)
    assert ident.dn == "/O=pilotwms/OU=Users/CN=alice"


def test_identity_limited_anywhere_in_chain(user_cred: Cred, craft_cert: CraftCert) -> None:
    middle_pem = create_proxy(user_cred.cert_pem, user_cred.key_pem, limited=True)
    middle, user = load_pem_chain(middle_pem)
    middle_key = load_pem_key(middle_pem)
    top = craft_cert(subject=plus_cn(middle.subject, "9"), issuer=middle.subject,
                     signer_key=middle_key, extensions=[pci(INHERIT_ALL_POLICY_OID)])
    info = classify_proxy(top)
    assert info is not None and not info.limited
    assert identity_from_chain([top, middle, user]).is_limited_proxy
    plain = craft_cert(subject=plus_cn(user.subject, "8"), issuer=user.subject,
                       signer_key=user_key(user_cred), extensions=[pci()])
    assert not identity_from_chain([plain, user]).is_limited_proxy


def test_identity_not_after_is_minimum(user_cred: Cred, craft_cert: CraftCert) -> None:
    user = chain_of(user_cred)[0]
    now = datetime.now(timezone.utc).replace(microsecond=0)
    short = craft_cert(subject=plus_cn(user.subject, "1"), issuer=user.subject,
                       signer_key=user_key(user_cred), extensions=[pci()],
                       not_after=now + timedelta(hours=1))
    # a leaf that outlives its signer: the signer's expiry counts
    leaf = craft_cert(subject=plus_cn(short.subject, "2"), issuer=short.subject,
                      signer_key=user_key(user_cred), extensions=[pci()],
                      not_after=now + timedelta(hours=5))
    ident = identity_from_chain([leaf, short, user])
    assert ident.not_after == now + timedelta(hours=1)
    assert ident.seconds_left(now) == 3600
    assert ident.seconds_left(now + timedelta(days=1)) == 0
    assert 3500 < ident.seconds_left() <= 3600
    with pytest.raises(InvalidArgumentError):
        ident.seconds_left(datetime(2030, 1, 1))  # noqa: DTZ001 - naive on purpose


def test_identity_structure_errors(user_cred: Cred, dev_ca: CertificateAuthority,
                                   craft_cert: CraftCert) -> None:
    user = chain_of(user_cred)[0]
    key = user_key(user_cred)
    proxy1 = load_pem_chain(create_proxy(user_cred.cert_pem, user_cred.key_pem))[0]
    with pytest.raises(CredentialError, match="empty"):
        identity_from_chain([])
    with pytest.raises(CredentialError, match="end-entity certificate is missing"):
        identity_from_chain([proxy1])
    with pytest.raises(CredentialError, match="is issued by"):
        identity_from_chain([proxy1, dev_ca.cert])  # the CA is taken as the EEC
    two_cns = plus_cn(plus_cn(user.subject, "1"), "2")
    bad_names = [
        two_cns,
        x509.Name([*user.subject.rdns[:-1], *plus_cn(x509.Name([]), "1").rdns]),
        x509.Name([*user.subject.rdns, x509.RelativeDistinguishedName(
            [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "1")])]),
        x509.Name([*user.subject.rdns, x509.RelativeDistinguishedName(
            [x509.NameAttribute(NameOID.COMMON_NAME, "1"),
             x509.NameAttribute(NameOID.USER_ID, "x")])]),
    ]
    for subject in bad_names:
        cert = craft_cert(subject=subject, issuer=user.subject, signer_key=key,
                          extensions=[pci()])
        with pytest.raises(CredentialError, match="subject must be"):
            identity_from_chain([cert, user])
    cases = [
        ([pci(critical=False)], "must be critical"),
        ([pci(INDEPENDENT_POLICY_OID)], "independent"),
        ([pci("1.2.3.4")], "unsupported proxy policy"),
    ]
    for extensions, message in cases:
        cert = craft_cert(subject=plus_cn(user.subject, "1"), issuer=user.subject,
                          signer_key=key, extensions=extensions)
        with pytest.raises(CredentialError, match=message):
            identity_from_chain([cert, user])


def test_identity_path_length_constraint(user_cred: Cred, craft_cert: CraftCert) -> None:
    user = chain_of(user_cred)[0]
    key = user_key(user_cred)
    no_more = craft_cert(subject=plus_cn(user.subject, "1"), issuer=user.subject,
                         signer_key=key, extensions=[pci(path_len=0)])
    assert identity_from_chain([no_more, user]).is_proxy
    below = craft_cert(subject=plus_cn(no_more.subject, "2"), issuer=no_more.subject,
                       signer_key=key, extensions=[pci()])
    with pytest.raises(CredentialError, match="allows 0 proxies"):
        identity_from_chain([below, no_more, user])


def test_legacy_and_draft_proxies(user_cred: Cred, dev_ca: CertificateAuthority,
                                  craft_cert: CraftCert) -> None:
    user = chain_of(user_cred)[0]
    key = user_key(user_cred)
    gt2 = craft_cert(subject=plus_cn(user.subject, "proxy"), issuer=user.subject,
                     signer_key=key, extensions=[group_ext("old_group")])
    info = classify_proxy(gt2)
    assert info is not None and (info.kind, info.limited) == ("legacy", False)
    ident = identity_from_chain([gt2, user])
    assert (ident.dn, ident.is_proxy, ident.group) == (dn_string(user.subject), True, "old_group")
    gt2_limited = craft_cert(subject=plus_cn(gt2.subject, "limited proxy"), issuer=gt2.subject,
                             signer_key=key)
    assert identity_from_chain([gt2_limited, gt2, user]).is_limited_proxy
    # a host that happens to be called "proxy" is not a proxy
    host = craft_cert(subject=plus_cn(x509.Name([]), "proxy"), issuer=dev_ca.cert.subject,
                      signer_key=dev_ca.key)
    assert classify_proxy(host) is None
    assert identity_from_chain([host]).dn == "/CN=proxy"
    draft_value = der_sequence(der_sequence(der_oid(LIMITED_POLICY_OID)),
                               der_tlv(0xA1, der_integer(1)))
    draft = craft_cert(subject=plus_cn(user.subject, "77"), issuer=user.subject, signer_key=key,
                       extensions=[(x509.UnrecognizedExtension(
                           x509.ObjectIdentifier(PROXY_CERT_INFO_DRAFT_OID), draft_value), True)])
    info = classify_proxy(draft)
    assert info is not None and (info.kind, info.limited, info.path_len) == ("gsi3", True, 1)
    assert identity_from_chain([draft, user]).is_limited_proxy
    assert classify_proxy(user) is None


def test_peer_identity_from_der(group_proxy: Cred) -> None:
    chain = load_pem_chain(group_proxy.cert_pem)
    ders = [cert.public_bytes(serialization.Encoding.DER) for cert in chain]
    ident = peer_identity_from_der(ders)
    assert (ident.dn, ident.group) == ("/O=pilotwms/OU=Users/CN=alice", "dirac_user")
    with pytest.raises(CredentialError, match="#2"):
        peer_identity_from_der([ders[0], b"\x30\x03junk"])


def test_verified_chain_der_adapters(group_proxy: Cred) -> None:
    ders = [c.public_bytes(serialization.Encoding.DER)
            for c in load_pem_chain(group_proxy.cert_pem)]

    class PublicApi:  # Python >= 3.13: SSLSocket.get_verified_chain() returns DER bytes
        def get_verified_chain(self) -> list[bytes]:
            return ders

    assert verified_chain_der(PublicApi()) == ders
    with pytest.raises(InvalidArgumentError):
        verified_chain_der(object())


# -- verification against the CA directory -------------------------------------------------------


def test_verify_chain_accepts_good_chains(user_cred: Cred, group_proxy: Cred,
                                          dev_ca: CertificateAuthority) -> None:
    ca_dir = dev_ca.certificates_dir
    assert verify_chain(chain_of(user_cred), ca_dir).dn == "/O=pilotwms/OU=Users/CN=alice"
    ident = verify_chain(load_pem_chain(group_proxy.cert_pem), ca_dir)
    assert (ident.is_proxy, ident.group) == (True, "dirac_user")
    assert verify_chain(load_pem_chain(group_proxy.cert_pem) + [dev_ca.cert], str(ca_dir)).is_proxy
    deep = create_proxy(group_proxy.cert_pem, group_proxy.key_pem, limited=True)
    ident = verify_chain(load_pem_chain(deep), ca_dir)
    assert (ident.chain_length, ident.is_limited_proxy, ident.group) == (3, True, "dirac_user")


def test_verify_chain_refuses_other_ca(other_user_cred: Cred, dev_ca: CertificateAuthority,
                                       other_ca: CertificateAuthority) -> None:
    proxy = create_proxy(other_user_cred.cert_pem, other_user_cred.key_pem)
    for chain in (load_pem_chain(proxy), load_pem_chain(proxy) + [other_ca.cert]):
        with pytest.raises(CredentialError, match="verification failed"):
            verify_chain(chain, dev_ca.certificates_dir)
    assert verify_chain(load_pem_chain(proxy), other_ca.certificates_dir).is_proxy


def test_verify_chain_refuses_expired_and_future(group_proxy: Cred,
                                                 dev_ca: CertificateAuthority) -> None:
    chain = load_pem_chain(group_proxy.cert_pem)
    later = chain[0].not_valid_after_utc + timedelta(minutes=1)
    with pytest.raises(CredentialError, match="expired"):
        verify_chain(chain, dev_ca.certificates_dir, now=later)
    earlier = chain[0].not_valid_before_utc - timedelta(hours=1)
    with pytest.raises(CredentialError, match="not yet valid"):
        verify_chain(chain, dev_ca.certificates_dir, now=earlier)
    # a non-UTC timezone is converted properly
    cet = timezone(timedelta(hours=1))
    assert verify_chain(chain, dev_ca.certificates_dir,
                        now=(later - timedelta(minutes=10)).astimezone(cet)).is_proxy
    with pytest.raises(InvalidArgumentError):
        verify_chain(chain, dev_ca.certificates_dir, now=datetime(2030, 1, 1))  # noqa: DTZ001


def test_verify_chain_refuses_tampering(user_cred: Cred, group_proxy: Cred,
                                        dev_ca: CertificateAuthority,
                                        craft_cert: CraftCert) -> None:
    ca_dir = dev_ca.certificates_dir
    chain = load_pem_chain(group_proxy.cert_pem)
    der = bytearray(chain[0].public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    with pytest.raises(CredentialError, match="signature"):
        verify_chain([x509.load_der_x509_certificate(bytes(der)), chain[1]], ca_dir)
    # a proxy claiming to come from alice, signed by another key
    user = chain[1]
    forged = craft_cert(subject=plus_cn(user.subject, "5"), issuer=user.subject,
                        signer_key=dev_ca.key, extensions=[pci()])
    assert identity_from_chain([forged, user]).dn == dn_string(user.subject)  # structure only
    with pytest.raises(CredentialError, match="signature"):
        verify_chain([forged, user], ca_dir)
    # an end-entity certificate cannot issue non-proxy certificates
    admin = x509.Name([*user.subject.rdns[:-1], x509.RelativeDistinguishedName(
        [x509.NameAttribute(NameOID.COMMON_NAME, "admin")])])
    fake_eec = craft_cert(subject=admin, issuer=user.subject, signer_key=user_key(user_cred))
    with pytest.raises(CredentialError, match="verification failed"):
        verify_chain([fake_eec, user], ca_dir)
    with pytest.raises(CredentialError, match="does not exist"):
        verify_chain(chain, ca_dir / "missing")
