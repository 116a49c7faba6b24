"""Unattended transfers end to end: the TransferManager service, the TransferAgent and real
remote servers; every fault of the issue (destination down then back, connection cut,
checksum mismatch, wrong password, spool full), notifications through a real SMTP server, and
secrets that never show in the database, the logs or any reply."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config.schema import Config
from core.exceptions import NotFoundError
from core.rpc.client import Credentials
from dms.logic.data_manager import DataManager
from dms.storage import StorageElements
from tests.support.credentials import Creds
from tests.support.smtpd import SMTPServer
from tests.support.tcpproxy import FaultProxy
from tests.transfer.conftest import Remote
from tests.transfer.env import SE, TransferEnv, capture_all_logs, until, wait_final
from transfer.errors import BadAssociationError, SpoolFullError
from transfer.logic.protocols.base import PART_SUFFIX

HOME = "/demo/user/a/alice"


@pytest.fixture
def env(config: Config, tmp_path: Path, creds: Creds, smtp: SMTPServer
        ) -> Iterator[TransferEnv]:
    e = TransferEnv(config, tmp_path, creds, smtp_port=smtp.port).start()
    try:
        yield e
    finally:
        e.stop()


def sftp_assoc(remote: Remote, directory: Path, port: int | None = None,
               password: str | None = None) -> dict:
    return {"protocol": "sftp", "host": remote.host, "port": port or remote.port,
            "user": remote.user, "directory": str(directory),
            "password": password or remote.password}


def submit_file(env: TransferEnv, path: Path, remote: str, **kw: object) -> int:
    client = env.client
    ticket = client.upload(path)
    return client.submit({"Remote": remote, "Source": "spool:" + ticket,
                          "Target": path.name, **kw})


def test_secrets_never_in_db_logs_or_replies_and_key_rotation(
        env: TransferEnv, sftp_host: Remote, tmp_path: Path) -> None:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    logs = capture_all_logs()
    try:
        client = env.client
        target = sftp_host.root / "secret"
        assert client.put_association("sec", sftp_assoc(sftp_host, target)) is True
        seen = client.get_association("sec")
        assert seen["Secrets"] == ["password"] and seen["User"] == sftp_host.user
        client.list_associations()
        (tmp_path / "f1").write_bytes(b"payload-1")
        env.start_agent()
        assert wait_final(client, submit_file(env, tmp_path / "f1", "sec"))["Status"] == "Done"
        keys = env.config.systems["Transfer"].services["TransferManager"].options[
            "SecretKeyFile"]
        before = Path(keys).read_bytes()
        db_before = env.db_bytes()
        from core.db import make_engine
        from transfer.logic.associations import rotate_key
        from transfer.logic.secret_box import SecretBox

        engine = make_engine(env.config.database_url("Transfer"))
        assert rotate_key(engine, SecretBox(Path(keys))) == 1
        engine.dispose()
        assert Path(keys).read_bytes() != before and len(Path(keys).read_bytes().split()) == 1
        (tmp_path / "f2").write_bytes(b"payload-2")  # still usable with the new key only
        assert wait_final(client, submit_file(env, tmp_path / "f2", "sec"))["Status"] == "Done"
        assert (target / "f2").read_bytes() == b"payload-2"
    finally:
        root.removeHandler(logs)
        root.setLevel(level)
    secret = sftp_host.password.encode()
    assert secret not in db_before and secret not in env.db_bytes()
    assert not any(sftp_host.password in line for line in logs.lines)
    assert len(logs.lines) > 20  # the logs were really captured
    assert env.replies.bodies and not any(secret in body for body in env.replies.bodies)


def test_put_with_mail_on_success(env: TransferEnv, sftp_host: Remote, smtp: SMTPServer,
                                  tmp_path: Path) -> None:
    client = env.client
    client.put_association("ok", sftp_assoc(sftp_host, sftp_host.root / "ok"))
    data = os.urandom(200_000)
    (tmp_path / "product.grib").write_bytes(data)
    tid = submit_file(env, tmp_path / "product.grib", "ok", MailTo="ops@example.org",
                      OnSuccess=True)
    env.start_agent()
    done = wait_final(client, tid)
    assert done["Status"] == "Done" and done["Attempts"] == 1
    assert [a["OK"] for a in done["AttemptLog"]] == [True]
    assert (sftp_host.root / "ok" / "product.grib").read_bytes() == data
    pinned = client.get_association("ok")["Options"]["host_key"]  # kept on first use
    assert pinned.startswith("ssh-ed25519 ")
    mail = smtp.wait_for(1)[0]
    assert mail["To"] == "ops@example.org"
    assert mail["Subject"] == f"pilotwms transfer {tid} Done: product.grib -> ok"
    assert "Attempts: 1" in mail.get_payload()
    assert not list((tmp_path / "spool" / "alice").glob("[0-9a-f]*"))  # spool freed


def test_destination_down_then_back_arrives_once(env: TransferEnv, sftp_host: Remote,
                                                 tmp_path: Path) -> None:
    proxy = FaultProxy(("127.0.0.1", sftp_host.port))  # not listening yet: host down
    try:
        client = env.client
        target = sftp_host.root / "downup"
        client.put_association("down", sftp_assoc(sftp_host, target, port=proxy.port))
        (tmp_path / "d.dat").write_bytes(b"x" * 5000)
        tid = submit_file(env, tmp_path / "d.dat", "down", RetryCount=20, RetryFrequency=1)
        env.start_agent()
        waiting = until(lambda: (lambda r: r if r["Attempts"] >= 2 else None)(
            client.get_transfer(tid)), message="two failed attempts")
        assert waiting["Status"] in ("Waiting", "Assigned")
        assert "refused" in (waiting["Error"] or "").lower()
        assert not target.exists() or not (target / "d.dat").exists()
        proxy.up()
        done = wait_final(client, tid)
        assert done["Status"] == "Done"
        log = done["AttemptLog"]
        assert [a["OK"] for a in log] == [False] * (len(log) - 1) + [True]
        assert all("refused" in a["Error"].lower() for a in log[:-1])
        assert (target / "d.dat").read_bytes() == b"x" * 5000
        assert sorted(p.name for p in target.iterdir()) == ["d.dat"]  # once, no leftovers
    finally:
        proxy.stop()


def test_connection_cut_mid_transfer_is_retried_and_resumed(
        env: TransferEnv, sftp_host: Remote, tmp_path: Path) -> None:
    proxy = FaultProxy(("127.0.0.1", sftp_host.port)).start()
    proxy.cut_after, proxy.cuts = 1_200_000, 1
    try:
        client = env.client
        target = sftp_host.root / "cut-e2e"
        client.put_association("cut", sftp_assoc(sftp_host, target, port=proxy.port))
        data = os.urandom(4 * 1024 * 1024)
        (tmp_path / "big.dat").write_bytes(data)
        tid = submit_file(env, tmp_path / "big.dat", "cut", RetryCount=3, RetryFrequency=2)
        env.start_agent()
        failed_once = until(lambda: (lambda r: r if r["Attempts"] >= 1 and r["Status"] ==
                                     "Waiting" else None)(client.get_transfer(tid)),
                            message="the cut attempt")
        assert not (target / "big.dat").exists()  # no partial file at the destination
        assert failed_once["AttemptLog"][0]["OK"] is False
        done = wait_final(client, tid)
        assert done["Status"] == "Done" and proxy.cut_count == 1
        assert (target / "big.dat").read_bytes() == data
        assert done["AttemptLog"][-1]["Bytes"] < len(data)  # resumed from the partial copy
        assert not list(target.glob(f"*{PART_SUFFIX}"))
    finally:
        proxy.stop()


def test_checksum_mismatch_refused_retried_then_failed(env: TransferEnv, ftp_host: Remote,
                                                       tmp_path: Path, smtp: SMTPServer
                                                       ) -> None:
    client = env.client
    client.put_association("ftp", {"protocol": "ftp", "host": ftp_host.host,
                                   "port": ftp_host.port, "user": ftp_host.user,
                                   "password": ftp_host.password, "directory": "/cks"})
    (tmp_path / "c.dat").write_bytes(b"A" * 10_000)
    tid = submit_file(env, tmp_path / "c.dat", "ftp", RetryCount=2, RetryFrequency=1,
                      MailTo="ops@example.org", OnFailure=True)
    spooled = next(p for p in (tmp_path / "spool" / "alice").iterdir()
                   if len(p.name) == 32)
    spooled.write_bytes(b"B" * 10_000)  # the spooled copy is damaged behind our back
    env.start_agent()
    failed = wait_final(client, tid)
    assert failed["Status"] == "Failed" and failed["Attempts"] == 3
    assert "checksum mismatch" in failed["Error"] and "gave up after 3" in failed["Error"]
    assert all("checksum mismatch" in a["Error"] for a in failed["AttemptLog"])
    assert not (ftp_host.root / "cks" / "c.dat").exists()
    assert not list((ftp_host.root / "cks").glob("*"))  # the refused temp files are gone
    mail = smtp.wait_for(1)[0]
    assert "Failed" in mail["Subject"] and "checksum mismatch" in mail.get_payload()


def test_wrong_password_fails_fast_then_restart(env: TransferEnv, sftp_host: Remote,
                                                tmp_path: Path) -> None:
    client = env.client
    target = sftp_host.root / "wrongpw"
    client.put_association("bad", sftp_assoc(sftp_host, target, password="wrong-password"))
    (tmp_path / "w.dat").write_bytes(b"w")
    tid = submit_file(env, tmp_path / "w.dat", "bad", RetryCount=50, RetryFrequency=1)
    env.start_agent()
    failed = wait_final(client, tid)
    assert failed["Status"] == "Failed" and failed["Attempts"] == 1  # no retry storm
    assert "authentication failed" in failed["Error"]
    client.put_association("bad", sftp_assoc(sftp_host, target))  # fixed
    assert client.restart(tid) is True
    assert wait_final(client, tid)["Status"] == "Done"
    assert (target / "w.dat").read_bytes() == b"w"
    client.delete(tid)
    with pytest.raises(NotFoundError):
        client.get_transfer(tid)


def test_get_from_ftps_lfn_source_to_webdav_and_se_association(
        env: TransferEnv, ftps_host: Remote, dav_host: Remote, tmp_path: Path) -> None:
    client = env.client
    (ftps_host.root / "out").mkdir(exist_ok=True)
    (ftps_host.root / "out" / "remote.dat").write_bytes(b"from afar" * 1000)
    client.put_association("ftps", {"protocol": "ftps", "host": ftps_host.host,
                                    "port": ftps_host.port, "user": ftps_host.user,
                                    "password": ftps_host.password, "directory": "/out"})
    client.put_association("dav", {"protocol": "https", "host": dav_host.host,
                                   "port": dav_host.port, "user": dav_host.user,
                                   "password": dav_host.password, "directory": "/lfn"})
    client.put_association("se", {"protocol": "se", "host": SE,
                                  "directory": f"{HOME}/pushed"})
    with pytest.raises(BadAssociationError, match="may not write"):
        client.put_association("se2", {"protocol": "se", "host": SE,
                                       "directory": "/demo/user/b/bob"})
    creds = Credentials(cert=env.creds.alice[0], key=env.creds.alice[1])
    ses = StorageElements.from_config(env.config, credentials=creds, ca_dir=env.creds.ca_dir)
    from dms.catalog_client import FileCatalogClient

    dm = DataManager(FileCatalogClient(env.rpc("DataManagement/FileCatalog")), ses)
    (tmp_path / "cat.dat").write_bytes(b"catalogued")
    dm.put_and_register(f"{HOME}/cat.dat", tmp_path / "cat.dat", SE)
    (tmp_path / "to-se.dat").write_bytes(b"into our SE")
    get = client.submit({"Remote": "ftps", "Direction": "get", "Source": "remote.dat"})
    lfn = client.submit({"Remote": "dav", "Source": f"lfn:{HOME}/cat.dat"})
    se = submit_file(env, tmp_path / "to-se.dat", "se")
    env.start_agent()
    for tid in (get, lfn, se):
        assert wait_final(client, tid)["Status"] == "Done", client.get_transfer(tid)
    assert client.download_result(get, tmp_path / "back.dat") == 9000
    assert (tmp_path / "back.dat").read_bytes() == b"from afar" * 1000
    assert (dav_host.root / "lfn" / "cat.dat").read_bytes() == b"catalogued"
    assert (tmp_path / "se" / HOME.lstrip("/") / "pushed" / "to-se.dat").read_bytes() == \
        b"into our SE"


@pytest.fixture
def small_spool(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "spoolfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                   check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_spool_full_is_refused_at_submission(config: Config, tmp_path: Path, creds: Creds,
                                             small_spool: Path, sftp_host: Remote) -> None:
    env = TransferEnv(config, tmp_path, creds,
                      manager={"SpoolDir": str(small_spool)}).start()
    try:
        client = env.client
        client.put_association("s", sftp_assoc(sftp_host, sftp_host.root / "spool"))
        (tmp_path / "a.dat").write_bytes(os.urandom(1_200_000))
        first = submit_file(env, tmp_path / "a.dat", "s")
        with pytest.raises(SpoolFullError, match="spool cannot take 1200000 bytes"):
            submit_file(env, tmp_path / "a.dat", "s")
        assert [t["TransferID"] for t in client.list_transfers()] == [first]
        stored = [p for p in (small_spool / "alice").iterdir()]
        assert sorted(p.name for p in stored if not p.name.endswith(".adler32")) == \
            sorted(p.name for p in stored if len(p.name) == 32)
        assert len([p for p in stored if len(p.name) == 32]) == 1  # nothing half-stored
        # a write that still finds the disk full (concurrent uploads) leaves nothing either
        from transfer.logic.spool import SpoolWriter

        writer = SpoolWriter(small_spool / "alice" / ("f" * 32), 3_000_000)
        with pytest.raises(SpoolFullError, match="filled up"):
            for _ in range(30):
                writer.write(b"z" * 100_000)
        assert not (small_spool / "alice" / ("f" * 32)).exists()
        assert not list((small_spool / "alice").glob(".*.part"))
    finally:
        env.stop()


def test_source_from_a_job_output_sandbox(env: TransferEnv, ftp_host: Remote) -> None:
    import hashlib
    import io
    import tarfile

    from core.db import init_schema, make_engine, utcnow
    from wms.db.jobs import NewJob, insert_jobs
    from wms.db.schema import WMS_SCHEMA
    from wms.logic.sandboxes import Requester, StoreSettings, assign, store_bytes

    url = env.config.database_url("WorkloadManagement")
    engine = make_engine(url)
    init_schema(engine, WMS_SCHEMA)
    with engine.begin() as conn:
        (job,) = insert_jobs(conn, [NewJob("alice", "demo_user", "demo", "Done", "Execution "
                                           "Complete", "[Executable = \"x\"]")],
                             now=utcnow(), source="test")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:bz2") as tar:
        payload = b"job result\n" * 100
        info = tarfile.TarInfo("result.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    archive = buffer.getvalue()
    settings = StoreSettings.from_section({}, default_max_mib=10, database_url=url)
    owner = Requester("alice", "demo_user", "demo")
    sb = store_bytes(engine, settings, owner, hashlib.md5(archive).hexdigest() + ".tar.bz2",  # noqa: S324
                     archive)
    assign(engine, settings, owner, {f"Job:{job}": [(sb, "Output")]})
    engine.dispose()
    client = env.client
    client.put_association("ftp", {"protocol": "ftp", "host": ftp_host.host,
                                   "port": ftp_host.port, "user": ftp_host.user,
                                   "password": ftp_host.password, "directory": "/jobs"})
    tid = client.submit({"Remote": "ftp", "Source": f"job:{job}:result.txt",
                         "Target": f"job{job}.txt"})
    other = client.submit({"Remote": "ftp", "Source": f"job:{job}:missing.txt",
                           "Target": "m.txt", "RetryCount": 5})
    env.start_agent()
    assert wait_final(client, tid)["Status"] == "Done"
    assert (ftp_host.root / "jobs" / f"job{job}.txt").read_bytes() == payload
    missing = wait_final(client, other)
    assert missing["Status"] == "Failed" and missing["Attempts"] == 1
    assert "missing.txt is not in the output sandbox" in missing["Error"]


def test_a_slow_transfer_does_not_hold_up_the_others(env: TransferEnv, sftp_host: Remote,
                                                     ftp_host: Remote, tmp_path: Path) -> None:
    proxy = FaultProxy(("127.0.0.1", sftp_host.port), rate=400_000).start()
    try:
        client = env.client
        client.put_association("slow", sftp_assoc(sftp_host, sftp_host.root / "slow",
                                                  port=proxy.port))
        client.put_association("fast", {"protocol": "ftp", "host": ftp_host.host,
                                        "port": ftp_host.port, "user": ftp_host.user,
                                        "password": ftp_host.password, "directory": "/fast"})
        (tmp_path / "slow.dat").write_bytes(os.urandom(3_000_000))
        (tmp_path / "fast.dat").write_bytes(b"quick")
        slow = submit_file(env, tmp_path / "slow.dat", "slow")
        env.start_agent()
        until(lambda: client.get_transfer(slow)["Status"] == "Assigned", timeout=30,
              message="slow transfer running")
        fast = submit_file(env, tmp_path / "fast.dat", "fast")
        assert wait_final(client, fast)["Status"] == "Done"
        assert client.get_transfer(slow)["Status"] == "Assigned"  # still on its way
        assert wait_final(client, slow)["Status"] == "Done"
        assert (sftp_host.root / "slow" / "slow.dat").stat().st_size == 3_000_000
    finally:
        proxy.stop()
