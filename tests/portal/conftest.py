"""Fixtures of the portal tests: one server (tests/portal/env.py) and one headless Chromium
(Debian's /usr/bin/chromium driven by Python playwright; no browser download) per session.

Screenshots are written to ``$PILOTWMS_TEST_ARTIFACTS/portal`` (default
``test-artifacts/portal`` in the repository), where CI keeps them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.cli.instance import Instance
from pilot.build import build
from tests.portal.env import PortalEnv, start_env
from tests.support.oidc_idp import OIDCProvider

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def artifacts() -> Path:
    base = Path(os.environ.get("PILOTWMS_TEST_ARTIFACTS") or REPO / "test-artifacts")
    path = base / "portal"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def portal_env(instance: Instance, oidc_idp: OIDCProvider,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalEnv]:
    base = tmp_path_factory.mktemp("portal")
    pyz = build(base / "pilot.pyz")
    env = start_env(instance, base, oidc_idp, pyz)
    try:
        yield env
    finally:
        env.stop_pilots()
        env.server.stop()


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Headless Chromium for the portal's tests. Package scope, not session: playwright's
    sync API marks its event loop as running in this thread while it is open, so a later
    test's ``asyncio.run()`` in the same process (the order differs under pytest-xdist)
    would fail."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/test.sh (installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
