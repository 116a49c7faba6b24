"""Client-side revocation checks: a ``requests`` adapter that refuses a server whose
certificate chain (host certificate, intermediate CAs) is revoked by a CRL of the client's CA
directory, right after the TLS handshake, before any byte of the request is sent.

:class:`~core.rpc.client.RPCClient` mounts it whenever it verifies servers against a CA
directory (``ca_dir``); the CRLs are those of :mod:`core.security.crl` (``<hash>.r0`` files,
reloaded when they change). A refused server is a TLS error for ``requests``
(``requests.exceptions.SSLError``), so the client fails over to its next URL.

Example::

    import requests
    from core.rpc.tls_client import CRLCheckingAdapter
    from core.security.crl import shared_store
    session = requests.Session()
    session.mount("https://", CRLCheckingAdapter(shared_store("/etc/grid-security/certificates")))
"""

from __future__ import annotations

import ssl
from typing import Any

from cryptography import x509
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from core.exceptions import CredentialError
from core.security.crl import CRLStore
from core.security.x509 import verified_chain_der


class RevokedServerError(ssl.SSLError):
    """The server's certificate chain is revoked (or its CA's CRL cannot be used)."""


def _checked_connection(store: CRLStore) -> type[HTTPSConnection]:
    class CRLCheckedConnection(HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            sock: Any = self.sock
            try:
                ders = verified_chain_der(sock)
            except Exception:  # noqa: BLE001 - no verified chain (verify=False): nothing to check
                return
            chain = [x509.load_der_x509_certificate(der) for der in ders]
            try:
                store.check_chain(chain)
            except CredentialError as exc:
                self.close()
                raise RevokedServerError(f"server {self.host}:{self.port} refused: "
                                         f"{exc.message}") from None

    return CRLCheckedConnection


class CRLCheckingAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose HTTPS connections check the server's chain against CRLs."""

    def __init__(self, store: CRLStore, **kwargs: Any) -> None:
        self.store = store
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        connection = _checked_connection(self.store)

        class CheckedPool(HTTPSConnectionPool):
            ConnectionCls = connection

        self.poolmanager.pool_classes_by_scheme = {"http": HTTPConnectionPool,
                                                   "https": CheckedPool}
