"""Cloud CE: each pilot is an OpenStack VM whose cloud-init user data runs the pilot.

Settings: ``AuthURL`` (Keystone v3, e.g. ``https://keystone.example.org:5000/v3``), then
either ``ApplicationCredentialID`` + ``ApplicationCredentialSecret`` (or ``...SecretFile``),
or ``Username`` + ``Password`` (or ``PasswordFile``) + ``Project``, with ``UserDomain`` and
``ProjectDomain`` (both "Default"); ``Region`` and ``Interface`` ("public") pick the compute
endpoint of the service catalog, ``ComputeURL`` overrides it; ``Image`` (image ID), ``Flavor``
(flavor ID or name), ``Network`` (network UUID; default ``"auto"``), ``KeyName``,
``Metadata`` (string map), ``MaxLifetime`` (seconds, 86400), ``CADir`` (CAs for TLS; default
the system's), ``Timeout`` (30), ``ConsoleLines`` (1000). References:
``cloud://<Keystone host>/<server id>``.

The wire: ``POST /v3/auth/tokens`` (password or application_credential method; the token is in
``X-Subject-Token``, the catalog in the body; renewed 5 min before ``expires_at`` and after
a 401), Nova ``POST /servers`` (``OpenStack-API-Version: compute 2.37``) with ``user_data``,
``GET /servers/{id}`` (``GET /servers/detail?name=^pilotwms-<CE>-`` when several are
asked), ``DELETE /servers/{id}``, ``POST /servers/{id}/action``
``{"os-getConsoleOutput": {"length": N}}``, ``GET /flavors`` for flavor names.

The user data is a ``#!/bin/sh`` script (cloud-init runs it once, as root, at first boot): it
starts a watchdog that powers the VM off after ``MaxLifetime``, writes the pilot script from a
here-document, runs it, prints ``pilotwms-pilot-exit-code: <n>`` and powers off. Nothing is
fetched from outside. Nova caps ``user_data`` at 65535 bytes after base64; above that it is
gzip-compressed (cloud-init unpacks gzip user data itself), and if that is still too big
:meth:`submit` raises :class:`CEError` naming both sizes.

Statuses: BUILD -> Waiting; ACTIVE (and the other states of a live VM) -> Running; SHUTOFF ->
Done if the console shows exit code 0, else Failed; ERROR -> Failed; a VM older than
``MaxLifetime`` (+5 min) -> deleted, Failed; killed through :meth:`kill` -> Aborted; 404,
DELETED, SOFT_DELETED -> Deleted. A VM found SHUTOFF is deleted at once (stopped VMs still
hold quota); its console output is kept in memory for :meth:`output`.

Example::

    >>> from wms.ce.cloud import nova_status
    >>> [str(nova_status(s)) for s in ("BUILD", "ACTIVE", "ERROR", "DELETED")]
    ['Waiting', 'Running', 'Failed', 'Deleted']
"""

from __future__ import annotations

import base64
import gzip
import logging
import re
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests

from core.db import utcnow
from core.exceptions import ConfigError
from wms.ce.base import CEError, ComputingElement, PilotStatus, embed_env, split_ref

__all__ = ["CloudComputingElement", "nova_status", "user_data"]

log = logging.getLogger("pilotwms.ce.cloud")

#: Nova's limit on the base64-encoded user data
MAX_USER_DATA = 65535
EXIT_MARK = "pilotwms-pilot-exit-code:"
_EXIT = re.compile(r"^" + EXIT_MARK + r" (-?\d+)\s*$", re.MULTILINE)
_TAG = "PILOTWMS_CLOUD_PILOT"
_SERVER_ID = re.compile(r"^[0-9a-fA-F-]{8,64}$")
_GONE = {"DELETED", "SOFT_DELETED"}


