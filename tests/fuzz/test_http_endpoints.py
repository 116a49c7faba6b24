"""The non-RPC HTTP endpoints fuzzed over real HTTPS: the login server's OAuth2/OIDC routes
(malformed forms, every parameter with hostile values, bad Basic credentials, GET where POST
is expected), oversized bodies, broken form encodings and content types on every service
path, and the streaming upload routes (sandbox store, storage element) with hostile headers.

Asserted: never HTTP 500, errors are JSON (OAuth2 ``error``/DIRAC envelope) or the HTML error
page of the browser endpoints, and the server still answers afterwards.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from core.config.schema import Config
from tests.fuzz.conftest import Caller
from tests.fuzz.strategies import EDGE_TEXT, fuzz_settings
from tests.support.servers import ThreadedServer

LOGIN_ROUTES = ["/auth/device", "/auth/device/verify", "/auth/authorize", "/auth/callback",
                "/auth/token", "/auth/revoke", "/auth/userinfo",
                "/.well-known/openid-configuration", "/auth/jwks"]
PARAMS = ["client_id", "client_secret", "code", "code_challenge", "code_challenge_method",
          "code_verifier", "device_code", "error", "error_description", "grant_type",
          "redirect_uri", "refresh_token", "response_type", "scope", "state", "token",
          "user_code"]
VALUES = st.one_of(
    st.text(max_size=30), st.sampled_from(EDGE_TEXT),
    st.sampled_from(["pilotwms-cli", "urn:ietf:params:oauth:grant-type:device_code",
                     "authorization_code", "refresh_token", "client_credentials", "code",
                     "S256", "plain", "openid group:demo_admin", "http://127.0.0.1:1/cb",
                     "javascript:alert(1)", "eyJhbGciOiJub25lIn0.e30.", "a.b.c", "x" * 5000]))


def check(reply: requests.Response, what: str) -> None:
    assert reply.status_code != 500, f"{what}: HTTP 500: {reply.text[:300]}"
    assert reply.status_code < 500 or reply.status_code in (501, 502, 503), (what, reply.text)
    kind = reply.headers.get("Content-Type", "")
    if reply.status_code >= 400 and reply.text:
        if kind.startswith("application/json"):
            body = json.loads(reply.text)
            assert "error" in body or "Message" in body, (what, body)
        else:
            assert kind.startswith("text/html"), (what, kind, reply.text[:200])


@fuzz_settings(scale=6)
@given(route=st.sampled_from(LOGIN_ROUTES), method=st.sampled_from(["GET", "POST"]),
       form=st.dictionaries(st.sampled_from(PARAMS) | st.text(max_size=8), VALUES,
                            max_size=6),
       basic=st.none() | st.text(max_size=20) | st.sampled_from(["%%%:%%", "a:b", "***"]),
       bearer=st.none() | VALUES)
def test_login_endpoints(callers: dict[str, Caller], route: str, method: str,
                         form: dict[str, str], basic: str | None, bearer: str | None) -> None:
    caller = callers["anonymous"]
    headers = {}
    if basic is not None:
        headers["Authorization"] = "Basic " + (
            basic if basic == "***" else base64.b64encode(basic.encode()).decode())
    elif bearer is not None:
        # what an HTTP client can send at all: no line breaks or other control characters
        token = bearer.encode("ascii", "replace").decode()
        headers["Authorization"] = "Bearer " + "".join(c for c in token if c.isprintable())
    url = caller.base + route
    # encoded here: lone surrogates travel as the bytes a hostile client would send
    encoded = "&".join(f"{quote(k.encode('utf-8', 'surrogatepass'))}="
                       f"{quote(v.encode('utf-8', 'surrogatepass'))}" for k, v in form.items())
    if method == "GET":
        reply = caller.session.get(f"{url}?{encoded}", headers=headers, timeout=60,
                                   verify=caller.verify, allow_redirects=False)
    else:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        reply = caller.session.post(url, data=encoded.encode("ascii"), headers=headers,
                                    timeout=60, verify=caller.verify, allow_redirects=False)
    check(reply, f"{method} {route} {form!r}"[:400])


BROKEN_BODIES: list[tuple[str, bytes]] = [
    ("application/x-www-form-urlencoded", b"method=%zz&args=%"),
    ("application/x-www-form-urlencoded", b"method=ping&args=\xff\xfe"),
    ("application/x-www-form-urlencoded", b"=&=&&&method"),
    ("application/x-www-form-urlencoded", b"method=ping&method=echo&args=[]&args=[1]"),
    ("multipart/form-data; boundary=xyz", b"--xyz\r\nContent-Disposition: nothing\r\n\r\n"),
    ("multipart/form-data", b"no boundary at all"),
    ("application/json", b'{"method": "ping"}'),
    ("text/plain", b"\x00" * 100),
    ("application/x-www-form-urlencoded; charset=utf-7", b"method=+AGQ-ping"),
]


@pytest.mark.parametrize("content_type, body", BROKEN_BODIES)
def test_broken_form_encodings(callers: dict[str, Caller], content_type: str,
                               body: bytes) -> None:
    caller = callers["alice"]
    for path in ("/Framework/Registry", "/WorkloadManagement/JobMonitoring", "/auth/token"):
        reply = caller.session.post(caller.base + path, data=body, timeout=60,
                                    headers={"Content-Type": content_type},
                                    verify=caller.verify)
        check(reply, f"{path} {content_type} {body[:40]!r}")


def _raw_request(server: ThreadedServer, ca_dir: str, head: bytes, body_size: int) -> bytes:
    """Send a request head, then up to ``body_size`` bytes while the server reads; returns
    what the server answered (the status line and headers) before closing."""
    ctx = ssl.create_default_context(capath=ca_dir)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(head)
        sent = 0
        try:
            while sent < body_size:
                sent += sock.send(b"a" * min(65536, body_size - sent))
        except OSError:
            pass  # the server stopped reading: its answer is what matters
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
        return answer


def test_oversized_bodies_are_refused(fuzz_cfg: Config, fuzz_server: ThreadedServer,
                                      callers: dict[str, Caller]) -> None:
    """A body over Server.MaxBodySize is answered 400 by Tornado before it is read."""
    limit = fuzz_cfg.server.max_body_size
    ca_dir = callers["alice"].verify
    for path in (b"/Framework/Registry", b"/auth/token", b"/auth/device"):
        head = (b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: " + str(limit + 1).encode() + b"\r\n\r\n")
        answer = _raw_request(fuzz_server, ca_dir, head, 0)  # the head alone is refused
        assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 413")), answer[:200]
    pong = callers["anonymous"].post("Framework/Registry", method="ping", args="[]")
    assert pong.status_code == 200 and pong.json()["OK"] is True


@pytest.mark.parametrize("path", ["/WorkloadManagement/SandboxStore",
                                  "/DataManagement/StorageElement"])
def test_upload_routes_with_hostile_requests(callers: dict[str, Caller], path: str) -> None:
    """PUT/GET on the streaming routes with missing, wrong and hostile headers and paths."""
    caller = callers["alice"]
    attempts: list[tuple[str, str, dict[str, Any], Any]] = []
    for suffix in ("", "/", "/..", "/../../etc/passwd", "/%2e%2e/%2e%2e", "/" + "a" * 5000,
                   "/SandBox/x.tar.bz2", "/demo/user/a/alice/f?x=1", "/\x7f"):
        for method in ("PUT", "GET", "DELETE", "PATCH"):
            attempts.append((method, path + suffix, {}, b"data"))
    for header in ({"Content-Length": "-1"}, {"X-Checksum": "zz"},
                   {"Content-Type": "multipart/form-data"}, {"X-File-Size": "1e999"},
                   {"X-File-Size": str(2**70)}, {"X-MD5": "\u2603".encode()}):
        attempts.append(("PUT", path + "/upload", header, b"x" * 100))
    for method, url, headers, body in attempts:
        try:
            reply = caller.session.request(method, caller.base + url, data=body,
                                           headers=headers, timeout=60, verify=caller.verify)
        except (requests.exceptions.ConnectionError, requests.exceptions.InvalidHeader):
            continue  # refused before the body was read (or not sendable at all)
        check(reply, f"{method} {url[:80]} {headers}")
