"""A real OpenID Connect provider for the tests, and a scripted user who signs in there.

The provider is the certified npm package ``oidc-provider`` started by
``scripts/oidc-idp/server.js`` on 127.0.0.1 and a free port (``npm ci`` has installed it; this
module runs ``npm ci`` itself when ``node_modules`` is missing). It serves plain HTTP on
loopback by default (see docs/login-client.md for why) or HTTPS when given a certificate.

Users (password = ``<name>-password``) and their ``groups`` claim::

    alice  /demo, /demo/users, /demo/admins
    bob    /demo, /demo/users
    carol  (no groups)

Clients: ``pilotwms`` (confidential, secret ``pilotwms-secret``, client_secret_basic) and
``pilotwms-cli`` (public, PKCE); both may use authorization_code, refresh_token and the device
code grant, and both accept any redirect URI on 127.0.0.1/localhost (any port and path).
Scopes: ``openid profile email groups offline_access``; ``groups`` is in the ID token and at
userinfo. Refresh tokens are issued to every client allowed the grant and rotate on use.
Access tokens are opaque (for userinfo) unless ``resource=https://pilotwms.test`` (RFC 8707) is
asked for: then they are RS256 JWTs with ``aud: pilotwms``, ``groups``, ``preferred_username``,
verifiable with the IdP's ``jwks_uri`` (as WLCG/IAM tokens are), which a pilotwms server trusts
through an ``Auth.Issuers`` entry. Revoking such a self-contained token is not supported (RFC
7009 ``unsupported_token_type``); revoking its refresh token is.

Example (the ``oidc_idp`` session fixture in tests/conftest.py is one of these)::

    with OIDCProvider() as idp:
        r = requests.post(idp.discovery()["device_authorization_endpoint"],
                          data={"client_id": "pilotwms-cli", "scope": "openid groups"}).json()
        idp.approve_device(r["user_code"], "alice", "alice-password")
        # ... then poll the token endpoint with r["device_code"]

The user's side is a small HTML "browser" (:class:`UserAgent`): it follows redirects and the
IdP's forms (device confirmation, login, consent; self-submitting form_post pages) with
``requests`` exactly as a person clicking through would, and stops at a URL you name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

REPO = Path(__file__).resolve().parents[2]
IDP_DIR = REPO / "scripts" / "oidc-idp"

USERS: dict[str, dict[str, Any]] = {
    "alice": {"sub": "2d1c6b1e-0a11-4c3e-9a0f-a11ce0000001", "password": "alice-password",
              "groups": ["/demo", "/demo/users", "/demo/admins"]},
    "bob": {"sub": "5e0b9f42-7c2d-4b8e-8d1a-b0b000000002", "password": "bob-password",
            "groups": ["/demo", "/demo/users"]},
    "carol": {"sub": "9a4e2c71-3f5b-4d6a-b2c8-ca7010000003", "password": "carol-password",
              "groups": []},
}
CONFIDENTIAL_CLIENT = ("pilotwms", "pilotwms-secret")
PUBLIC_CLIENT = "pilotwms-cli"
RESOURCE = "https://pilotwms.test"     # -> JWT access tokens with aud "pilotwms"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class IdPError(RuntimeError):
    """The IdP showed an error page, or the scripted user could not go on."""


def ensure_installed() -> None:
    """Run ``npm ci`` in scripts/oidc-idp when its node_modules are missing."""
    if (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise IdPError("npm is missing: run scripts/test.sh (installs nodejs and npm)")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--prefix", str(IDP_DIR)],  # noqa: S603
                   check=True, capture_output=True, timeout=300)


class OIDCProvider:
    """``node scripts/oidc-idp/server.js`` as a subprocess; see the module docstring.

    ``config`` (optional) is written as the server's IDP_CONFIG: extra ``users``, ``clients``
    and ``ttl`` (seconds per token kind, e.g. ``{"AccessToken": 5}``); ``tls`` is a
    (certificate, key) pair of PEM files to serve HTTPS (then pass ``verify`` to requests).
    """

    def __init__(self, *, config: Mapping[str, Any] | None = None,
                 tls: tuple[str | Path, str | Path] | None = None,
                 workdir: Path | None = None, verify: bool | str = True) -> None:
        self.config = dict(config or {})
        self.tls = tls
        self.workdir = workdir
        self.verify = verify
        self.issuer = ""
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: list[str] = []
        self._discovery: dict[str, Any] | None = None

    def start(self, timeout: float = 60.0, attempts: int = 2) -> OIDCProvider:
        """Start the IdP; a start-up that prints nothing within ``timeout`` s (node under a
        loaded machine) or exits at once is tried again, ``attempts`` times in all."""
        for attempt in range(1, attempts + 1):
            try:
                return self._start(timeout)
            except IdPError:
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _start(self, timeout: float) -> OIDCProvider:
        ensure_installed()
        node = shutil.which("node") or shutil.which("nodejs")
        if node is None:
            raise IdPError("node is missing: run scripts/test.sh (installs nodejs and npm)")
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
        env["IDP_PORT"] = "0"
        if self.config:
            import tempfile

            fd, name = tempfile.mkstemp(prefix="idp-", suffix=".json", dir=self.workdir)
            with os.fdopen(fd, "w") as fh:
                json.dump(self.config, fh)
            env["IDP_CONFIG"] = name
        if self.tls:
            env["IDP_TLS_CERT"], env["IDP_TLS_KEY"] = map(str, self.tls)
        self._proc = subprocess.Popen(  # noqa: S603
            [node, str(IDP_DIR / "server.js")], cwd=IDP_DIR, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._drain, args=(self._proc.stderr,), daemon=True).start()
        line = self._first_line(timeout)
        threading.Thread(target=self._drain, args=(self._proc.stdout,), daemon=True).start()
        info = json.loads(line)
        self.issuer, self.port = info["issuer"], int(info["port"])
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.discovery(refresh=True)
                return self
            except requests.RequestException:
                if time.monotonic() > deadline:
                    self.stop()
                    raise IdPError(f"the IdP at {self.issuer} never answered") from None
                time.sleep(0.1)

    def _drain(self, stream: IO[str] | None) -> None:
        for line in stream or ():
            self._stderr.append(line.rstrip())
            del self._stderr[:-50]

    def _first_line(self, timeout: float) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self._proc.stdout.readline()),  # type: ignore[union-attr]
                                  daemon=True)
        reader.start()
        reader.join(timeout)
        if not box or not box[0].strip():
            proc = self._proc
            code = proc.poll()
            self.stop()
            time.sleep(0.2)  # the stderr reader's last lines
            why = (f"exited with {code}" if code is not None
                   else f"printed nothing in {timeout:.0f} s")
            raise IdPError(f"the IdP did not start ({why}): " + " | ".join(self._stderr[-10:]))
        return box[0]

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()

    def __enter__(self) -> OIDCProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def log(self) -> list[str]:
        """The last lines the server wrote on stderr."""
        return list(self._stderr)

    def discovery(self, refresh: bool = False) -> dict[str, Any]:
        """The OpenID Provider metadata (``/.well-known/openid-configuration``)."""
        if self._discovery is None or refresh:
            r = requests.get(f"{self.issuer}/.well-known/openid-configuration",
                             timeout=10, verify=self.verify)
            r.raise_for_status()
            self._discovery = r.json()
        return self._discovery

    def endpoint(self, name: str) -> str:
        """A discovery entry, e.g. ``endpoint("token")`` -> the ``token_endpoint`` URL."""
        return str(self.discovery()[f"{name}_endpoint"])

    # -- the user's side ------------------------------------------------------------------
    def device_url(self, user_code: str) -> str:
        return f"{self.endpoint('device_authorization').rsplit('/', 1)[0]}?user_code={user_code}"

    def approve_device(self, user_code: str, username: str, password: str) -> str:
        """Confirm ``user_code``, sign in and consent: the device may then get its tokens."""
        return approve_device(self.device_url(user_code), username, password, verify=self.verify)

    def deny_device(self, user_code: str, username: str, password: str) -> str:
        """Sign in, then deny consent: the device's next poll gets ``access_denied``."""
        return deny_device(self.device_url(user_code), username, password, verify=self.verify)

    def login_via_browser(self, authorize_url: str, username: str, password: str) -> str:
        return login_via_browser(authorize_url, username, password, verify=self.verify)

    def deny_via_browser(self, authorize_url: str, username: str, password: str) -> str:
        return deny_via_browser(authorize_url, username, password, verify=self.verify)


