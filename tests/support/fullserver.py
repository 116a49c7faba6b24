"""One server hosting every installed service (the ``pilotwms.services`` entry points), as the
hostile-input, fuzz and authorisation-matrix tests need it: services added later by other
systems are picked up without touching the tests.

:func:`full_config` turns the session instance's configuration into one whose state lives in
``tmp_path`` (SQLite database, sandbox store, the disk SE ``DIRAC-USER``) with the login server
configured (its IdP is never reached by these tests), on a free port fixed in advance so that
the SE's and the issuer's URLs are right.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.cli.dbcmd import init_all
from core.config.schema import Config
from core.rpc.runner import available_services
from core.rpc.service import Service
from tests.support.servers import ThreadedServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def full_config(config: Config, tmp_path: Path, *, port: int | None = None,
                server: dict[str, Any] | None = None) -> Config:
    """``config`` with every system's state under ``tmp_path`` and the login server on."""
    port = port or free_port()
    data = config.model_dump(by_alias=True, exclude_none=True)
    data["Database"] = f"sqlite:///{tmp_path / 'pilotwms.db'}"
    data["Server"]["Port"] = port
    data["Server"].update(server or {})
    assert config.auth.signing is not None
    key = tmp_path / "keys" / "jwk.json"
    key.parent.mkdir(exist_ok=True)
    shutil.copy(config.auth.signing.key_file, key)
    data["Auth"]["Signing"].update({"Issuer": f"https://127.0.0.1:{port}", "KeyFile": str(key)})
    data["Auth"]["Server"] = {
        "PollInterval": 0,
        # never contacted: the tests stop before any redirection to the IdP is followed
        "IdPs": {"demo": {"Issuer": "https://127.0.0.1:9/idp", "ClientID": "pilotwms",
                          "ClientSecret": "secret", "Scopes": ["openid"],
                          "GroupsClaim": "groups"}},
    }
    ses = data.setdefault("Resources", {}).setdefault("StorageElements", {})
    ses["DIRAC-USER"] = {"Protocols": [{"Plugin": "HTTPS", "Host": "127.0.0.1", "Port": port,
                                        "Path": str(tmp_path / "se")}]}
    cfg = Config.model_validate(data)
    init_all(cfg)
    return cfg


def every_service() -> list[type[Service]]:
    """Every installed service class, sorted by ``System/Service``."""
    found = available_services()
    return [found[name] for name in sorted(found)]


@contextmanager
def serve_everything(cfg: Config) -> Iterator[ThreadedServer]:
    with ThreadedServer(cfg, every_service(), port=cfg.server.port) as server:
        yield server