def nova_status(status: str, console: str | None = None) -> PilotStatus:
    """The pilot status of a Nova server status (``console`` decides SHUTOFF)."""
    status = status.upper()
    if status == "BUILD":
        return PilotStatus.WAITING
    if status == "ERROR":
        return PilotStatus.FAILED
    if status in _GONE:
        return PilotStatus.DELETED
    if status == "SHUTOFF":
        codes = _EXIT.findall(console or "")
        return PilotStatus.DONE if codes and codes[-1] == "0" else PilotStatus.FAILED
    return PilotStatus.RUNNING


def user_data(script: str, lifetime: int) -> str:
    """The cloud-init user data (a shell script) that runs ``script`` and powers off."""
    if any(line == _TAG for line in script.splitlines()):
        raise ValueError(f"the pilot script contains the line {_TAG}")
    if not script.endswith("\n"):
        script += "\n"
    return (
        "#!/bin/sh\n"
        "# pilotwms: run one pilot, then power the VM off\n"
        f"(sleep {lifetime}; echo 'pilotwms: VM lifetime of {lifetime} s reached'; poweroff) &\n"
        "watchdog=$!\n"
        'd=$(mktemp -d /tmp/pilotwms-vm.XXXXXX) || exit 1\n'
        f"cat > \"$d/pilot.sh\" <<'{_TAG}'\n{script}{_TAG}\n"
        'chmod 700 "$d/pilot.sh"\n'
        '(cd "$d" && ./pilot.sh < /dev/null)\n'
        "code=$?\n"
        f'echo "{EXIT_MARK} $code"\n'
        'kill "$watchdog" 2>/dev/null\n'
        "poweroff\n"
    )


def encode_user_data(text: str) -> str:
    """Base64 user data within Nova's limit: plain if it fits, else gzip (CEError if not)."""
    raw = text.encode()
    encoded = base64.b64encode(raw).decode()
    if len(encoded) <= MAX_USER_DATA:
        return encoded
    packed = base64.b64encode(gzip.compress(raw, 9, mtime=0)).decode()
    if len(packed) <= MAX_USER_DATA:
        return packed
    raise CEError(f"the pilot's user data is {len(encoded)} bytes in base64 ({len(packed)} "
                  f"gzip-compressed); Nova accepts at most {MAX_USER_DATA}")