# -- a scripted user with a minimal HTML browser -------------------------------------------
@dataclass
class Form:
    id: str
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    visible: list[str] = field(default_factory=list)   # names of text/password inputs
    buttons: list[tuple[str, str]] = field(default_factory=list)  # (name, value) of submits


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.ids: dict[str, str] = {}
        self._current: Form | None = None
        self._text_id: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = Form(a.get("id", ""), a.get("action", ""),
                                 a.get("method", "get").lower())
            self.forms.append(self._current)
            return
        owner = self._owner(a.get("form"))
        if tag == "input" and owner is not None and a.get("name"):
            kind = a.get("type", "text").lower()
            if kind in ("submit", "button"):
                owner.buttons.append((a["name"], a.get("value", "")))
            elif kind == "hidden":
                owner.fields[a["name"]] = a.get("value", "")
            else:
                owner.visible.append(a["name"])
                owner.fields[a["name"]] = a.get("value", "")
        elif tag == "button" and owner is not None and a.get("name"):
            owner.buttons.append((a["name"], a.get("value", "")))
        if a.get("id"):
            self._text_id = a["id"]
            self.ids.setdefault(a["id"], "")

    def _owner(self, form_id: str | None) -> Form | None:
        if form_id:
            return next((f for f in self.forms if f.id == form_id), None)
        return self._current

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None
        self._text_id = None

    def handle_data(self, data: str) -> None:
        if self._text_id:
            self.ids[self._text_id] += data


