"""The fuzzed server: every installed service in one server (tests/support/fullserver.py),
module-wide, plus callers holding every right any registered method asks for.

``fuzz_all`` is a group (admin) holding every property named by any method's rules, so that
each method's body is reached, not only its rights check.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from core.config.loader import load_config
from core.config.schema import Config
from core.security.tokens import TokenIssuer
from tests.support.credentials import Creds
from tests.support.fullserver import every_service, full_config, serve_everything
from tests.support.servers import ThreadedServer

FUZZ_GROUP = "fuzz_all"


def every_property() -> set[str]:
    return {rule.value for cls in every_service() for spec in cls.methods().values()
            for rule in spec.rights if rule.kind == "property"}


def fuzz_config(instance: Any, base: Path) -> Config:
    cfg = full_config(load_config(instance.config, environ={}), base)
    data = cfg.model_dump(by_alias=True, exclude_none=True)
    data["Registry"]["Groups"][FUZZ_GROUP] = {
        "VO": "demo", "Users": ["admin"],
        "Properties": sorted(every_property() | {"NormalUser"})}
    return Config.model_validate(data)


class Caller:
    """A ``requests`` session with one credential, calling the fuzzed server."""

    def __init__(self, server: ThreadedServer, creds: Creds, name: str, *,
                 cert: Any = None, token: str | None = None) -> None:
        self.name = name
        self.base = server.url
        self.session = requests.Session()
        # given per request: $REQUESTS_CA_BUNDLE would win over a session's verify
        self.verify = str(creds.ca_dir)
        if cert is not None:
            self.session.cert = tuple(map(str, cert)) if isinstance(cert, tuple) else str(cert)
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def post(self, path: str, **form: str) -> requests.Response:
        return self.session.post(f"{self.base}/{path}", data=form, timeout=120,
                                 verify=self.verify)

    def __repr__(self) -> str:
        return f"Caller({self.name})"


@pytest.fixture(scope="module")
def fuzz_cfg(instance: Any, tmp_path_factory: pytest.TempPathFactory) -> Config:
    return fuzz_config(instance, tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def fuzz_server(fuzz_cfg: Config) -> Iterator[ThreadedServer]:
    with serve_everything(fuzz_cfg) as server:
        yield server


@pytest.fixture(scope="module")
def callers(fuzz_server: ThreadedServer, fuzz_cfg: Config, creds: Creds
            ) -> Iterator[dict[str, Caller]]:
    assert fuzz_cfg.auth.signing is not None
    issuer = TokenIssuer(fuzz_cfg.auth.signing)
    made = {
        "all-rights": Caller(fuzz_server, creds, "all-rights",
                             token=issuer.issue("admin", group=FUZZ_GROUP, vo="demo")),
        "alice": Caller(fuzz_server, creds, "alice", cert=creds.alice),
        "pilot": Caller(fuzz_server, creds, "pilot",
                        token=issuer.issue("pilot", group="demo_pilot", vo="demo")),
        "host": Caller(fuzz_server, creds, "host", cert=creds.host),
        "anonymous": Caller(fuzz_server, creds, "anonymous"),
    }
    yield made
    for caller in made.values():
        caller.session.close()
