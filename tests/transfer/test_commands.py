"""``dassoc`` and ``dtransfer`` as users run them (real subprocesses against a real server)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config.schema import Config
from tests.support.credentials import Creds
from tests.transfer.conftest import Remote
from tests.transfer.env import TransferEnv, command


@pytest.fixture
def env(config: Config, tmp_path: Path, creds: Creds) -> Iterator[TransferEnv]:
    e = TransferEnv(config, tmp_path, creds).start()
    try:
        yield e
    finally:
        e.stop()


def test_dassoc_put_get_list_delete_protocols(env: TransferEnv, sftp_host: Remote) -> None:
    assert sftp_host.key is not None
    desc = env.base / "a1.yaml"
    desc.write_text(f"protocol: sftp\nhost: {sftp_host.host}\nport: {sftp_host.port}\n"
                    f"user: {sftp_host.user}\ndirectory: {sftp_host.root}/cli\n"
                    f"private_key_file: {sftp_host.key}\n"
                    "options: {umask: '022', overwrite: true}\n")
    assert command(env, "dassoc", "put", "a1", str(desc)).stdout == \
        "association a1 created\n"
    assert command(env, "dassoc", "put", "a1", str(desc)).stdout == \
        "association a1 replaced\n"
    got = json.loads(command(env, "dassoc", "get", "a1", "-f", "json").stdout)
    assert got["Protocol"] == "sftp" and got["Secrets"] == ["private_key"]
    assert got["Options"] == {"overwrite": True, "umask": "022"}
    text = command(env, "dassoc", "get", "a1").stdout
    assert "Secrets: private_key" in text and "PRIVATE KEY" not in text
    listing = command(env, "dassoc", "list").stdout.splitlines()
    assert listing[0].split() == ["Name", "Protocol", "Host", "Port", "User", "Directory"]
    assert listing[1].split()[:2] == ["a1", "sftp"]
    protocols = json.loads(command(env, "dassoc", "protocols", "-f", "json").stdout)
    assert sorted(protocols) == ["ftp", "ftps", "https", "se", "sftp"]
    bad = env.base / "bad.yaml"
    bad.write_text("protocol: gopher\nhost: h\n")
    failed = command(env, "dassoc", "put", "b", str(bad), check=False)
    assert failed.returncode == 2 and "protocol must be one of" in failed.stderr
    assert command(env, "dassoc", "delete", "a1").stdout == "association a1 deleted\n"
    gone = command(env, "dassoc", "get", "a1", check=False)
    assert gone.returncode == 2 and "no association 'a1'" in gone.stderr


def test_dtransfer_sync_check_list_restart_delete(env: TransferEnv, sftp_host: Remote
                                                  ) -> None:
    desc = env.base / "s.yaml"
    desc.write_text(f"protocol: sftp\nhost: {sftp_host.host}\nport: {sftp_host.port}\n"
                    f"user: {sftp_host.user}\ndirectory: {sftp_host.root}/cli-sync\n"
                    f"password: {sftp_host.password}\n")
    command(env, "dassoc", "put", "s", str(desc))
    local = env.base / "report.txt"
    local.write_text("the forecast\n")
    env.start_agent()
    out = command(env, "dtransfer", "-remote", "s", "-source", str(local), "-sync")
    tid = int(out.stdout.strip())
    assert (sftp_host.root / "cli-sync" / "report.txt").read_text() == "the forecast\n"
    again = command(env, "dtransfer", "-remote", "s", "-source", str(local), "-sync",
                    check=False)  # exists, no -overwrite: fails at once, exit 2
    assert again.returncode == 2 and "exists" in again.stderr and "(use -overwrite)" in \
        again.stderr
    failed_id = int(again.stdout.strip())
    check = json.loads(command(env, "dtransfer", "-check", str(failed_id), "-f",
                               "json").stdout)
    assert check["Status"] == "Failed" and check["RetryCount"] == 0 and check["Sync"] is True
    assert len(check["AttemptLog"]) == 1
    text = command(env, "dtransfer", "-check", str(tid)).stdout
    assert "Status: Done" in text and "attempt 1 " in text and "ok" in text
    listing = command(env, "dtransfer", "list").stdout.splitlines()
    assert listing[0].split()[:3] == ["TransferID", "Status", "Remote"]
    assert {line.split()[0] for line in listing[1:]} == {str(tid), str(failed_id)}
    refused = command(env, "dtransfer", "restart", str(tid), check=False)
    assert refused.returncode == 2 and "only Failed or Canceled" in refused.stderr
    over = command(env, "dtransfer", "-remote", "s", "-source", str(local), "-overwrite",
                   "-retryCnt", "3", "-retryFrq", "1s")
    assert int(over.stdout) > failed_id
    assert command(env, "dtransfer", "delete", str(failed_id)).stdout == \
        f"transfer {failed_id} deleted\n"
    (sftp_host.root / "cli-sync" / "remote.txt").write_text("fetched\n")
    got = command(env, "dtransfer", "-remote", "s", "-get", "-source", "remote.txt", "-sync",
                  "-target", "got.txt")
    assert (env.base / "got.txt").read_text() == "fetched\n"
    command(env, "dtransfer", "-download", got.stdout.strip(), "-target", "again.txt")
    assert (env.base / "again.txt").read_text() == "fetched\n"
    missing = command(env, "dtransfer", "-remote", "s", "-source", "/no/such", check=False)
    assert missing.returncode == 2 and "no such local file" in missing.stderr
    bad = command(env, "dtransfer", "-remote", "s", "-source", str(local), "-retryFrq",
                  "soon", check=False)
    assert bad.returncode == 2 and "not a duration" in bad.stderr