@dataclass
class Page:
    url: str
    status: int
    text: str
    forms: list[Form]
    ids: dict[str, str]


class UserAgent:
    """Clicks through an IdP's pages like a person: see :meth:`run`."""

    def __init__(self, username: str, password: str, *, approve: bool = True,
                 verify: bool | str = True, max_steps: int = 25) -> None:
        self.username = username
        self.password = password
        self.approve = approve
        self.session = requests.Session()
        self.verify = verify        # per request: a session's verify loses to REQUESTS_CA_BUNDLE
        self.max_steps = max_steps
        self._logged_in = False

    def run(self, url: str, stop: Callable[[str], bool] = lambda _url: False) -> str | Page:
        """Start at ``url``; return the first redirect target ``stop`` accepts (not fetched),
        or the final page (no form left to act on)."""
        method, data = "get", None
        for _ in range(self.max_steps):
            if method == "get":
                r = self.session.get(url, allow_redirects=False, timeout=15,
                                     verify=self.verify)
            else:
                r = self.session.post(url, data=data, allow_redirects=False, timeout=15,
                                      verify=self.verify)
            if r.is_redirect or r.status_code in (301, 302, 303, 307, 308):
                target = urljoin(url, r.headers["location"])
                if stop(target):
                    return target
                keep = r.status_code in (307, 308) and method == "post"
                method, data = ("post", data) if keep else ("get", None)
                url = target
                continue
            page = self._parse(url, r)
            step = self._next(page)
            if step is None:
                return page
            method, url, data = step
        raise IdPError(f"still not done after {self.max_steps} pages, at {url}")

    @staticmethod
    def _parse(url: str, r: requests.Response) -> Page:
        parser = _FormParser()
        parser.feed(r.text)
        return Page(url, r.status_code, r.text, parser.forms, parser.ids)

    def _next(self, page: Page) -> tuple[str, str, dict[str, str] | None] | None:
        forms = {f.id: f for f in page.forms}
        if "error" in page.ids:
            raise IdPError(f"{page.url}: {page.ids['error'].strip()}: "
                           f"{page.ids.get('error_description', '').strip()}")
        if "login-form" in forms:
            if self._logged_in:
                raise IdPError(f"login refused for {self.username!r} at {page.url}")
            self._logged_in = True
            form = forms["login-form"]
            return self._submit(page, form, {"username": self.username,
                                             "password": self.password})
        if "consent-form" in forms:
            form = forms["consent-form"] if self.approve else forms["deny-form"]
            return self._submit(page, form, {})
        if "op.deviceConfirmForm" in forms:
            return self._submit(page, forms["op.deviceConfirmForm"], {})
        if "op.deviceInputForm" in forms:
            raise IdPError(f"{page.url}: the IdP asks for the user code again "
                           f"({page.text[:300]!r})")
        autos = [f for f in page.forms if not f.visible and f.fields]
        if len(page.forms) == 1 and autos:      # a self-submitting form_post page
            return self._submit(page, autos[0], {})
        if page.status >= 400:
            raise IdPError(f"{page.url}: HTTP {page.status}: {page.text[:300]!r}")
        return None

    @staticmethod
    def _submit(page: Page, form: Form, values: Mapping[str, str]
                ) -> tuple[str, str, dict[str, str] | None]:
        data = {**form.fields, **values}
        target = urljoin(page.url, form.action or page.url)
        return ("post" if form.method == "post" else "get"), target, data


