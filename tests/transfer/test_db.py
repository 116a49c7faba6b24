"""The transfer tables on SQLite and MariaDB: claims, the push scheduler's limits and leases,
dead movers, and the secret key rotation over stored secrets."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

from cryptography.fernet import Fernet

from core.db import init_schema, make_engine
from core.security.identity import Identity
from transfer.db import associations as adb
from transfer.db import datafiles as ddb
from transfer.db import transfers as tdb
from transfer.db.tables import TRANSFER_SCHEMA
from transfer.logic.associations import rotate_key, store
from transfer.logic.secret_box import SecretBox


def engine_for(db_url: str):  # noqa: ANN201 - an Engine
    engine = make_engine(db_url)
    init_schema(engine, TRANSFER_SCHEMA)
    return engine


def new_transfer(n: int) -> tdb.NewTransfer:
    return tdb.NewTransfer("alice", "demo_user", "demo", 1, "a", "put", "spool", f"t{n}",
                           f"f{n}", None, 1, None, False, False, 3, 1, None, False, False)


def test_two_agents_never_claim_the_same_transfer(db_url: str) -> None:
    engine = engine_for(db_url)
    for n in range(40):
        tdb.insert(engine, new_transfer(n))
    got: dict[str, list[int]] = {}

    def take(name: str) -> None:
        mine: list[int] = []
        while True:
            rows = tdb.claim(engine, name, 3, timedelta(minutes=5))
            if not rows:
                break
            mine += [r.transfer_id for r in rows]
        got[name] = mine

    threads = [threading.Thread(target=take, args=(f"agent{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = sum(got.values(), [])
    assert sorted(everything) == list(range(1, 41))  # each exactly once
    engine.dispose()


def test_assign_respects_source_and_mover_limits_and_leases(db_url: str) -> None:
    engine = engine_for(db_url)
    files = [ddb.NewDataFile("g", host, "ops", f"/d/{host}{i}", 5, None, "SE:/x")
             for host in ("h1", "h2") for i in range(10)]
    ids = ddb.insert_async(engine, "alice", "demo_user", files)
    assert ids == list(range(1, 21))
    for name in ("m1", "m2", "m3"):
        ddb.register_mover(engine, name, "", 3, "host")
    limits = {"h1": 2, "h2": 3}
    got = {m: ddb.assign(engine, m, 10, limits.__getitem__) for m in ("m1", "m2", "m3")}
    assert [len(w) for w in got.values()] == [3, 2, 0]  # 5 = 2 (h1) + 3 (h2)
    hosts = [w.source_host for ws in got.values() for w in ws]
    assert hosts.count("h1") == 2 and hosts.count("h2") == 3
    first = got["m1"][0]
    with_lease = ddb.report(engine, "m1", first.lease, ok=True, error=None,
                            location="SE:/x/f", permanent=False, max_attempts=2,
                            retry_delay=0, started_us=1, ended_us=2)
    assert with_lease.status == "Done"
    again = ddb.assign(engine, "m1", 10, limits.__getitem__, max_per_mover=2)
    assert again == []  # m1 holds 2 files: at the server's per-mover cap
    again = ddb.assign(engine, "m3", 10, limits.__getitem__)
    assert len(again) == 1 and again[0].source_host == first.source_host  # room freed
    # m2 dies: its files go back, its late report is refused
    lost = got["m2"][0]
    assert ddb.beat(engine, "m2", [lost.lease]) == []
    from core.db import utcnow, write_transaction
    from transfer.db.tables import movers

    with write_transaction(engine) as conn:
        conn.execute(movers.update().where(movers.c.name == "m2").values(
            last_beat=utcnow() - timedelta(minutes=5)))
    assert ddb.requeue_dead(engine, timedelta(seconds=30)) == 2
    try:
        ddb.report(engine, "m2", lost.lease, ok=True, error=None, location="x",
                   permanent=False, max_attempts=2, retry_delay=0, started_us=None,
                   ended_us=None)
    except Exception as exc:  # noqa: BLE001 - the class is checked below
        assert type(exc).__name__ == "NotFoundError"
    else:
        raise AssertionError("a dead mover's report was accepted")
    assert ddb.get(engine, lost.file_id).attempts == 0  # the death cost no attempt
    # m3 restarts (registers again): the file it held goes back to the queue
    assert ddb.register_mover(engine, "m3", "", 3, "host") == 1
    assert ddb.get(engine, again[0].file_id).status == "Waiting"
    retry = ddb.report(engine, "m1", got["m1"][1].lease, ok=False, error="boom",
                       permanent=False, max_attempts=1, retry_delay=0, location=None,
                       started_us=None, ended_us=None)
    assert retry.status == "Failed" and "gave up after 1 attempts" in (retry.error or "")
    engine.dispose()


def test_rotation_reencrypts_every_secret(db_url: str, tmp_path: Path) -> None:
    engine = engine_for(db_url)
    box = SecretBox(tmp_path / "keys")
    alice = Identity(auth_method="x509", username="alice", group="demo_user", vo="demo",
                     valid_dn=True, valid_group=True)
    for n in range(3):
        store(engine, box, f"a{n}", {"protocol": "ftp", "host": "h", "user": "u",
                                     "password": f"pw-{n}"}, alice)
    old_key = box.keys()[0]
    tokens = {aid: tok for batch in adb.secrets(engine) for aid, tok in batch}
    assert all(Fernet(old_key).decrypt(t) for t in tokens.values())
    assert rotate_key(engine, box) == 3
    new_key = box.keys()
    assert len(new_key) == 1 and new_key[0] != old_key
    for batch in adb.secrets(engine):
        for aid, tok in batch:
            assert tok != tokens[aid]
            assert b"pw-" in Fernet(new_key[0]).decrypt(tok)
    engine.dispose()


def test_spool_sweep_keeps_what_transfers_use(tmp_path: Path) -> None:
    import os
    import time

    from transfer.logic.spool import Spool

    spool = Spool(tmp_path, reserve_bytes=0)
    kept, orphan = spool.new_ticket("alice", 1), spool.new_ticket("alice", 1)
    for ticket in (kept, orphan):
        writer = spool.writer("alice", ticket, 1)
        writer.write(b"x")
        writer.finish()
    partial = tmp_path / "alice" / ".abc.part"
    partial.write_bytes(b"p")
    old = time.time() - 7200
    for item in (tmp_path / "alice").iterdir():
        os.utime(item, (old, old))
    used = str(spool.path("alice", kept))
    assert spool.sweep(3600, lambda paths: {p for p in paths if p == used}) == 2
    assert sorted(p.name for p in (tmp_path / "alice").iterdir()) == [kept, kept + ".adler32"]


def test_a_forward_is_started_once(db_url: str) -> None:
    from dataclasses import asdict

    from core.db import write_transaction
    from transfer.db.tables import data_files

    engine = engine_for(db_url)
    (fid,) = ddb.insert_async(engine, "alice", "demo_user", [ddb.NewDataFile(
        "g", "h", "u", "/d/f", 1, None, "assoc:a1")])
    with write_transaction(engine) as conn:
        conn.execute(data_files.update().values(status="Forwarding"))
    new = asdict(new_transfer(1))
    first = ddb.start_forward(engine, fid, new)
    assert first is not None and ddb.start_forward(engine, fid, new) is None
    assert [t.transfer_id for t in tdb.list_of(engine, "alice")] == [first]  # rolled back
    assert ddb.get(engine, fid).transfer_id == first
    engine.dispose()