class CloudComputingElement(ComputingElement):
    TYPE = "Cloud"
    KNOWN_KEYS = frozenset({
        "AuthURL", "ApplicationCredentialID", "ApplicationCredentialSecret",
        "ApplicationCredentialSecretFile", "Username", "Password", "PasswordFile", "Project",
        "UserDomain", "ProjectDomain", "Region", "Interface", "ComputeURL", "Image", "Flavor",
        "Network", "KeyName", "Metadata", "MaxLifetime", "CADir", "Timeout", "ConsoleLines"})

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        super().__init__(name, settings)
        s = self.settings
        self.auth_url = s.get_str("AuthURL").rstrip("/")
        parts = urlsplit(self.auth_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"CE {name}: setting AuthURL must be an http(s) URL")
        if not parts.path.endswith("/v3"):
            raise ConfigError(f"CE {name}: setting AuthURL must be Keystone's /v3 URL")
        self.host = parts.hostname
        self.auth = self._auth_body()
        self.region = s.opt_str("Region")
        self.interface = s.get_str("Interface", "public")
        if self.interface not in ("public", "internal", "admin"):
            raise ConfigError(f"CE {name}: setting Interface must be public, internal or admin")
        self.compute_url = s.opt_str("ComputeURL")
        self.image = s.get_str("Image")
        self.flavor = s.get_str("Flavor")
        self.network = s.get_str("Network", "auto")
        self.key_name = s.opt_str("KeyName")
        self.metadata = s.str_map("Metadata")
        self.lifetime = s.get_int("MaxLifetime", 86400, minimum=60)
        self.timeout = s.get_int("Timeout", 30, minimum=1)
        self.console_lines = s.get_int("ConsoleLines", 1000, minimum=1)
        ca_dir = s.opt_str("CADir")
        if ca_dir is not None and not Path(ca_dir).is_dir():
            raise ConfigError(f"CE {name}: setting CADir: {ca_dir} is not a directory")
        self.verify: str | bool = ca_dir if ca_dir is not None else True
        self.session = requests.Session()
        self._lock = threading.Lock()
        self._token: tuple[str, float, str] | None = None  # token, expiry (monotonic), nova
        self._flavor_id: str | None = None
        self._killed: set[str] = set()
        self._final: dict[str, PilotStatus] = {}
        self._console: dict[str, str] = {}

    def _secret(self, key: str) -> str | None:
        s = self.settings
        direct, file = s.opt_str(key), s.opt_str(key + "File")
        if direct is not None and file is not None:
            raise ConfigError(f"CE {self.name}: give {key} or {key}File, not both")
        if file is not None:
            try:
                return Path(file).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"CE {self.name}: setting {key}File: {exc}") from None
        return direct

    def _auth_body(self) -> dict[str, Any]:
        s = self.settings
        cred_id = s.opt_str("ApplicationCredentialID")
        if cred_id is not None:
            secret = self._secret("ApplicationCredentialSecret")
            if secret is None:
                raise ConfigError(f"CE {self.name}: ApplicationCredentialID needs "
                                  "ApplicationCredentialSecret(File)")
            # an application credential is already scoped to its project
            return {"auth": {"identity": {"methods": ["application_credential"],
                                          "application_credential": {"id": cred_id,
                                                                     "secret": secret}}}}
        user = s.opt_str("Username")
        if user is None:
            raise ConfigError(f"CE {self.name}: needs ApplicationCredentialID or Username")
        password = self._secret("Password")
        if password is None:
            raise ConfigError(f"CE {self.name}: Username needs Password(File)")
        return {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"name": s.get_str("UserDomain", "Default")},
                "password": password}}},
            "scope": {"project": {"name": s.get_str("Project"),
                                  "domain": {"name": s.get_str("ProjectDomain", "Default")}}}}}

    # -- plumbing -------------------------------------------------------------------------

    def _http(self, method: str, url: str, **kw: Any) -> requests.Response:
        try:
            # verify= per request: REQUESTS_CA_BUNDLE would override a session's setting
            return self.session.request(method, url, timeout=self.timeout, verify=self.verify,
                                        **kw)
        except requests.RequestException as exc:
            raise CEError(f"CE {self.name}: {method} {url} failed: {exc}") from None

    def _login(self) -> tuple[str, float, str]:
        reply = self._http("POST", f"{self.auth_url}/auth/tokens", json=self.auth)
        if reply.status_code == 401:
            raise CEError(f"CE {self.name}: Keystone refused the credentials (401)")
        if reply.status_code != 201:
            raise CEError(f"CE {self.name}: Keystone: {reply.status_code} {reply.reason}: "
                          f"{reply.text.strip()[:300]}")
        token = reply.headers.get("X-Subject-Token", "")
        try:
            body = reply.json()["token"]
            expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
            catalog = body.get("catalog", [])
        except (ValueError, KeyError, TypeError) as exc:
            raise CEError(f"CE {self.name}: unexpected Keystone reply: {exc}") from None
        left = (expires - utcnow()).total_seconds()
        return token, time.monotonic() + left, self.compute_url or self._endpoint(catalog)

    def _endpoint(self, catalog: list[dict[str, Any]]) -> str:
        for service in catalog:
            if service.get("type") != "compute":
                continue
            for ep in service.get("endpoints", []):
                if ep.get("interface") == self.interface and (
                        self.region is None or self.region in (ep.get("region_id"),
                                                               ep.get("region"))):
                    return str(ep["url"]).rstrip("/")
        raise CEError(f"CE {self.name}: no {self.interface} compute endpoint"
                      + (f" in region {self.region}" if self.region else "") + " in the catalog")

    def _session_token(self, renew: bool = False) -> tuple[str, str]:
        with self._lock:
            if renew or self._token is None or self._token[1] - time.monotonic() < 300:
                self._token = self._login()
            return self._token[0], self._token[2]

    def _nova(self, method: str, path: str, *, body: Any = None,
              missing_ok: bool = False) -> requests.Response:
        for attempt in (0, 1):
            token, nova = self._session_token(renew=attempt == 1)
            headers = {"X-Auth-Token": token, "Accept": "application/json",
                       "OpenStack-API-Version": "compute 2.37",
                       "X-OpenStack-Nova-API-Version": "2.37"}
            reply = self._http(method, f"{nova}/{path}", json=body, headers=headers)
            if reply.status_code != 401:
                break
        if reply.status_code == 404 and missing_ok:
            return reply
        if reply.status_code in (401, 403):
            raise CEError(f"CE {self.name}: Nova refused us ({reply.status_code}): "
                          f"{reply.text.strip()[:200]}")
        if not reply.ok:
            raise CEError(f"CE {self.name}: {method} {path} -> {reply.status_code} "
                          f"{reply.reason}: {reply.text.strip()[:300]}")
        return reply

    def flavor_id(self) -> str:
        """``Flavor`` as an ID (a name is looked up in ``GET /flavors`` once)."""
        if self._flavor_id is None:
            flavors = self._nova("GET", "flavors").json().get("flavors", [])
            ids = [f["id"] for f in flavors if self.flavor in (f.get("id"), f.get("name"))]
            if len(ids) != 1:
                raise CEError(f"CE {self.name}: flavor {self.flavor!r} "
                              + ("not found" if not ids else "is ambiguous"))
            self._flavor_id = str(ids[0])
        return self._flavor_id

    # -- the interface --------------------------------------------------------------------

    def submit(self, script: str, count: int = 1, *, queue: str, processors: int = 1,
               wall_seconds: int | None = None, memory_mb: int | None = None,
               env: Mapping[str, str] | None = None, gpus: int = 0,
               gpu_model: str | None = None) -> list[str]:
        """One VM per pilot; the flavor sets its size (``processors``/``memory_mb`` are the
        queue's description, checked only for sanity), ``wall_seconds`` shortens the VM's
        lifetime."""
        self.check_submit(script, count, queue, processors, wall_seconds, memory_mb)
        lifetime = min(self.lifetime, wall_seconds or self.lifetime)
        data = encode_user_data(user_data(embed_env(script, env), lifetime))
        flavor = self.flavor_id()
        refs: list[str] = []
        for _ in range(count):
            server: dict[str, Any] = {
                "name": f"pilotwms-{self.name}-{uuid.uuid4().hex[:8]}",
                "imageRef": self.image, "flavorRef": flavor, "user_data": data,
                "networks": self.network if self.network in ("auto", "none")
                else [{"uuid": self.network}],
                "metadata": {**self.metadata, "pilotwms-ce": self.name, "pilotwms-queue": queue},
            }
            if self.key_name:
                server["key_name"] = self.key_name
            try:
                reply = self._nova("POST", "servers", body={"server": server})
                ident = str(reply.json().get("server", {}).get("id", ""))
                if not _SERVER_ID.match(ident):
                    raise CEError(f"CE {self.name}: no server id in Nova's reply")
            except (CEError, ValueError) as exc:
                if not refs:
                    raise CEError(str(exc)) from None
                # the VMs already booting must not be lost: report them
                log.warning("CE %s: %d of %d VMs created: %s", self.name, len(refs), count,
                            exc)
                break
            refs.append(f"cloud://{self.host}/{ident}")
        return refs

    def _own_id(self, ref: str) -> str:
        ident = split_ref(ref, "cloud", self.host)
        if ident is None or not _SERVER_ID.match(ident):
            raise ValueError(f"{ref!r} is not a pilot reference of CE {self.name}")
        return ident

    def _console_of(self, ident: str) -> str:
        reply = self._nova("POST", f"servers/{ident}/action", missing_ok=True,
                           body={"os-getConsoleOutput": {"length": self.console_lines}})
        return "" if reply.status_code == 404 else str(reply.json().get("output") or "")

    def _listed(self) -> tuple[dict[str, dict[str, Any]], bool]:
        """This CE's servers from one ``GET /servers/detail`` (name filter), and whether the
        list is complete (no ``servers_links`` to a next page)."""
        name = "^" + re.escape(f"pilotwms-{self.name}-")
        reply = self._nova("GET", "servers/detail?" + urlencode({"name": name,
                                                                   "limit": "1000"}))
        body = reply.json()
        servers = {str(s.get("id")): s for s in body.get("servers", [])
                   if isinstance(s, dict)}
        more = any(link.get("rel") == "next" for link in body.get("servers_links") or [])
        return servers, not more

    def _one_status(self, ref: str, ident: str, server: dict[str, Any] | None,
                    known: bool) -> PilotStatus:
        """``server`` as listed (``known``: the list was complete, so absent = gone)."""
        if ref in self._final:
            return self._final[ref]
        if ref in self._killed:  # Nova deletes asynchronously: the VM may still show
            return PilotStatus.ABORTED
        if server is None and not known:
            reply = self._nova("GET", f"servers/{ident}", missing_ok=True)
            if reply.status_code != 404:
                server = reply.json().get("server", {})
        if server is None:
            return PilotStatus.DELETED
        status = str(server.get("status", ""))
        result = nova_status(status)
        if status.upper() == "SHUTOFF":
            console = self._console_of(ident)
            result = nova_status(status, console)
            self._console[ref] = console
        elif result in (PilotStatus.WAITING, PilotStatus.RUNNING) and self._too_old(server):
            self._console[ref] = self._console_of(ident) + (
                f"\npilotwms: VM older than MaxLifetime ({self.lifetime} s): deleted\n")
            result = PilotStatus.FAILED
        elif result == PilotStatus.FAILED:
            fault = server.get("fault") or {}
            self._console[ref] = f"Nova fault: {fault.get('code')} {fault.get('message')}\n"
        if result.is_final and result != PilotStatus.DELETED:
            self._nova("DELETE", f"servers/{ident}", missing_ok=True)
            self._final[ref] = result
        return result

    def _too_old(self, server: Mapping[str, Any]) -> bool:
        try:
            created = datetime.fromisoformat(str(server.get("created")).replace("Z", "+00:00"))
        except ValueError:
            return False
        return (utcnow() - created).total_seconds() > self.lifetime + 300

    def status(self, refs: Sequence[str]) -> dict[str, PilotStatus]:
        """One list request for the CE's servers when several are asked (a ``GET`` per
        server otherwise, and for those a truncated list left out)."""
        idents = {ref: split_ref(ref, "cloud", self.host) for ref in refs}
        wanted = {ref: i for ref, i in idents.items() if i is not None and _SERVER_ID.match(i)
                  and ref not in self._final and ref not in self._killed}
        listed: dict[str, dict[str, Any]] = {}
        complete = False
        if len(wanted) > 1:
            listed, complete = self._listed()
        result = {}
        for ref, ident in idents.items():
            if ident is None or not _SERVER_ID.match(ident):
                result[ref] = PilotStatus.DELETED
            else:
                result[ref] = self._one_status(ref, ident, listed.get(ident), complete)
        return result

    def kill(self, refs: Sequence[str]) -> None:
        for ref in refs:
            ident = self._own_id(ref)
            if ref in self._final:
                continue
            reply = self._nova("DELETE", f"servers/{ident}", missing_ok=True)
            if reply.status_code != 404:
                self._killed.add(ref)

    def output(self, ref: str) -> tuple[str, str]:
        """The VM's console log (stdout and stderr of the pilot mixed), and ""."""
        ident = self._own_id(ref)
        if ref in self._console:
            return self._console.pop(ref), ""
        return self._console_of(ident), ""

    def cleanup(self, refs: Sequence[str]) -> None:
        """Delete the VMs and forget them."""
        for ref in refs:
            ident = self._own_id(ref)
            self._nova("DELETE", f"servers/{ident}", missing_ok=True)
            self._final.pop(ref, None)
            self._console.pop(ref, None)
            self._killed.discard(ref)

    def close(self) -> None:
        self.session.close()