def _redirect_stop(authorize_url: str) -> Callable[[str], bool]:
    redirect = parse_qs(urlsplit(authorize_url).query).get("redirect_uri", [""])[0]
    if not redirect:
        raise ValueError("the authorization URL has no redirect_uri")
    return lambda url: url.split("?")[0].split("#")[0] == redirect


def login_via_browser(authorize_url: str, username: str, password: str, *,
                      verify: bool | str = True) -> str:
    """Open ``authorize_url``, sign in and consent; return the final redirect URL (with
    ``code``/``state``, not fetched)."""
    result = UserAgent(username, password, verify=verify).run(
        authorize_url, _redirect_stop(authorize_url))
    if not isinstance(result, str):
        raise IdPError(f"no redirect to the client, ended at {result.url}: {result.text[:300]!r}")
    return result


def deny_via_browser(authorize_url: str, username: str, password: str, *,
                     verify: bool | str = True) -> str:
    """As :func:`login_via_browser`, but deny consent: the redirect carries
    ``error=access_denied``."""
    result = UserAgent(username, password, approve=False, verify=verify).run(
        authorize_url, _redirect_stop(authorize_url))
    if not isinstance(result, str):
        raise IdPError(f"no redirect to the client, ended at {result.url}: {result.text[:300]!r}")
    return result


def approve_device(verification_uri_complete: str, username: str, password: str, *,
                   verify: bool | str = True,
                   stop: Callable[[str], bool] = lambda _url: False) -> str:
    """Play the user of a device flow: open the verification URL with the code, confirm,
    sign in, consent. Works through any server that sends the user on to this IdP (e.g.
    pilotwms's ``/auth/device``). Returns the URL of the final page."""
    result = UserAgent(username, password, verify=verify).run(verification_uri_complete, stop)
    return result if isinstance(result, str) else result.url


def deny_device(verification_uri_complete: str, username: str, password: str, *,
                verify: bool | str = True,
                stop: Callable[[str], bool] = lambda _url: False) -> str:
    """As :func:`approve_device` but deny consent: the device's poll gets ``access_denied``."""
    agent = UserAgent(username, password, approve=False, verify=verify)
    try:
        result = agent.run(verification_uri_complete, stop)
    except IdPError as exc:      # oidc-provider shows an error page once the user denied
        if "access_denied" in str(exc) or "AbortedError" in str(exc):
            return verification_uri_complete
        raise
    return result if isinstance(result, str) else result.url
