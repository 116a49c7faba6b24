"""Certificate revocation lists, as grid sites keep them beside their CAs.

fetch-crl writes each CA's CRL as ``<hash>.r0`` (sometimes ``.r1``...) in the hashed CA
directory, ``<hash>`` being the CA's subject hash. :class:`CRLStore` reads them, checks each
CRL's signature against its CA in the same directory, and answers "is anything in this chain
revoked?" (:meth:`CRLStore.check_chain`). It re-reads the directory when a CRL file appears,
changes or disappears (one ``scandir`` at most every ``reload_seconds``), so a server picks up
what fetch-crl fetched without a restart.

Rules, as the grid's verifiers (Globus GSI, canl) apply them:

* every non-proxy certificate of a chain (the end-entity certificate, i.e. the user, host or
  proxy issuer, and intermediate CAs) is looked up in its issuer's CRL; proxies are not in
  CRLs (their issuer is);
* a CA without a CRL is accepted (CRLs are checked when present);
* an expired CRL (``nextUpdate`` passed) or one not valid yet: ``expired_policy="refuse"``
  (the default) refuses every certificate the CA issued, ``"warn"`` logs and still uses it;
* a CRL whose signature does not verify against its CA (or whose CA is missing) refuses the
  CA's certificates: the list cannot be trusted, so neither can they.

Example::

    >>> import tempfile
    >>> from pathlib import Path
    >>> from core.security.ca import CertificateAuthority
    >>> from core.security.x509 import load_pem_chain
    >>> ca = CertificateAuthority.create(Path(tempfile.mkdtemp()))
    >>> cert = load_pem_chain(ca.issue("mallory", kind="user")[0])
    >>> store = CRLStore(ca.certificates_dir, reload_seconds=0)
    >>> store.check_chain(cert)   # no CRL yet: accepted
    >>> _ = ca.revoke(cert[0])
    >>> store.check_chain(cert)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    core.exceptions.CredentialError: certificate /O=pilotwms/OU=Users/CN=mallory ...
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cryptography import x509

from core.exceptions import CredentialError
from core.security.x509 import dn_string, load_pem_chain

if TYPE_CHECKING:
    from core.config.schema import Config

log = logging.getLogger("pilotwms.crl")

DEFAULT_CA_DIR = "/etc/grid-security/certificates"
ExpiredPolicy = Literal["refuse", "warn"]
_CRL_FILE = re.compile(r"^[0-9a-f]{8}\.r\d+$")
_CA_FILE = re.compile(r"^[0-9a-f]{8}\.\d+$")
#: clock skew tolerated on a CRL's thisUpdate
SKEW = timedelta(minutes=5)


def ca_directory(config: Config) -> Path:
    """``Server.CADir``, else ``$X509_CERT_DIR``, else /etc/grid-security/certificates."""
    if config.server.ca_dir is not None:
        return config.server.ca_dir
    return Path(os.environ.get("X509_CERT_DIR") or DEFAULT_CA_DIR)


@dataclass(frozen=True)
class _List:
    """One CA's revocation list as loaded (or why it cannot be used)."""

    issuer: str
    path: str
    this_update: datetime | None = None
    next_update: datetime | None = None
    #: serial -> revocation time
    revoked: dict[int, datetime] | None = None
    #: set when the list cannot be trusted (bad signature, no CA, unreadable)
    broken: str | None = None


