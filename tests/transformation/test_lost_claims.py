"""A task agent that only *looked* dead: while it was still submitting, a peer recovered its
claims, and part of them were claimed and submitted again. At record time the slow copy
adopts the tasks still free and withdraws its duplicates: each task ends with exactly one
live job (or request), on both databases."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from dms.db.rms import rms_requests
from tests.transformation.conftest import DATA, World
from tests.transformation.test_lifecycle import create, reco
from transformation.agents.task_agents import RequestTaskAgent, WorkflowTaskAgent
from transformation.agents.transformation_agent import TransformationAgent
from transformation.db.tables import log as transformation_log
from transformation.db.tables import tasks as ts_tasks
from transformation.logic import submit
from transformation.logic import transformations as logic
from wms.db.tables import jobs


def interrupting(base: type) -> type:
    """``base`` whose first submission (its store, once the batch is prepared) lets a peer
    act first: the peer recovers this copy's claims (as if its heartbeat had stopped), then
    claims and submits task 1 alone."""

    class Slow(base):  # type: ignore[misc, valid-type]
        interfered = False

        def store(self, trans: Any, prepared: Any) -> dict[int, int]:
            tasks = getattr(prepared, "task_ids", prepared)  # a prepared job batch's
            if not self.interfered:
                self.interfered = True
                peer = base(self.config, instance="peer", period=0.1)
                tid = trans.transformation_id
                engine = self.ts()
                with engine.begin() as conn:
                    conn.execute(ts_tasks.update().values(
                        last_update=sa.func.datetime("now", "-1 hour")
                        if conn.dialect.name == "sqlite"
                        else sa.text("NOW() - INTERVAL 1 HOUR")))
                assert submit.recover_reserved(engine, tid, 1, peer.lookup,
                                               alive=set()) == (0, len(tasks))
                token, claimed = submit.claim(engine, tid, "peer", 1)
                made = peer.submit(trans, claimed)
                assert submit.record(engine, tid, token,
                                     {t: str(e) for t, e in made.items()}) == 1
            return super().store(trans, prepared)  # type: ignore[no-any-return]
    return Slow


def live_targets(world: World, kind: str) -> dict[str, list[int]]:
    """name -> IDs of the jobs (not Deleted) or requests (not Canceled) so named."""
    table, ident, name, status, gone = (
        (jobs, jobs.c.job_id, jobs.c.job_name, jobs.c.status, "Deleted") if kind == "Job"
        else (rms_requests, rms_requests.c.request_id, rms_requests.c.name,
              rms_requests.c.status, "Canceled"))
    out: dict[str, list[int]] = {}
    with world.engine.connect() as conn:
        for number, label, state in conn.execute(sa.select(ident, name, status)
                                                 .select_from(table)):
            if state != gone:
                out.setdefault(label, []).append(number)
    return out


@pytest.mark.parametrize("kind", ["Job", "Request"])
def test_lost_claims_leave_one_live_target_per_task(world: World, kind: str) -> None:
    if kind == "Job":
        world.field("kind", "string")
        world.register([f"{DATA}/lc/f{i}" for i in range(6)])
        world.meta(f"{DATA}/lc", {"kind": "raw"})
        tid = create(world, reco(Status="Active"))  # 3 tasks of 2 files
        agent_class: type = WorkflowTaskAgent
    else:
        world.register([f"{DATA}/lr/f{i}" for i in range(3)], se="DISK-A")
        tid = create(world, {"Name": "repl", "Type": "Replication", "Plugin": "Broadcast",
                             "Body": "ReplicateAndRegister", "TargetSE": ["DISK-B"],
                             "PluginParams": {"SourceSE": ["DISK-A"]}, "Status": "Active",
                             "InputMetaQuery": {"Path": f"{DATA}/lr"}})
        agent_class = RequestTaskAgent
    TransformationAgent(world.config, instance="a", period=0.1).run(once=True)
    slow = interrupting(agent_class)(world.config, instance="slow", period=0.1)
    slow.run(once=True)

    tasks = {t["TaskID"]: t for t in logic.get_tasks(world.engine, "demo",
                                                     {"TransformationID": tid})}
    assert sorted(tasks) == [1, 2, 3]
    assert {t["ExternalStatus"] for t in tasks.values()} == {"Submitted"}
    live = live_targets(world, kind)
    names = {f"{tid:08d}_{n:08d}": n for n in tasks}
    # exactly one live target per task, and it is the one the task points at
    assert sorted(live) == sorted(names)
    for label, numbers in live.items():
        assert numbers == [int(tasks[names[label]]["ExternalID"])], label
    # task 1 was served by the peer: the slow copy's own target for it was withdrawn
    with world.engine.connect() as conn:
        log_lines = list(conn.execute(sa.select(transformation_log.c.message).where(
            transformation_log.c.transformation_id == tid)).scalars())
    assert any("adopted 2 tasks, withdrawing 1 duplicates" in line for line in log_lines)
    table = jobs if kind == "Job" else rms_requests
    with world.engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
    assert total == 4  # the withdrawn duplicate stays as history (Deleted / Canceled)
