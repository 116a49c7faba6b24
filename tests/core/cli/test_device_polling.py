"""The device flow's polling rules (RFC 8628 section 3.5) that the real IdP never exercises.

oidc-provider sends no ``interval`` and never answers ``slow_down``, so these run against a
stand-in token endpoint (a real HTTP server on 127.0.0.1 answering a scripted sequence); the
sleeps are recorded instead of slept.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

from core.oauth_client import DeviceAuthorization, OAuthError, poll_device_flow


class Script:
    def __init__(self) -> None:
        self.replies: list[tuple[int, dict[str, Any]]] = []
        self.requests: list[dict[str, list[str]]] = []


@pytest.fixture
def endpoint() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            script.requests.append(parse_qs(body))
            status, reply = script.replies.pop(0)
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/token", script
    finally:
        server.shutdown()
        server.server_close()


def _auth(interval: int = 7, expires_in: int = 600) -> DeviceAuthorization:
    return DeviceAuthorization("dc-1", "ABCD-EFGH", "http://x/device", None, expires_in,
                               interval)


def test_interval_and_slow_down(endpoint: tuple[str, Script]) -> None:
    url, script = endpoint
    script.replies = [(400, {"error": "authorization_pending"}), (400, {"error": "slow_down"}),
                      (400, {"error": "authorization_pending"}),
                      (200, {"access_token": "at", "expires_in": 60})]
    sleeps: list[float] = []
    tokens = poll_device_flow({"token_endpoint": url}, "cli", _auth(), sleep=sleeps.append)
    assert tokens["access_token"] == "at"
    assert sleeps == [7, 7, 12, 12]
    assert script.requests[0] == {"grant_type": ["urn:ietf:params:oauth:grant-type:device_code"],
                                  "device_code": ["dc-1"], "client_id": ["cli"]}


@pytest.mark.parametrize(("error", "message"), [
    ("expired_token", "the code expired before the login was approved: run it again"),
    ("access_denied", "the login was denied"),
    ("invalid_client", "token request refused: invalid_client: who are you"),
])
def test_final_errors(endpoint: tuple[str, Script], error: str, message: str) -> None:
    url, script = endpoint
    script.replies = [(400, {"error": "authorization_pending"}),
                      (400, {"error": error, "error_description": "who are you"})]
    with pytest.raises(OAuthError) as err:
        poll_device_flow({"token_endpoint": url}, "cli", _auth(), sleep=lambda _s: None)
    assert err.value.message == message and err.value.error == error


def test_gives_up_when_the_code_has_expired(endpoint: tuple[str, Script]) -> None:
    url, script = endpoint
    script.replies = [(400, {"error": "authorization_pending"})] * 3
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(OAuthError, match="code expired"):
        poll_device_flow({"token_endpoint": url}, "cli", _auth(interval=5, expires_in=12),
                         sleep=sleep, clock=lambda: now[0])
    assert len(script.requests) == 2          # at 5 and 10 s; at 15 s the code is dead
