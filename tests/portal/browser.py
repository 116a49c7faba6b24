"""Playing a user in the portal: sign-in at the test identity provider, screenshots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.portal.env import PortalEnv
from tests.support.oidc_idp import USERS

TIMEOUT_MS = 30_000


def new_page(browser: Any, *, width: int = 1280, height: int = 860, **kw: Any) -> Any:
    context = browser.new_context(ignore_https_errors=True, accept_downloads=True,
                                  viewport={"width": width, "height": height}, **kw)
    context.set_default_timeout(TIMEOUT_MS)
    return context.new_page()


def watch(page: Any) -> list[str]:
    """What went wrong on the page: script errors, and alerts a hostile text would raise."""
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    page.on("dialog", lambda d: problems.append(f"a script ran: {d.message}"))
    return problems


def sign_in(page: Any, env: PortalEnv, user: str, view: str = "#/jobs") -> None:
    """Sign in through the login server and the identity provider, as a person would."""
    page.goto(env.portal + view)
    page.click("#login-token")
    through_idp(page, user)


def through_idp(page: Any, user: str) -> None:
    """Sign in and consent at the identity provider if it asks, until back in the portal."""
    page.wait_for_url(lambda url: "/interaction/" in url or "/portal/" in url)
    if "/interaction/" in page.url and page.locator("#login-form").count():
        page.fill("#login-form input[name=username]", user)
        page.fill("#login-form input[name=password]", str(USERS[user]["password"]))
        page.click("#login-form button[type=submit]")
    page.wait_for_url(lambda url: "/interaction/" in url or "/portal/" in url)
    if "/interaction/" in page.url and page.locator("#consent-form").count():
        page.click("#consent-form button[type=submit]")
    page.wait_for_selector("#group-select")


def shot(page: Any, artifacts: Path, name: str) -> Path:
    path = artifacts / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
