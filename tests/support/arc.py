"""A stand-in A-REX (ARC CE) speaking the ARC REST interface 1.0 over real TLS.

What is faithful: the paths (``/arex/rest/1.0/jobs``, ``/jobs/<id>/session/<file>``,
``/delegations``), the ``action`` query parameters, the JSON shapes (``{"job": ...}`` with a
per-job ``status-code``/``reason``/``id``/``state``; a lone job as an object), the REST job
states, xRSL parsing of the relations pilots use, jobs waiting in PREPARING until their
declared inputs are uploaded, CSR-based delegation whose signed chain must verify against the
CA and belong to the caller, X.509 client authentication (proxies allowed) against the test
PKI or ARC 7 bearer tokens, and the job really running (a local process group standing in for
the "fork" batch system) with ``X509_USER_PROXY`` pointing at the delegated proxy in its session
directory. What is not: GLUE2 ``/info`` documents beyond ``ComputingActivity``, ADL, data
staging from URLs, and a real batch system.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tornado.web import Application, RequestHandler

from core.exceptions import PilotWMSError
from core.security.tokens import TokenVerifier
from core.security.x509 import (
    identity_from_chain,
    load_pem_chain,
    verified_chain_der,
    verify_chain,
)
from tests.support.standin import Payload, ThreadedApp

PREFIX = "/arex/rest/1.0"


def parse_xrsl(text: str) -> dict[str, list[Any]]:
    """``&(a="x")(b=("y" "")("z" ""))`` -> ``{"a": ["x"], "b": [["y", ""], ["z", ""]]}``
    (attribute names lower-cased)."""
    pos = 0
    n = len(text)

    def skip() -> None:
        nonlocal pos
        while pos < n and text[pos].isspace():
            pos += 1

    def value() -> Any:
        nonlocal pos
        skip()
        if text[pos] == '"':
            pos += 1
            out = []
            while True:
                if pos >= n:
                    raise ValueError("unterminated string")
                if text[pos] == '"':
                    if pos + 1 < n and text[pos + 1] == '"':
                        out.append('"')
                        pos += 2
                        continue
                    pos += 1
                    return "".join(out)
                out.append(text[pos])
                pos += 1
        if text[pos] == "(":
            pos += 1
            items = []
            skip()
            while text[pos] != ")":
                items.append(value())
                skip()
            pos += 1
            return items
        start = pos
        while pos < n and not text[pos].isspace() and text[pos] not in "()":
            pos += 1
        if start == pos:
            raise ValueError(f"value expected at {pos}")
        return text[start:pos]

    skip()
    if not text.startswith("&", pos):
        raise ValueError("an xRSL job description starts with &")
    pos += 1
    result: dict[str, list[Any]] = {}
    skip()
    while pos < n:
        if text[pos] != "(":
            raise ValueError(f"( expected at {pos}")
        pos += 1
        skip()
        start = pos
        while pos < n and (text[pos].isalnum() or text[pos] in "_-"):
            pos += 1
        name = text[start:pos].lower()
        skip()
        if not name or pos >= n or text[pos] != "=":
            raise ValueError(f"relation expected at {start}")
        pos += 1
        values = []
        skip()
        while pos < n and text[pos] != ")":
            values.append(value())
            skip()
        if pos >= n:
            raise ValueError("unterminated relation")
        pos += 1
        result[name] = values
        skip()
    return result


@dataclass
class Delegation:
    owner: str
    key: rsa.RSAPrivateKey
    chain: bytes | None = None


@dataclass
class Job:
    owner: str
    session: Path
    desc: dict[str, list[Any]]
    inputs: set[str]
    delegation: str | None
    state: str = "ACCEPTING"
    payload: Payload | None = None
    exit_code: int | None = None
    killed: bool = False
    failure: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class ARCStandIn:
    """``with ARCStandIn(ca_dir, host_cert, host_key, allowed_dns={...}) as arc: arc.port``."""

    def __init__(self, base: Path, *, ca_dir: Path, host_cert: Path, host_key: Path,
                 allowed_dns: set[str], tokens: TokenVerifier | None = None,
                 queues: tuple[str, ...] = ("default",)) -> None:
        self.base = base
        self.ca_dir = ca_dir
        self.allowed_dns = allowed_dns
        self.tokens = tokens
        self.queues = queues
        self.jobs: dict[str, Job] = {}
        self.delegations: dict[str, Delegation] = {}
        self.fail_next: list[int | None] = []  # next answers: an error status, or None
        self.requests: list[tuple[str, str]] = []  # (method, path?query) seen
        self.lock = threading.Lock()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(host_cert), str(host_key))
        ctx.load_verify_locations(capath=str(ca_dir))
        ctx.verify_mode = ssl.CERT_OPTIONAL  # ARC 7: a token instead of a certificate
        ctx.verify_flags |= ssl.VERIFY_ALLOW_PROXY_CERTS
        app = Application([
            (PREFIX + r"/jobs", JobsHandler, {"arc": self}),
            (PREFIX + r"/jobs/([A-Za-z0-9]+)/session/([A-Za-z0-9_.-]+)", SessionHandler,
             {"arc": self}),
            (PREFIX + r"/delegations", DelegationsHandler, {"arc": self}),
            (PREFIX + r"/delegations/([A-Za-z0-9]+)", DelegationHandler, {"arc": self}),
        ])
        self.server = ThreadedApp(app, ctx)

    @property
    def port(self) -> int:
        return self.server.port

    def __enter__(self) -> ARCStandIn:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        for job in self.jobs.values():
            if job.payload is not None and job.payload.poll() is None:
                job.payload.kill()

    # -- job life ---------------------------------------------------------------------

    def start(self, job_id: str, job: Job) -> None:
        job.state = "SUBMITTING"
        exe = str(job.desc["executable"][0])
        script = job.session / exe
        if "/" in exe or not script.is_file():
            job.state, job.failure = "FAILED", f"executable {exe} missing"
            return
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(job.session),
               "TMPDIR": str(job.session), "GRID_GLOBAL_JOBID": job_id}
        if job.delegation is not None:
            env["X509_USER_PROXY"] = str(job.session / "user.proxy")
        out = job.session / str(job.desc.get("stdout", ["/dev/null"])[0])
        err = job.session / str(job.desc.get("stderr", ["/dev/null"])[0])
        job.payload = Payload(script, job.session, out, err, env)
        job.state = "RUNNING"

    def refresh(self, job: Job) -> None:
        if job.payload is None or job.state not in ("RUNNING", "KILLING"):
            return
        code = job.payload.poll()
        if code is None:
            walltime = job.desc.get("walltime")
            if walltime and (job.payload.started + 60 * int(walltime[0]) <
                             time.monotonic()):
                job.payload.kill()
                job.state, job.failure = "FAILED", "LRMS error: walltime exceeded"
            return
        job.exit_code = code
        job.state = "KILLED" if job.killed else "FINISHED"


class Base(RequestHandler):
    def initialize(self, arc: ARCStandIn) -> None:
        self.arc = arc
        self.owner = ""

    def prepare(self) -> None:
        self.arc.requests.append((self.request.method or "", self.request.uri or ""))
        code = self.arc.fail_next.pop(0) if self.arc.fail_next else None
        if code is not None:
            self.set_status(code)
            self.finish("A-REX internal error")
            return
        auth = self.request.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and self.arc.tokens is not None:
            try:
                claims = self.arc.tokens.verify(auth[7:].strip())
            except PilotWMSError as exc:
                self.set_status(401)
                self.finish(f"token refused: {exc}")
                return
            self.owner = f"token:{claims.get('sub')}"
            return
        ders = verified_chain_der(self.request.connection.stream.socket)  # type: ignore[attr-defined]
        dn = ""
        if ders:
            chain = [x509.load_der_x509_certificate(d) for d in ders]
            dn = identity_from_chain(chain).dn  # the TLS handshake verified it
        if dn not in self.arc.allowed_dns:
            self.set_status(403)
            self.finish("User is not authorized" if dn else "No credentials")
            return
        self.owner = dn

    def job_of(self, job_id: str) -> Job | None:
        job = self.arc.jobs.get(job_id)
        return job if job is not None and job.owner == self.owner else None


class JobsHandler(Base):
    def post(self) -> None:
        action = self.get_query_argument("action", "")
        if action == "new":
            self.new()
            return
        try:
            body = json.loads(self.request.body or b"{}")
            wanted = body["job"]
            wanted = [wanted] if isinstance(wanted, dict) else wanted
            ids = [str(w["id"]) for w in wanted]
        except (ValueError, KeyError, TypeError):
            self.set_status(400)
            self.finish("bad job list")
            return
        handler = {"status": self.status_of, "info": self.info_of, "kill": self.kill_one,
                   "clean": self.clean_one}.get(action)
        if handler is None:
            self.set_status(400)
            self.finish(f"unknown action {action}")
            return
        out = []
        for job_id in ids:
            job = self.job_of(job_id)
            if job is None:
                out.append({"status-code": "404", "reason": "Job not found", "id": job_id})
            else:
                self.arc.refresh(job)
                out.append({"id": job_id, **handler(job_id, job)})
        self.set_status(201)
        self.finish({"job": out[0] if len(out) == 1 else out})

    def status_of(self, job_id: str, job: Job) -> dict[str, Any]:
        return {"status-code": "200", "reason": "OK", "state": job.state}

    def info_of(self, job_id: str, job: Job) -> dict[str, Any]:
        activity: dict[str, Any] = {
            "ID": f"urn:caid:localhost:org.nordugrid.arcrest:{job_id}",
            "Name": job.desc.get("jobname", [""])[0],
            "State": [f"arcrest:{job.state}"], "Owner": job.owner,
            "Queue": job.desc.get("queue", [""])[0]}
        if job.exit_code is not None:
            activity["ExitCode"] = job.exit_code
        if job.failure:
            activity["Error"] = [job.failure]
        return {"status-code": "200", "reason": "OK",
                "info_document": {"ComputingActivity": activity}}

    def kill_one(self, job_id: str, job: Job) -> dict[str, Any]:
        if job.state in ("FINISHED", "FAILED", "KILLED"):
            return {"status-code": "202", "reason": "Queued for killing"}
        job.killed = True
        if job.payload is not None:
            job.payload.kill()
            self.arc.refresh(job)
        else:
            job.state = "KILLED"
        return {"status-code": "202", "reason": "Queued for killing"}

    def clean_one(self, job_id: str, job: Job) -> dict[str, Any]:
        if job.state not in ("FINISHED", "FAILED", "KILLED"):
            return {"status-code": "409", "reason": "Job is still active"}
        shutil.rmtree(job.session, ignore_errors=True)
        del self.arc.jobs[job_id]
        return {"status-code": "202", "reason": "Queued for cleaning"}

    def new(self) -> None:
        ctype = self.request.headers.get("Content-Type", "")
        if ctype.split(";")[0].strip() != "application/rsl":
            self.set_status(415)
            self.finish("only xRSL (application/rsl) is served here")
            return
        try:
            desc = parse_xrsl(self.request.body.decode())
        except (ValueError, UnicodeDecodeError, IndexError) as exc:
            self.set_status(201)
            self.finish({"job": {"status-code": "500", "reason": f"Bad description: {exc}"}})
            return
        reason = ""
        queue = desc.get("queue", ["default"])[0]
        if "executable" not in desc:
            reason = "executable is missing"
        elif queue not in self.arc.queues:
            reason = f"queue {queue} is not served"
        deleg = desc.get("delegationid", [None])[0]
        if deleg is not None:
            d = self.arc.delegations.get(deleg)
            if d is None or d.owner != self.owner or d.chain is None:
                reason = f"delegation {deleg} not found"
        if reason:
            self.set_status(201)
            self.finish({"job": {"status-code": "500", "reason": reason}})
            return
        job_id = uuid.uuid4().hex[:16]
        session = self.arc.base / job_id
        session.mkdir(parents=True)
        if deleg is not None:
            d = self.arc.delegations[deleg]
            key = d.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption())
            assert d.chain is not None
            first, rest = d.chain.split(b"-----END CERTIFICATE-----\n", 1)
            proxy = session / "user.proxy"
            proxy.write_bytes(first + b"-----END CERTIFICATE-----\n" + key + rest)
            proxy.chmod(0o600)
        inputs = {str(item[0]) for item in desc.get("inputfiles", [])
                  if isinstance(item, list) and len(item) >= 2 and item[1] == ""}
        job = Job(self.owner, session, desc, inputs, deleg, state="PREPARING")
        self.arc.jobs[job_id] = job
        if not inputs:
            self.arc.start(job_id, job)
        self.set_status(201)
        self.finish({"job": {"status-code": "201", "reason": "Created", "id": job_id,
                             "state": "ACCEPTING"}})


class SessionHandler(Base):
    def put(self, job_id: str, name: str) -> None:
        job = self.job_of(job_id)
        if job is None:
            self.set_status(404)
            self.finish("Job not found")
            return
        (job.session / name).write_bytes(self.request.body)
        job.inputs.discard(name)
        if job.state == "PREPARING" and not job.inputs:
            self.arc.start(job_id, job)
        self.finish("")

    def get(self, job_id: str, name: str) -> None:
        job = self.job_of(job_id)
        path = job.session / name if job is not None else None
        if path is None or not path.is_file():
            self.set_status(404)
            self.finish("File not found")
            return
        self.set_header("Content-Type", "application/octet-stream")
        self.finish(path.read_bytes())


def _csr(key: rsa.RSAPrivateKey) -> bytes:
    return (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


class DelegationsHandler(Base):
    def get(self) -> None:
        mine = [{"id": i} for i, d in self.arc.delegations.items() if d.owner == self.owner]
        self.finish({"delegation": mine[0] if len(mine) == 1 else mine})

    def post(self) -> None:
        if self.get_query_argument("action", "") != "new":
            self.set_status(400)
            self.finish("unknown action")
            return
        ident = uuid.uuid4().hex[:12]
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.arc.delegations[ident] = Delegation(self.owner, key)
        self.set_status(201)
        self.set_header("Location", f"https://localhost:{self.arc.port}{PREFIX}"
                                    f"/delegations/{ident}")
        self.set_header("Content-Type", "application/x-pem-file")
        self.finish(_csr(key))


class DelegationHandler(Base):
    def mine(self, ident: str) -> Delegation | None:
        d = self.arc.delegations.get(ident)
        return d if d is not None and d.owner == self.owner else None

    def put(self, ident: str) -> None:
        d = self.mine(ident)
        if d is None:
            self.set_status(404)
            self.finish("Delegation not found")
            return
        try:
            chain = load_pem_chain(self.request.body)
            ident_dn = verify_chain(chain, self.arc.ca_dir).dn
        except (PilotWMSError, ValueError) as exc:
            self.set_status(400)
            self.finish(f"bad delegated chain: {exc}")
            return
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        if chain[0].public_key().public_bytes(serialization.Encoding.DER, spki) != \
                d.key.public_key().public_bytes(serialization.Encoding.DER, spki):
            self.set_status(400)
            self.finish("the certificate is not for this delegation's key")
            return
        if not self.owner.startswith("token:") and ident_dn != self.owner:
            self.set_status(403)
            self.finish("delegated identity differs from the caller")
            return
        d.chain = self.request.body
        self.finish("")

    def post(self, ident: str) -> None:
        d = self.mine(ident)
        if d is None:
            self.set_status(404)
            self.finish("Delegation not found")
            return
        action = self.get_query_argument("action", "")
        if action == "renew":
            d.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.set_status(201)
            self.finish(_csr(d.key))
        elif action == "get":
            self.finish(d.chain or b"")
        else:
            self.set_status(400)
            self.finish("unknown action")