class CRLStore:
    """The CRLs of a hashed CA directory, reloaded when their files change."""

    def __init__(self, ca_dir: str | Path, *, expired_policy: ExpiredPolicy = "refuse",
                 reload_seconds: float = 10.0) -> None:
        if expired_policy not in ("refuse", "warn"):
            raise ValueError(f"expired_policy must be 'refuse' or 'warn', not {expired_policy!r}")
        self.ca_dir = Path(ca_dir)
        self.expired_policy = expired_policy
        self.reload_seconds = reload_seconds
        #: incremented at every reload that changed something
        self.generation = 0
        self._lists: dict[x509.Name, _List] = {}
        self._stamp: tuple[tuple[str, int, int, int], ...] | None = None
        self._checked = float("-inf")
        self._lock = threading.Lock()
        self._warned: set[tuple[str, int]] = set()

    # -- loading --------------------------------------------------------------------------------

    def _scan(self) -> tuple[tuple[str, int, int, int], ...]:
        found = []
        try:
            entries = list(os.scandir(self.ca_dir))
        except OSError:
            return ()
        for entry in entries:
            if _CRL_FILE.match(entry.name):
                try:
                    st = entry.stat()
                except OSError:
                    continue
                found.append((entry.name, st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(sorted(found))

    def reload_if_changed(self, *, force: bool = False) -> bool:
        """Re-read the CRLs if their files changed (checked at most every
        ``reload_seconds`` unless ``force``); True when something was reloaded."""
        now = time.monotonic()
        if not force and now - self._checked < self.reload_seconds:
            return False
        with self._lock:
            if not force and now - self._checked < self.reload_seconds:
                return False
            self._checked = now
            stamp = self._scan()
            if stamp == self._stamp:
                return False
            self._lists = self._load([name for name, *_ in stamp])
            self._stamp = stamp
            self.generation += 1
            self._warned.clear()
        log.info("CRLs of %s loaded: %d CA(s), %d revoked certificate(s)", self.ca_dir,
                 len(self._lists), sum(len(x.revoked or ()) for x in self._lists.values()))
        return True

    def _ca_certs(self, digest: str) -> list[x509.Certificate]:
        certs = []
        for path in sorted(self.ca_dir.glob(f"{digest}.*")):
            if _CA_FILE.match(path.name):
                try:
                    certs.extend(load_pem_chain(path.read_bytes()))
                except (OSError, CredentialError):
                    continue
        return certs

    def _load_one(self, path: Path) -> tuple[x509.Name | None, _List]:
        try:
            data = path.read_bytes()
            crl = (x509.load_pem_x509_crl(data) if b"-----BEGIN" in data
                   else x509.load_der_x509_crl(data))
        except (OSError, ValueError) as exc:
            log.error("cannot read the CRL %s: %s", path, exc)
            return None, _List("?", str(path), broken=f"unreadable CRL {path.name}")
        issuer = dn_string(crl.issuer)
        cas = [ca for ca in self._ca_certs(path.name.split(".")[0]) if ca.subject == crl.issuer]
        if not cas:
            log.error("CRL %s: no CA %s in %s", path, issuer, self.ca_dir)
            return crl.issuer, _List(issuer, str(path), broken="its CA is not in the CA directory")
        if not any(_signed_by(crl, ca) for ca in cas):
            log.error("CRL %s: signature does not verify against %s", path, issuer)
            return crl.issuer, _List(issuer, str(path), broken="its signature does not verify")
        revoked = {entry.serial_number: entry.revocation_date_utc for entry in crl}
        return crl.issuer, _List(issuer, str(path), crl.last_update_utc, crl.next_update_utc,
                                 revoked)

    def _load(self, names: list[str]) -> dict[x509.Name, _List]:
        lists: dict[x509.Name, _List] = {}
        for name in names:
            issuer, loaded = self._load_one(self.ca_dir / name)
            if issuer is None:
                continue
            known = lists.get(issuer)
            # several lists of one CA: a usable one wins, then the most recent
            if known is None or (known.broken and not loaded.broken) or (
                    not loaded.broken and not known.broken and known.this_update
                    and loaded.this_update and loaded.this_update > known.this_update):
                lists[issuer] = loaded
        return lists

    # -- checking -------------------------------------------------------------------------------

    def check_chain(self, chain: Sequence[x509.Certificate], now: datetime | None = None
                    ) -> None:
        """Raise :class:`CredentialError` if a certificate of ``chain`` (leaf first) is
        revoked, or covered by a CRL that cannot be used under the policy."""
        self.reload_if_changed()
        lists = self._lists
        if not lists:
            return
        now = now or datetime.now(timezone.utc)
        for cert in chain:
            # proxies are skipped by the look-up itself: their issuer is a user or host, never
            # a CA with a CRL (and classify_proxy() would cost more than the whole check)
            crl = lists.get(cert.issuer)
            if crl is None or cert.issuer == cert.subject:
                continue
            self._check_one(cert, crl, now)

    def _check_one(self, cert: x509.Certificate, crl: _List, now: datetime) -> None:
        if crl.broken:
            raise CredentialError(f"certificate {dn_string(cert.subject)} refused: the CRL of "
                                  f"{crl.issuer} cannot be trusted ({crl.broken})")
        stale = None
        if crl.next_update is not None and crl.next_update < now:
            stale = f"expired at {crl.next_update:%Y-%m-%d %H:%M:%S} UTC"
        elif crl.this_update is not None and crl.this_update > now + SKEW:
            stale = f"is not valid before {crl.this_update:%Y-%m-%d %H:%M:%S} UTC"
        if stale is not None:
            if self.expired_policy == "refuse":
                raise CredentialError(f"certificate {dn_string(cert.subject)} refused: the CRL "
                                      f"of {crl.issuer} {stale} (fetch-crl must refresh "
                                      f"{crl.path})")
            key = (crl.path, self.generation)
            if key not in self._warned:
                self._warned.add(key)
                log.warning("the CRL of %s %s; still used (CRL expired policy: warn)",
                            crl.issuer, stale)
        when = (crl.revoked or {}).get(cert.serial_number)
        if when is not None:
            raise CredentialError(
                f"certificate {dn_string(cert.subject)} (serial {cert.serial_number:x}) was "
                f"revoked by {crl.issuer} on {when:%Y-%m-%d %H:%M:%S} UTC")


def _signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    try:
        return crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


_SHARED: dict[tuple[str, str, float], CRLStore] = {}
_SHARED_LOCK = threading.Lock()


def shared_store(ca_dir: str | Path, *, expired_policy: ExpiredPolicy = "refuse",
                 reload_seconds: float = 10.0) -> CRLStore:
    """One store per CA directory and policy in this process (clients share it)."""
    key = (str(Path(ca_dir).resolve()), expired_policy, reload_seconds)
    with _SHARED_LOCK:
        store = _SHARED.get(key)
        if store is None:
            store = _SHARED[key] = CRLStore(ca_dir, expired_policy=expired_policy,
                                            reload_seconds=reload_seconds)
        return store
