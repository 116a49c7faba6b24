"""ARC CE: pilots as grid jobs through A-REX's REST interface (ARC 6.x and 7).

Settings: ``Host`` (required), ``Port`` (443), ``RESTVersion`` ("1.0"), ``CADir`` (required:
the hashed CA directory that signs the CE's host certificate), ``Proxy`` (a proxy or
certificate file: certificate, private key, chain; the X.509 client credential), ``TokenFile``
(ARC 7: a bearer token file, re-read for every request so that it may be refreshed), at least
one of the two; ``Delegation`` (default: true when ``Proxy`` is set), ``DelegationLifetime``
(seconds, 43200) and ``DelegationRenewSeconds`` (10800: renew when less is left),
``Timeout`` (seconds per request, 30), ``XRSL`` (extra xRSL relations appended verbatim).
References: ``arc://<host>/<arc job id>``.

The wire, all under ``https://<Host>:<Port>/arex/rest/<RESTVersion>``:

* ``GET /delegations`` and ``POST /delegations/<id>?action=get``: a delegation of the same
  identity and group left by an earlier process is reused (renewed when short).
* ``POST /delegations?action=new`` -> 201, a PEM CSR, ``Location: .../delegations/<id>``; the
  CE signs it as a proxy of ``Proxy`` (:mod:`wms.ce.delegation`) and ``PUT``\\s the chain to
  ``/delegations/<id>``; ``POST /delegations/<id>?action=renew`` -> a new CSR when it runs
  short. Jobs name it with ``(delegationid=...)``.
* ``POST /jobs?action=new`` with an xRSL description (``Content-Type: application/rsl``) ->
  ``{"job": {"status-code": "201", "reason": ..., "id": ..., "state": "ACCEPTING"}}``; the
  pilot script is then uploaded with ``PUT /jobs/<id>/session/pilot.sh`` (the job waits in
  PREPARING until its declared inputs arrive).
* ``POST /jobs?action=status|info|kill|clean`` with ``{"job": [{"id": ...}, ...]}``: one entry
  per job (a lone job may come back as an object, not a list) with its own ``status-code``;
  404 = no such job. ``info`` gives the GLUE2 ``ComputingActivity`` with ``ExitCode``.
* ``GET /jobs/<id>/session/pilot.out`` and ``pilot.err``: the pilot's stdout/stderr.

REST states -> pilot statuses: ACCEPTING, ACCEPTED, PREPARING, PREPARED, SUBMITTING, QUEUING
-> Waiting; RUNNING, HELD (suspended in the batch system), EXITINGLRMS, OTHER, EXECUTED,
FINISHING -> Running; FINISHED -> Done when ``ExitCode`` is 0, else Failed; FAILED -> Failed;
KILLING, KILLED -> Aborted; WIPED and unknown jobs -> Deleted. (A-REX's internal states
ACCEPTED/PREPARING/SUBMIT/INLRMS/FINISHING/FINISHED/DELETED are what these REST states are
made from: INLRMS splits into QUEUING/RUNNING/HELD/EXITINGLRMS/OTHER/EXECUTED, DELETED is
WIPED.)

Example::

    >>> from wms.ce.arc import rest_status
    >>> [str(rest_status(s)) for s in ("ACCEPTED", "INLRMS", "RUNNING", "KILLED", "WIPED")]
    ['Waiting', 'Running', 'Running', 'Aborted', 'Deleted']
    >>> xrsl_value('a "b" c')
    '"a ""b"" c"'
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests

from core.exceptions import ConfigError, CredentialError
from core.security.x509 import identity_from_chain, load_pem_chain
from wms.ce.base import BatchRefs, CEError, ComputingElement, PilotStatus, embed_env
from wms.ce.delegation import sign_proxy_request

__all__ = ["ARCComputingElement", "rest_status", "xrsl_value"]

log = logging.getLogger("pilotwms.ce.arc")

_WAITING = {"ACCEPTING", "ACCEPTED", "PREPARING", "PREPARED", "SUBMITTING", "SUBMIT",
            "QUEUING"}
_RUNNING = {"RUNNING", "HELD", "EXITINGLRMS", "OTHER", "EXECUTED", "FINISHING", "INLRMS"}
_JOB_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
SCRIPT = "pilot.sh"
STDOUT = "pilot.out"
STDERR = "pilot.err"


def rest_status(state: str, exit_code: int | None = 0) -> PilotStatus:
    """The pilot status of an A-REX REST job state (``exit_code`` only matters when
    FINISHED; None = unknown, counted as success as ARC clients do)."""
    state = state.upper()
    if state in _WAITING:
        return PilotStatus.WAITING
    if state in _RUNNING:
        return PilotStatus.RUNNING
    if state == "FINISHED":
        return PilotStatus.DONE if not exit_code else PilotStatus.FAILED
    if state == "FAILED":
        return PilotStatus.FAILED
    if state in ("KILLING", "KILLED"):
        return PilotStatus.ABORTED
    return PilotStatus.DELETED


def xrsl_value(value: str) -> str:
    """A quoted xRSL string (a double quote inside is doubled)."""
    return '"' + value.replace('"', '""') + '"'


def _entries(body: Any) -> list[dict[str, Any]]:
    """The per-job entries of a REST reply (``{"job": {...}}`` or ``{"job": [...]}``)."""
    if not isinstance(body, dict):
        raise CEError(f"unexpected A-REX reply {str(body)[:200]!r}")
    jobs = body.get("job", [])
    if isinstance(jobs, dict):
        jobs = [jobs]
    if not isinstance(jobs, list) or not all(isinstance(j, dict) for j in jobs):
        raise CEError(f"unexpected A-REX reply {str(body)[:200]!r}")
    return jobs


class ARCComputingElement(BatchRefs, ComputingElement):
    REF_SCHEME = "arc"
    REF_ID = _JOB_ID
    TYPE = "ARC"
    KNOWN_KEYS = frozenset({"Host", "Port", "RESTVersion", "CADir", "Proxy", "TokenFile",
                            "Delegation", "DelegationLifetime", "DelegationRenewSeconds",
                            "Timeout", "XRSL"})

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        super().__init__(name, settings)
        s = self.settings
        self.host = s.get_str("Host")
        if "/" in self.host or ":" in self.host:
            raise ConfigError(f"CE {name}: setting Host must be a host name, not a URL")
        port = s.get_int("Port", 443, minimum=1)
        if port > 65535:
            raise ConfigError(f"CE {name}: setting Port must be <= 65535")
        version = s.get_str("RESTVersion", "1.0")
        self.base_url = f"https://{self.host}:{port}/arex/rest/{version}"
        ca_dir = Path(s.get_str("CADir"))
        if not ca_dir.is_dir():
            raise ConfigError(f"CE {name}: setting CADir: {ca_dir} is not a directory")
        self.proxy = s.opt_str("Proxy")
        self.token_file = s.opt_str("TokenFile")
        if self.proxy is None and self.token_file is None:
            raise ConfigError(f"CE {name}: needs Proxy (X.509) or TokenFile (ARC 7 tokens)")
        if self.proxy is not None:
            self._load_proxy()  # a clear error now rather than at the first submission
        if self.token_file is not None and not Path(self.token_file).is_file():
            raise ConfigError(f"CE {name}: setting TokenFile: {self.token_file} does not exist")
        self.delegate = s.get_bool("Delegation", self.proxy is not None)
        if self.delegate and self.proxy is None:
            raise ConfigError(f"CE {name}: Delegation needs a Proxy to sign with")
        self.delegation_lifetime = s.get_int("DelegationLifetime", 43200, minimum=600)
        self.renew_seconds = s.get_int("DelegationRenewSeconds", 10800, minimum=0)
        self.timeout = s.get_int("Timeout", 30, minimum=1)
        self.extra_xrsl = s.values.get("XRSL", "") or ""
        if not isinstance(self.extra_xrsl, str):
            raise ConfigError(f"CE {name}: setting XRSL must be a string")
        self.ca_dir = str(ca_dir)
        self.session = requests.Session()
        self._lock = threading.Lock()
        self._delegation: tuple[str, float] | None = None  # (id, expiry, monotonic clock)

    # -- plumbing -------------------------------------------------------------------------

    def _load_proxy(self) -> tuple[bytes, float]:
        if self.proxy is None:
            raise CEError(f"CE {self.name}: no Proxy configured")
        try:
            pem = Path(self.proxy).read_bytes()
            ident = identity_from_chain(load_pem_chain(pem))
        except (OSError, CredentialError, ValueError) as exc:
            raise ConfigError(f"CE {self.name}: setting Proxy: cannot load {self.proxy}: "
                              f"{exc}") from None
        if b"PRIVATE KEY-----" not in pem:
            raise ConfigError(f"CE {self.name}: setting Proxy: {self.proxy} holds no "
                              "private key")
        return pem, float(ident.seconds_left())

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.token_file is not None:
            try:
                token = Path(self.token_file).read_text().strip()
            except OSError as exc:
                raise CEError(f"CE {self.name}: cannot read TokenFile: {exc}") from None
            headers["Authorization"] = f"Bearer {token}"
        headers.update(extra or {})
        return headers

    def _request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                 data: bytes | str | None = None, headers: Mapping[str, str] | None = None,
                 missing_ok: bool = False) -> requests.Response:
        url = f"{self.base_url}/{path}"
        try:
            # verify= per request: REQUESTS_CA_BUNDLE would override a session's setting
            reply = self.session.request(method, url, params=params, data=data,
                                         headers=self._headers(headers), timeout=self.timeout,
                                         verify=self.ca_dir, cert=self.proxy)
        except requests.exceptions.SSLError as exc:
            raise CEError(f"CE {self.name}: TLS with {self.host} failed: {exc}") from None
        except requests.RequestException as exc:
            raise CEError(f"CE {self.name}: {method} {url} failed: {exc}") from None
        if reply.status_code == 404 and missing_ok:
            return reply
        if reply.status_code in (401, 403):
            raise CEError(f"CE {self.name}: {self.host} refused us ({reply.status_code} "
                          f"{reply.reason}): {reply.text.strip()[:200]}")
        if not reply.ok:
            raise CEError(f"CE {self.name}: {method} {path} -> {reply.status_code} "
                          f"{reply.reason}: {reply.text.strip()[:300]}")
        return reply

    def _jobs_action(self, action: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        body = json.dumps({"job": [{"id": i} for i in ids]})
        reply = self._request("POST", "jobs", params={"action": action}, data=body,
                              headers={"Content-Type": "application/json"})
        try:
            entries = _entries(reply.json())
        except ValueError:
            raise CEError(f"CE {self.name}: {action}: reply is not JSON") from None
        found = {str(e.get("id")): e for e in entries}
        missing = set(ids) - set(found)
        if missing:  # never take a job for gone because the reply left it out
            raise CEError(f"CE {self.name}: {action}: no answer for {len(missing)} job(s), "
                          f"e.g. {sorted(missing)[0]}")
        return found

    # -- delegation -----------------------------------------------------------------------

    def _sign_and_put(self, delegation_id: str, csr: bytes) -> float:
        pem, left = self._load_proxy()
        lifetime = timedelta(seconds=min(self.delegation_lifetime, max(left, 1.0)))
        try:
            chain = sign_proxy_request(csr, pem, pem, lifetime=lifetime)
        except CredentialError as exc:
            raise CEError(f"CE {self.name}: cannot sign the delegation request: {exc}") from None
        self._request("PUT", f"delegations/{delegation_id}", data=chain,
                      headers={"Content-Type": "application/x-pem-file"})
        return time.monotonic() + lifetime.total_seconds()

    def _existing_delegation(self) -> tuple[str, float] | None:
        """A delegation already on the CE (from an earlier process) of our proxy's identity
        and group, with the most time left: (id, seconds left). At most 20 are looked at."""
        pem, _ = self._load_proxy()
        mine = identity_from_chain(load_pem_chain(pem))
        reply = self._request("GET", "delegations", missing_ok=True)
        try:
            listed = reply.json().get("delegation", []) if reply.status_code == 200 else []
        except ValueError:
            return None
        listed = [listed] if isinstance(listed, dict) else listed
        best: tuple[str, float] | None = None
        for item in listed[:20] if isinstance(listed, list) else []:
            ident = str(item.get("id", "")) if isinstance(item, dict) else ""
            if not _JOB_ID.match(ident):
                continue
            got = self._request("POST", f"delegations/{ident}", params={"action": "get"},
                                missing_ok=True)
            if got.status_code == 404:  # listed but gone: A-REX does that
                continue
            try:
                theirs = identity_from_chain(load_pem_chain(got.content))
            except (CredentialError, ValueError):
                continue
            if (theirs.dn, theirs.group) != (mine.dn, mine.group):
                continue
            left = float(theirs.seconds_left())
            if best is None or left > best[1]:
                best = (ident, left)
        return best

    def delegation_id(self) -> str:
        """A delegation on the CE with at least ``DelegationRenewSeconds`` left."""
        with self._lock:
            if self._delegation is not None:
                ident, expiry = self._delegation
                if expiry - time.monotonic() > self.renew_seconds:
                    return ident
                reply = self._request("POST", f"delegations/{ident}",
                                      params={"action": "renew"}, missing_ok=True)
                if reply.status_code != 404:
                    self._delegation = (ident, self._sign_and_put(ident, reply.content))
                    return ident
            found = self._existing_delegation()
            if found is not None:
                ident, left = found
                if left > self.renew_seconds:
                    self._delegation = (ident, time.monotonic() + left)
                    return ident
                reply = self._request("POST", f"delegations/{ident}",
                                      params={"action": "renew"})
                self._delegation = (ident, self._sign_and_put(ident, reply.content))
                return ident
            reply = self._request("POST", "delegations", params={"action": "new"})
            location = reply.headers.get("Location", "")
            ident = location.rstrip("/").rsplit("/", 1)[-1]
            if not ident or not _JOB_ID.match(ident):
                raise CEError(f"CE {self.name}: no delegation id in Location {location!r}")
            self._delegation = (ident, self._sign_and_put(ident, reply.content))
            return ident

    # -- the interface --------------------------------------------------------------------

    def xrsl(self, *, queue: str, processors: int, wall_seconds: int | None,
             memory_mb: int | None, delegation: str | None) -> str:
        rel = [
            f"(executable={xrsl_value(SCRIPT)})",
            f"(inputfiles=({xrsl_value(SCRIPT)} \"\"))",
            f"(stdout={xrsl_value(STDOUT)})",
            f"(stderr={xrsl_value(STDERR)})",
            # A-REX deletes, when a job ends, every session file not declared as output
            f"(outputfiles=({xrsl_value(STDOUT)} \"\")({xrsl_value(STDERR)} \"\"))",
            f"(jobname={xrsl_value('pilotwms-' + self.name)})",
            f"(queue={xrsl_value(queue)})",
            f"(count={processors})",
            f"(countpernode={processors})",
        ]
        if wall_seconds is not None:  # xRSL times without a unit are minutes
            rel.append(f"(walltime={xrsl_value(str(max(1, math.ceil(wall_seconds / 60))))})")
        if memory_mb is not None:  # xRSL memory is per core (slot), in MB
            rel.append(f"(memory={max(1, math.ceil(memory_mb / processors))})")
        if delegation is not None:
            rel.append(f"(delegationid={xrsl_value(delegation)})")
        return "&" + "\n ".join(rel) + self.extra_xrsl

    def submit(self, script: str, count: int = 1, *, queue: str, processors: int = 1,
               wall_seconds: int | None = None, memory_mb: int | None = None,
               env: Mapping[str, str] | None = None, gpus: int = 0,
               gpu_model: str | None = None) -> list[str]:
        self.check_submit(script, count, queue, processors, wall_seconds, memory_mb)
        text = embed_env(script, env).encode()
        delegation = self.delegation_id() if self.delegate else None
        description = self.xrsl(queue=queue, processors=processors, wall_seconds=wall_seconds,
                                memory_mb=memory_mb, delegation=delegation)
        refs: list[str] = []
        for _ in range(count):
            try:
                refs.append(self._submit_one(description, text))
            except CEError as exc:
                if not refs:
                    raise
                # the pilots already accepted must not be lost: report them
                log.warning("CE %s: %d of %d pilots submitted: %s", self.name, len(refs),
                            count, exc)
                break
        return refs

    def _submit_one(self, description: str, text: bytes) -> str:
        reply = self._request("POST", "jobs", params={"action": "new"},
                              data=description.encode(),
                              headers={"Content-Type": "application/rsl"})
        try:
            [entry] = _entries(reply.json())
        except ValueError:
            raise CEError(f"CE {self.name}: unexpected reply to job submission") from None
        if str(entry.get("status-code")) not in ("200", "201"):
            raise CEError(f"CE {self.name}: job refused: {entry.get('status-code')} "
                          f"{entry.get('reason')}")
        job = str(entry.get("id", ""))
        if not _JOB_ID.match(job):
            raise CEError(f"CE {self.name}: bad job id {job!r} in the reply")
        try:
            self._request("PUT", f"jobs/{job}/session/{SCRIPT}", data=text,
                          headers={"Content-Type": "application/octet-stream"})
        except CEError:
            with contextlib.suppress(CEError):  # the job waits for its input: stop it
                self._jobs_action("kill", [job])
            raise
        return f"arc://{self.host}/{job}"


    def status(self, refs: Sequence[str]) -> dict[str, PilotStatus]:
        ids = self._ids(refs)
        wanted = sorted({j for j in ids.values() if j})
        states: dict[str, str] = {}
        if wanted:
            for job, entry in self._jobs_action("status", wanted).items():
                if str(entry.get("status-code")) == "200":
                    states[job] = str(entry.get("state", ""))
        finished = [j for j, s in states.items() if s.upper() == "FINISHED"]
        codes: dict[str, int | None] = {}
        if finished:
            for job, entry in self._jobs_action("info", finished).items():
                activity = (entry.get("info_document") or {}).get("ComputingActivity") or {}
                code = activity.get("ExitCode")
                codes[job] = int(code) if isinstance(code, int | str) and \
                    str(code).lstrip("-").isdigit() else None
        return {ref: rest_status(states[job], codes.get(job))
                if job is not None and job in states else PilotStatus.DELETED
                for ref, job in ids.items()}

    def kill(self, refs: Sequence[str]) -> None:
        ids = [self._own_id(ref) for ref in refs]
        if ids:  # per-job 404 (unknown) and 409 (already finished) are fine
            self._jobs_action("kill", ids)

    def output(self, ref: str) -> tuple[str, str]:
        job = self._own_id(ref)
        texts = []
        for name in (STDOUT, STDERR):
            reply = self._request("GET", f"jobs/{job}/session/{name}", missing_ok=True)
            texts.append("" if reply.status_code == 404 else reply.content.decode(
                errors="replace"))
        return texts[0], texts[1]

    def cleanup(self, refs: Sequence[str]) -> None:
        """Kill what still runs, then ``clean`` the jobs (their session directories go)."""
        ids = [self._own_id(ref) for ref in refs]
        if ids:
            self._jobs_action("kill", ids)
            self._jobs_action("clean", ids)

    def close(self) -> None:
        self.session.close()
