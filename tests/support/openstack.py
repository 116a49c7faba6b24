"""A stand-in OpenStack (Keystone v3 + Nova v2.1) whose "VMs" are local process groups.

What is faithful: the paths and JSON shapes of ``POST /v3/auth/tokens`` (password and
application_credential methods, project scope, ``X-Subject-Token``, ``expires_at``, the service
catalog with region/interface endpoints, 401 bodies) and of Nova's ``/servers`` (202 + server
id on create, ``status`` BUILD -> ACTIVE -> SHUTOFF, ERROR with a ``fault``, 404
``itemNotFound``, 204 on delete, ``os-getConsoleOutput`` with ``length``, ``GET /flavors``),
``X-Auth-Token`` checks per project, ``networks`` required from microversion 2.37, and the
65535-byte limit on base64 ``user_data``. The "VM" does what cloud-init does with user data
that is a shell script (gzip-compressed or not): runs it once, as the boot user, stdout and
stderr to the console log; it powers off only when the script calls ``poweroff`` or
``shutdown`` (stand-in commands on its PATH that stop the whole process group, as a real
poweroff stops everything) - a script that just ends leaves the VM ACTIVE, as on a real cloud.
Not faithful: no isolation (the "VM" shares this host, its network and file system), no
images, no real scheduling, and everything over one TLS port.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import os
import re
import secrets
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from tornado.web import Application, RequestHandler

from core.db import utcnow
from tests.support.standin import Payload, ThreadedApp

POWEROFF = """#!/bin/sh
# stand-in for poweroff/shutdown inside a "VM": record it, then stop every process of the VM
: > "$PILOTWMS_VM_DIR/poweroff"
kill -KILL 0
"""


@dataclass
class Server:
    id: str
    project: str
    name: str
    image: str
    flavor: str
    metadata: dict[str, str]
    vm_dir: Path
    script: bytes
    created: str
    status: str = "BUILD"
    boot_at: float = 0.0
    payload: Payload | None = None
    fault: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class OpenStackStandIn:
    """``with OpenStackStandIn(base, host_cert, host_key) as cloud: cloud.auth_url``."""

    def __init__(self, base: Path, *, host_cert: Path, host_key: Path,
                 boot_seconds: float = 0.3) -> None:
        self.base = base
        self.boot_seconds = boot_seconds
        self.users = {("pilots", "Default"): ("s3cret", "pilotproject")}
        self.app_creds = {"appcred-1": ("appsecret", "pilotproject")}
        self.projects = {("pilotproject", "Default"): "p-0001"}
        self.images = {"img-debian", "img-broken"}  # img-broken: "No valid host"
        self.flavors = {"f-small": "m1.small", "f-large": "m1.large"}
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> project id, expiry
        self.token_lifetime = 3600.0
        self.servers: dict[str, Server] = {}
        self.fail_next: list[int | None] = []  # None: answer normally
        self.requests: list[tuple[str, str]] = []
        self.last_user_data: bytes = b""
        self.lock = threading.Lock()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(host_cert), str(host_key))
        app = Application([
            (r"/identity/v3/auth/tokens", TokensHandler, {"os": self}),
            (r"/compute/v2.1/servers", ServersHandler, {"os": self}),
            (r"/compute/v2.1/servers/detail", ServersDetailHandler, {"os": self}),
            (r"/compute/v2.1/servers/([0-9a-f-]+)", ServerHandler, {"os": self}),
            (r"/compute/v2.1/servers/([0-9a-f-]+)/action", ActionHandler, {"os": self}),
            (r"/compute/v2.1/flavors", FlavorsHandler, {"os": self}),
        ])
        self.server = ThreadedApp(app, ctx, tick=self.tick)
        self.shims = base / "shims"
        self.shims.mkdir(parents=True, exist_ok=True)
        for name in ("poweroff", "shutdown"):
            (self.shims / name).write_text(POWEROFF)
            (self.shims / name).chmod(0o755)

    @property
    def url(self) -> str:
        return f"https://localhost:{self.server.port}"

    @property
    def auth_url(self) -> str:
        return f"{self.url}/identity/v3"

    def __enter__(self) -> OpenStackStandIn:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        for server in self.servers.values():
            if server.payload is not None and server.payload.poll() is None:
                server.payload.kill()

    def tick(self) -> None:
        for server in list(self.servers.values()):
            self.refresh(server)

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def refresh(self, server: Server) -> None:
        """Advance a VM: BUILD -> ACTIVE (boot: run the user data) -> SHUTOFF (powered off)."""
        if server.status == "BUILD" and time.monotonic() >= server.boot_at:
            if server.image == "img-broken":
                server.status = "ERROR"
                server.fault = {"code": 500, "message": "No valid host was found. ",
                                "created": utcnow().isoformat()}
                return
            script = server.vm_dir / "user-data"
            script.write_bytes(server.script)
            env = {"PATH": f"{self.shims}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                   "HOME": str(server.vm_dir), "TMPDIR": str(server.vm_dir),
                   "PILOTWMS_VM_DIR": str(server.vm_dir)}
            server.payload = Payload(script, server.vm_dir, server.vm_dir / "console.log",
                                     None, env)
            server.status = "ACTIVE"
        if server.status == "ACTIVE" and (server.vm_dir / "poweroff").exists() and \
                server.payload is not None and server.payload.poll() is not None:
            server.status = "SHUTOFF"


def _error(handler: RequestHandler, status: int, kind: str, message: str) -> None:
    handler.set_status(status)
    handler.finish({kind: {"code": status, "message": message}})


class Base(RequestHandler):
    def initialize(self, os: OpenStackStandIn) -> None:  # noqa: A002 - tornado kwargs
        self.os = os
        self.project = ""

    def prepare(self) -> None:
        self.os.requests.append((self.request.method or "", self.request.uri or ""))
        code = self.os.fail_next.pop(0) if self.os.fail_next else None
        if code is not None:
            _error(self, code, "computeFault", "Unexpected API Error.")
            return
        if isinstance(self, TokensHandler):
            return
        token = self.request.headers.get("X-Auth-Token", "")
        project, expiry = self.os.tokens.get(token, ("", 0.0))
        if not project or expiry < time.monotonic():
            self.set_status(401)
            self.finish({"error": {"code": 401, "title": "Unauthorized", "message":
                                   "The request you have made requires authentication."}})
            return
        self.project = project

    def body(self) -> Any:
        try:
            return json.loads(self.request.body or b"null")
        except ValueError:
            return None

    def server(self, ident: str) -> Server | None:
        server = self.os.servers.get(ident)
        if server is None or server.project != self.project:
            _error(self, 404, "itemNotFound", f"Instance {ident} could not be found.")
            return None
        self.os.refresh(server)
        return server


class TokensHandler(Base):
    def post(self) -> None:
        body = self.body()
        try:
            identity = body["auth"]["identity"]
            methods = identity["methods"]
            if methods == ["password"]:
                user = identity["password"]["user"]
                password, default_project = self.os.users[(user["name"],
                                                            user["domain"]["name"])]
                ok = secrets.compare_digest(password, user["password"])
                scope = body["auth"].get("scope", {}).get("project")
                project = self.os.projects.get((scope["name"], scope["domain"]["name"]), "") \
                    if scope else ""
                ok = ok and bool(project)
            elif methods == ["application_credential"]:
                cred = identity["application_credential"]
                secret, pname = self.os.app_creds[cred["id"]]
                ok = secrets.compare_digest(secret, cred["secret"])
                project = self.os.projects[(pname, "Default")]
            else:
                ok = False
        except (KeyError, TypeError):
            ok = False
        if not ok:
            self.set_status(401)
            self.finish({"error": {"code": 401, "title": "Unauthorized", "message":
                                   "The request you have made requires authentication."}})
            return
        token = "gAAAAA" + secrets.token_urlsafe(48)
        self.os.tokens[token] = (project, time.monotonic() + self.os.token_lifetime)
        now = utcnow()
        compute = f"{self.os.url}/compute/v2.1"
        self.set_status(201)
        self.set_header("X-Subject-Token", token)
        self.finish({"token": {
            "methods": methods, "issued_at": now.isoformat().replace("+00:00", "Z"),
            "expires_at": (now + timedelta(seconds=self.os.token_lifetime)).isoformat()
            .replace("+00:00", "Z"),
            "project": {"id": project, "name": "pilotproject",
                        "domain": {"id": "default", "name": "Default"}},
            "catalog": [
                {"type": "identity", "name": "keystone", "id": "k1", "endpoints": [
                    {"id": "e1", "interface": "public", "region": "RegionOne",
                     "region_id": "RegionOne", "url": f"{self.os.url}/identity"}]},
                {"type": "compute", "name": "nova", "id": "n1", "endpoints": [
                    {"id": "e2", "interface": "public", "region": "RegionOne",
                     "region_id": "RegionOne", "url": compute},
                    {"id": "e3", "interface": "internal", "region": "RegionOne",
                     "region_id": "RegionOne", "url": "https://nova.internal:8774/v2.1"}]},
            ]}})


class ServersHandler(Base):
    def post(self) -> None:
        body = self.body()
        server = body.get("server") if isinstance(body, dict) else None
        if not isinstance(server, dict):
            _error(self, 400, "badRequest", "The server could not comply with the request")
            return
        version = self.request.headers.get("OpenStack-API-Version", "compute 2.1").split()[-1]
        major, _, minor = version.partition(".")
        if (int(major), int(minor or 0)) >= (2, 37) and "networks" not in server:
            _error(self, 400, "badRequest", "Invalid input for field/attribute server. "
                   "Value: ... 'networks' is a required property")
            return
        if server.get("imageRef") not in self.os.images:
            _error(self, 400, "badRequest", f"Image {server.get('imageRef')} could not be "
                   "found.")
            return
        if server.get("flavorRef") not in self.os.flavors:
            _error(self, 400, "badRequest", f"Flavor {server.get('flavorRef')} could not be "
                   "found.")
            return
        data = server.get("user_data", "")
        if len(data) > 65535:
            _error(self, 400, "badRequest", "Invalid input for field/attribute user_data. "
                   f"Value: ... is too long (maxLength 65535, got {len(data)})")
            return
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            _error(self, 400, "badRequest", "User data needs to be valid base 64.")
            return
        if raw[:2] == b"\x1f\x8b":  # cloud-init unpacks gzip user data
            raw = gzip.decompress(raw)
        self.os.last_user_data = raw
        ident = str(uuid.uuid4())
        vm_dir = self.os.base / ident
        vm_dir.mkdir(parents=True)
        if not raw.startswith(b"#!"):  # not a script: cloud-init would not run anything
            raw = b"#!/bin/sh\nexit 0\n"
        self.os.servers[ident] = Server(
            ident, self.project, str(server.get("name", "")), str(server["imageRef"]),
            str(server["flavorRef"]), dict(server.get("metadata") or {}), vm_dir, raw,
            utcnow().isoformat().replace("+00:00", "Z"),
            boot_at=time.monotonic() + self.os.boot_seconds)
        link = f"{self.os.url}/compute/v2.1/servers/{ident}"
        self.set_status(202)
        self.set_header("Location", link)
        self.finish({"server": {"id": ident, "links": [{"rel": "self", "href": link}],
                                "OS-DCF:diskConfig": "MANUAL",
                                "security_groups": [{"name": "default"}],
                                "adminPass": secrets.token_urlsafe(9)}})


def server_doc(server: Server) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": server.id, "name": server.name, "status": server.status,
        "created": server.created, "tenant_id": server.project,
        "metadata": server.metadata, "image": {"id": server.image},
        "flavor": {"id": server.flavor}, "OS-EXT-STS:vm_state": server.status.lower()}
    if server.fault:
        doc["fault"] = server.fault
    return doc


class ServersDetailHandler(Base):
    """``GET /servers/detail``: the project's servers, ``name`` as a regex, ``limit`` and
    ``marker`` paging with a ``servers_links`` next link, oldest first."""

    def get(self) -> None:
        pattern = re.compile(self.get_query_argument("name", ""))
        limit = int(self.get_query_argument("limit", "1000"))
        marker = self.get_query_argument("marker", "")
        mine = [s for s in self.os.servers.values()
                if s.project == self.project and pattern.search(s.name)]
        if marker:
            ids = [s.id for s in mine]
            mine = mine[ids.index(marker) + 1:] if marker in ids else []
        page = mine[:limit]
        for server in page:
            self.os.refresh(server)
        body: dict[str, Any] = {"servers": [server_doc(s) for s in page]}
        if len(mine) > limit:
            body["servers_links"] = [{"rel": "next", "href": f"{self.os.url}/compute/v2.1/"
                                      f"servers/detail?limit={limit}&marker={page[-1].id}"}]
        self.finish(body)


class ServerHandler(Base):
    def get(self, ident: str) -> None:
        server = self.server(ident)
        if server is None:
            return
        self.finish({"server": server_doc(server)})

    def delete(self, ident: str) -> None:
        server = self.server(ident)
        if server is None:
            return
        if server.payload is not None and server.payload.poll() is None:
            server.payload.kill()
        del self.os.servers[ident]
        self.set_status(204)
        self.finish()


class ActionHandler(Base):
    def post(self, ident: str) -> None:
        server = self.server(ident)
        if server is None:
            return
        body = self.body()
        if not isinstance(body, dict) or "os-getConsoleOutput" not in body:
            _error(self, 400, "badRequest", "unsupported action")
            return
        length = (body["os-getConsoleOutput"] or {}).get("length")
        log = server.vm_dir / "console.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        if length is not None and int(length) >= 0:
            text = "".join(text.splitlines(keepends=True)[-int(length):] if int(length)
                           else [])
        self.finish({"output": text})


class FlavorsHandler(Base):
    def get(self) -> None:
        self.finish({"flavors": [{"id": i, "name": n, "links": []}
                                 for i, n in sorted(self.os.flavors.items())]})
