"""Certificate revocation (issue 16): CRLs in the CA directory (``<hash>.r0``, made here by
``pilotwms ca revoke``, the real command) refuse revoked user, proxy-issuer and host
certificates on TLS connections, for balancer-forwarded certificates and in the login server's
proxy exchange; they are reloaded without a restart; an expired CRL refuses (default) or
warns; clients refuse a server whose host certificate is revoked.

Each test works on its own instance (its own CA), since revoking changes the CA directory.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tests.core.rpc.conftest import ProbeService
from tests.support.servers import ThreadedServer

from core.cli.instance import Instance, create_instance
from core.config.loader import load_config
from core.config.schema import Config
from core.exceptions import CredentialError, ServiceUnavailableError
from core.rpc.client import Credentials, RPCClient
from core.rpc.server import server_ssl_context
from core.security.ca import CertificateAuthority, write_pem
from core.security.crl import CRLStore
from core.security.proxy import create_proxy
from core.security.x509 import load_pem_chain

REPO = Path(__file__).resolve().parents[3]


@dataclass
class PKI:
    inst: Instance
    ca: CertificateAuthority
    config: Config
    base: Path

    def user(self, name: str) -> tuple[Path, Path]:
        return self.inst.user_cert(name)

    def issue(self, name: str, kind: str = "user") -> tuple[Path, Path]:
        cert, key = self.ca.issue(name, kind=kind)  # type: ignore[arg-type]
        return (write_pem(self.base / f"{name}.pem", cert, 0o644),
                write_pem(self.base / f"{name}.key", key))

    def proxy(self, who: tuple[Path, Path] | Path, group: str | None = None) -> Path:
        """A proxy of a certificate and key, or of a proxy file (delegation)."""
        cert, key = who if isinstance(who, tuple) else (who, who)
        pem = create_proxy(cert.read_bytes(), key.read_bytes(), group=group)
        return write_pem(self.base / f"proxy-{time.monotonic_ns()}.pem", pem)

    def revoke(self, cert: Path, *extra: str) -> None:
        """``pilotwms ca revoke``: the command operators (and these tests) use."""
        subprocess.run([sys.executable, "-m", "core.cli.admin", "ca", "revoke", "--dir",
                        str(self.inst.directory / "ca"), "--cert", str(cert), *extra],
                       check=True, capture_output=True, cwd=REPO, timeout=120)

    def with_server(self, **crls: Any) -> Config:
        data = self.config.model_dump(by_alias=True, exclude_none=True)
        data["Server"]["CRLs"] = {"ReloadSeconds": 0.2, **crls}
        return Config.model_validate(data)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Instance:
    return create_instance(tmp_path_factory.mktemp("crl") / "inst", port=0)


@pytest.fixture
def pki(pristine: Instance, tmp_path: Path) -> PKI:
    """A copy of the module's instance (CA included): revocations stay in this test."""
    shutil.copytree(pristine.directory, tmp_path / "inst", symlinks=True)
    inst = Instance(tmp_path / "inst")
    cfg = load_config(inst.config, environ={})
    cfg = cfg.model_copy(update={"database": f"sqlite:///{tmp_path / 'db.sqlite'}"})
    return PKI(inst, CertificateAuthority.load(inst.directory / "ca"), cfg, tmp_path)


def call(server: ThreadedServer, pki: PKI, cert: Any, session: requests.Session | None = None
         ) -> requests.Response:
    cert_arg = tuple(map(str, cert)) if isinstance(cert, tuple) else str(cert)
    return (session or requests).post(f"{server.url}/Test/Probe", data={"method": "users"},
                                      cert=cert_arg, verify=str(pki.inst.ca_dir), timeout=30)


def refused(reply: requests.Response, *words: str) -> bool:
    if reply.status_code != 401:
        return False
    message = reply.json()["Message"]
    return all(word in message for word in words)


def refusal(server: ThreadedServer, pki: PKI, cert: Any) -> requests.Response | None:
    """The reply when it is a 401 (a Response with an error status is falsy)."""
    reply = call(server, pki, cert)
    return reply if reply.status_code == 401 else None


