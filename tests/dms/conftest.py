"""Data management fixtures shared by the storage and command tests.

* ``xrootd_server`` (session): Debian's xrootd on 127.0.0.1 (tests/support/xrootd.py), with
  the xrootd client's retry settings shortened for the whole session.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.xrootd import CLIENT_ENV, XRootDServer


@pytest.fixture(scope="session")
def xrootd_server() -> Iterator[XRootDServer]:
    server = XRootDServer().start()
    mp = pytest.MonkeyPatch()
    for key, value in CLIENT_ENV.items():
        mp.setenv(key, value)
    try:
        yield server
    finally:
        mp.undo()
        server.stop()
