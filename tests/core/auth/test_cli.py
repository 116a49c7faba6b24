"""``pilotwms auth``: key rotation from the command line, keys, housekeeping, delegations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.auth.cli import longest_token_lifetime
from core.auth.delegation import store_delegation
from core.auth.grants import AuthServer
from core.cli.admin import main
from core.config.schema import Config


def test_rotate_key_command(auth_cfg: Config, srv: AuthServer, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(auth_cfg.model_dump(mode="json", by_alias=True,
                                                   exclude_none=True)))
    assert main(["auth", "keys", "--config", str(path)]) == 0
    old = capsys.readouterr().out.split()[0]
    assert main(["auth", "rotate-key", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    keep = longest_token_lifetime(auth_cfg)
    assert f"{old} stays trusted for {keep} s" in out and keep >= 2 * 86_400  # pilot tokens
    assert main(["auth", "keys", "--config", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == f"{old}  retired" and lines[0].endswith("current")
    store_delegation(srv.engine, auth_cfg, "alice", "demo_user")
    assert main(["auth", "housekeeping", "--config", str(path)]) == 0
    assert "purged" in capsys.readouterr().out
    assert main(["auth", "delegations", "--config", str(path)]) == 0
    assert "alice" in capsys.readouterr().out