def wait_until(check: Any, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        # not truthiness: a Response with an error status is falsy
        if result not in (None, False, "") or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


@pytest.fixture
def server(pki: PKI) -> Iterator[ThreadedServer]:
    with ThreadedServer(pki.with_server(), [ProbeService]) as srv:
        yield srv


def test_revoked_user_and_proxy_issuer_are_refused(pki: PKI, server: ThreadedServer) -> None:
    mallory = pki.issue("mallory")
    alice = pki.user("alice")
    assert call(server, pki, alice).json() == {"OK": True, "Value": "alice"}
    pki.revoke(mallory[0], "--reason", "key_compromise")
    # a user certificate, and a proxy made from it (the proxy's issuer is revoked)
    for cert in (mallory, pki.proxy(mallory), pki.proxy(pki.proxy(mallory))):
        reply = call(server, pki, cert)
        assert refused(reply, "CN=mallory", "was revoked by /O=pilotwms/CN=pilotwms demo CA"), \
            reply.text
    assert call(server, pki, alice).json()["OK"] is True        # others still served
    assert call(server, pki, pki.proxy(alice, "demo_user")).json()["OK"] is True


def test_revoked_host_certificate_is_refused_as_a_client(pki: PKI,
                                                         server: ThreadedServer) -> None:
    host = pki.issue("localhost", "host")
    whoami = requests.post(f"{server.url}/Test/Probe", data={"method": "hosts"},
                           cert=tuple(map(str, host)), verify=str(pki.inst.ca_dir), timeout=30)
    assert whoami.json()["OK"] is True
    pki.revoke(host[0])
    reply = requests.post(f"{server.url}/Test/Probe", data={"method": "hosts"},
                          cert=tuple(map(str, host)), verify=str(pki.inst.ca_dir), timeout=30)
    assert refused(reply, "CN=localhost", "revoked"), reply.text


def test_crls_are_reloaded_without_a_restart_even_on_open_connections(
        pki: PKI, server: ThreadedServer) -> None:
    alice = pki.user("alice")
    session = requests.Session()          # one keep-alive TLS connection
    assert call(server, pki, alice, session).json()["OK"] is True
    pki.revoke(alice[0])
    assert wait_until(lambda: refused(call(server, pki, alice, session), "revoked")), \
        "the open connection still served a revoked certificate"
    assert refused(call(server, pki, alice), "revoked")        # and new connections
    session.close()


def test_crl_replaced_by_fetch_crl_style_write(pki: PKI, server: ThreadedServer) -> None:
    """fetch-crl rewrites <hash>.r0 in place; a newer list without the entry un-revokes."""
    bob = pki.issue("bob")
    pki.revoke(bob[0])
    assert wait_until(lambda: refused(call(server, pki, bob), "revoked"))
    pki.ca.write_crl([])          # the CA lifted the revocation (certificate hold)
    assert wait_until(lambda: call(server, pki, bob).status_code == 401
                      and "registered user" in call(server, pki, bob).json()["Message"])


def test_expired_crl_refuses_by_default(pki: PKI, server: ThreadedServer) -> None:
    alice = pki.user("alice")
    pki.ca.write_crl([], days=-1)
    reply = wait_until(lambda: refusal(server, pki, alice))
    assert reply is not None
    assert refused(reply, "CRL of /O=pilotwms/CN=pilotwms demo CA expired at", "fetch-crl"), \
        reply.text


def test_expired_crl_warns_when_configured(pki: PKI, caplog: pytest.LogCaptureFixture
                                           ) -> None:
    mallory = pki.issue("mallory")
    pki.revoke(mallory[0], "--days", "-1")         # expired, and mallory in it
    alice = pki.user("alice")
    with caplog.at_level(logging.WARNING, logger="pilotwms.crl"), \
            ThreadedServer(pki.with_server(ExpiredPolicy="warn"), [ProbeService]) as server:
        assert call(server, pki, alice).json()["OK"] is True
        assert refused(call(server, pki, mallory), "revoked")   # still used
    assert any("expired" in r.message and "warn" in r.message for r in caplog.records)


def test_untrusted_crl_refuses_its_ca(pki: PKI, server: ThreadedServer) -> None:
    """A CRL named for our CA but signed by another key cannot be trusted."""
    other = CertificateAuthority.create(pki.base / "other")
    forged = (x509.CertificateRevocationListBuilder().issuer_name(pki.ca.cert.subject)
              .last_update(pki.ca.cert.not_valid_before_utc)
              .next_update(pki.ca.cert.not_valid_after_utc)
              .sign(other.key, pki.ca.cert.signature_hash_algorithm))  # type: ignore[arg-type]
    crl_path = pki.ca.write_crl([])
    crl_path.write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    alice = pki.user("alice")
    reply = wait_until(lambda: refusal(server, pki, alice))
    assert reply is not None and refused(reply, "cannot be trusted", "signature"), reply


def test_balancer_forwarded_revoked_certificate(pki: PKI) -> None:
    data = pki.with_server().model_dump(by_alias=True, exclude_none=True)
    data["Server"]["TrustedBalancers"] = ["127.0.0.0/8"]
    mallory = pki.issue("mallory")
    alice_proxy = pki.proxy(pki.user("alice"))
    with ThreadedServer(Config.model_validate(data), [ProbeService], tls=False) as server:
        def forwarded(pem: Path) -> requests.Response:
            return requests.post(f"{server.url}/Test/Probe", data={"method": "whoami"},
                                 timeout=30, headers={
                                     "X-SSL-CERT": urllib.parse.quote(pem.read_text()),
                                     "X-Ssl_client_verify": "SUCCESS"})
        assert forwarded(alice_proxy).json()["Value"]["username"] == "alice"
        assert forwarded(mallory[0]).status_code in (200, 401)
        pki.revoke(mallory[0])
        assert wait_until(lambda: refused(forwarded(mallory[0]), "revoked"))
        assert forwarded(alice_proxy).json()["OK"] is True


def test_server_with_a_revoked_host_certificate_does_not_start(pki: PKI) -> None:
    cfg = pki.with_server()
    assert cfg.server.host_cert is not None
    pki.revoke(cfg.server.host_cert)
    with pytest.raises(CredentialError, match="CN=localhost.*revoked"):
        server_ssl_context(cfg)


def test_client_refuses_a_revoked_server(pki: PKI, server: ThreadedServer) -> None:
    alice = pki.user("alice")
    client = RPCClient("Test/Probe", urls=[server.url], ca_dir=pki.inst.ca_dir,
                       credentials=Credentials(cert=alice[0], key=alice[1]))
    assert client.call("users") == "alice"
    client.close()
    cfg = pki.with_server()
    assert cfg.server.host_cert is not None
    pki.revoke(cfg.server.host_cert)      # the running server keeps its (now revoked) cert

    def refused_by_client() -> str:
        fresh = RPCClient("Test/Probe", urls=[server.url], ca_dir=pki.inst.ca_dir,
                          credentials=Credentials(cert=alice[0], key=alice[1]))
        try:
            fresh.call("users")
        except ServiceUnavailableError as exc:
            return str(exc)
        finally:
            fresh.close()
        return ""

    message = wait_until(refused_by_client)
    assert "TLS error" in message and "CN=localhost" in message and "revoked" in message


# -- the store on its own ------------------------------------------------------------------------


def test_store_details(pki: PKI) -> None:
    store = CRLStore(pki.inst.ca_dir, reload_seconds=0)
    mallory = load_pem_chain(pki.issue("mallory")[0].read_bytes())
    store.check_chain(mallory)                     # no CRL at all
    assert CRLStore(pki.base / "missing").check_chain(mallory) is None
    path = pki.ca.revoke(mallory[0])
    # DER is read too, and a newer second list (.r1) wins over an older .r0
    crl = x509.load_pem_x509_crl(path.read_bytes())
    path.write_bytes(crl.public_bytes(serialization.Encoding.DER))
    with pytest.raises(CredentialError, match="revoked"):
        store.check_chain(mallory)
    newer = pki.ca.write_crl([])                   # rewrites .r0 (empty, newer)
    older = path.with_suffix(".r1")
    older.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    store.check_chain(mallory)                     # the newest list holds no entry
    assert newer.exists()
    with pytest.raises(ValueError):
        CRLStore(pki.base, expired_policy="ignore")  # type: ignore[arg-type]


def test_login_server_proxy_exchange_refuses_revoked(pki: PKI) -> None:
    """The X509 grant of Framework/Auth maps the chain with the same checks."""
    from tests.support.fullserver import free_port

    from core.auth.grants import X509_GRANT
    from core.auth.service import AuthService
    from core.auth.tables import AUTH_SCHEMA
    from core.db import init_schema, make_engine

    port = free_port()
    data = pki.with_server().model_dump(by_alias=True, exclude_none=True)
    data["Server"]["Port"] = port
    data["Auth"]["Signing"]["Issuer"] = f"https://127.0.0.1:{port}"
    data["Auth"]["Server"] = {"IdPs": {}}
    cfg = Config.model_validate(data)
    init_schema(make_engine(cfg.database_url("Auth")), AUTH_SCHEMA)
    mallory = pki.issue("mallory")
    proxy = pki.proxy(mallory)
    pki.revoke(mallory[0])
    with ThreadedServer(cfg, [AuthService], port=port) as server:
        reply = requests.post(f"{server.url}/auth/token", timeout=30,
                              data={"client_id": "pilotwms-cli", "grant_type": X509_GRANT},
                              cert=str(proxy), verify=str(pki.inst.ca_dir))
    assert reply.status_code in (400, 401), reply.text
    body = reply.json()
    assert body["error"] == "invalid_grant" and "revoked" in body["error_description"], body
