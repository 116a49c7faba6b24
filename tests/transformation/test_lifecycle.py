"""The transformation system's logic and agents on both databases, in process: bad input,
the status machine, the catalog journal reaching transformations, tasks made by plugins,
tasks submitted as jobs and requests, statuses followed, retries and MaxReset."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from core.exceptions import (
    AlreadyExistsError,
    InvalidArgumentError,
    InvalidTransitionError,
    NotAuthorizedError,
)
from dms.db.rms import rms_requests
from dms.logic import namespace
from tests.transformation.conftest import ALICE, DATA, DM_ADMIN, MANAGER, USER, World
from transformation.agents.monitor import TransformationMonitor
from transformation.agents.task_agents import RequestTaskAgent, WorkflowTaskAgent
from transformation.agents.transformation_agent import TransformationAgent
from transformation.db.tables import files as ts_files
from transformation.db.tables import tasks as ts_tasks
from transformation.db.tables import transformations as ts_trans
from transformation.logic import files as files_logic
from transformation.logic import transformations as logic
from wms.db.tables import job_jdls, jobs
from wms.logic.jdl import parse_jdl

TEMPLATE = '[Executable = "/bin/sh"; Arguments = "-c true"; CPUTime = 600;]'


def reco(**extra: object) -> dict[str, object]:
    return {"Name": "reco", "Type": "Processing", "GroupSize": 2, "Body": TEMPLATE,
            "InputMetaQuery": {"kind": "raw"}, **extra}


def create(world: World, description: dict[str, object]) -> int:
    return logic.create(world.engine, world.catalog, world.settings, MANAGER, description)


def count(world: World, table: sa.Table) -> int:
    with world.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def file_statuses(world: World, tid: int) -> dict[str, int]:
    return {k: v for k, v in logic.file_stats(world.engine, tid).items() if k != "Total"}


def agent(cls: type, world: World, name: str = "a") -> object:
    return cls(world.config, instance=name, period=0.1)


@pytest.mark.parametrize(("change", "field"), [
    ({"InputMetaQuery": {"kind": {"~": "raw"}}}, "InputMetaQuery"),
    ({"InputMetaQuery": {"nofield": 1}}, "InputMetaQuery"),
    ({"Plugin": "Nope"}, "Plugin"),
    ({"Body": "[Executable = ;"}, "Body"),
    ({"Body": '[Arguments = "x";]'}, "Body"),
    ({"GroupSize": 0}, "GroupSize"),
    ({"Type": "Cooking"}, "Type"),
    ({"Name": ""}, "TransformationName"),
    ({"PluginParams": {"MetaKey": 3}, "Plugin": "ByMetadata"}, "PluginParams"),
])
def test_bad_input_names_the_field_and_creates_nothing(lite: World, change: dict[str, object],
                                                       field: str) -> None:
    lite.field("kind", "string")
    with pytest.raises(InvalidArgumentError, match=field):
        create(lite, reco(**change))
    assert count(lite, ts_trans) == 0


def test_a_name_in_use_is_refused_and_nothing_half_created(world: World) -> None:
    world.field("kind", "string")
    create(world, reco())
    with pytest.raises(AlreadyExistsError, match="TransformationName 'reco'"):
        create(world, reco(InputFiles=[]))
    assert count(world, ts_trans) == 1
    with pytest.raises(InvalidArgumentError, match="InputFiles"):
        create(world, reco(Name="other", InputFiles=["/demo/nope"]))
    assert count(world, ts_trans) == 1


def test_status_machine_and_rights(lite: World) -> None:
    lite.field("kind", "string")
    with pytest.raises(NotAuthorizedError):
        logic.set_status(lite.engine, USER, create(lite, reco()), "Active")
    tid = 1
    logic.set_status(lite.engine, MANAGER, tid, "Active")
    with pytest.raises(InvalidTransitionError, match="from Active to New"):
        logic.set_status(lite.engine, MANAGER, tid, "New")
    owner = logic.Actor("admin", "demo_user", "demo", frozenset())
    logic.set_status(lite.engine, owner, tid, "Stopped")  # owners may stop their own
    with pytest.raises(NotAuthorizedError):
        logic.set_status(lite.engine, owner, tid, "Active")
    # DIRAC's checkPermissions: ProductionUser changes their own, ProductionSharing their
    # group's (the author is admin@demo_prod), nothing else
    for who, mine in ((logic.Actor("admin", "demo_user", "demo", frozenset({"ProductionUser"})),
                       True),
                      (logic.Actor("alice", "demo_user", "demo", frozenset({"ProductionUser"})),
                       False),
                      (logic.Actor("alice", "demo_prod", "demo",
                                   frozenset({"ProductionSharing"})), True),
                      (logic.Actor("alice", "demo_user", "demo",
                                   frozenset({"ProductionSharing"})), False)):
        if not mine:
            with pytest.raises(NotAuthorizedError, match=f"permissions for transformation {tid}"):
                logic.set_status(lite.engine, who, tid, "Stopped")
            with pytest.raises(NotAuthorizedError):
                logic.extend(lite.engine, who, tid, 1)
            continue
        logic.set_status(lite.engine, who, tid, "Active")
        logic.set_status(lite.engine, who, tid, "Stopped")
    logic.set_status(lite.engine, MANAGER, tid, "Cleaning")
    logic.set_status(lite.engine, MANAGER, tid, "Cleaned")
    with pytest.raises(InvalidTransitionError, match="from Cleaned to Active"):
        logic.set_status(lite.engine, MANAGER, tid, "Active")
    messages = [r["Message"] for r in logic.logging(lite.engine, tid, "demo")]
    assert messages[0] == "Transformation created"
    assert "Status changed from Active to Stopped" in messages
    assert [r["Author"] for r in logic.logging(lite.engine, tid, "demo")][2] == "admin"
    other_vo = logic.Actor("x", "g", "other", frozenset({"ProductionManagement"}))
    with pytest.raises(Exception, match="does not exist"):
        logic.set_status(lite.engine, other_vo, tid, "Active")


def test_parameters_and_additional_parameters(lite: World) -> None:
    lite.field("kind", "string")
    tid = create(lite, reco(Parameters={"Campaign": "2026", "TasksInFlight": 3}))
    logic.set_parameter(lite.engine, lite.catalog, lite.settings, MANAGER, tid,
                        "GroupSize", 5)
    with pytest.raises(InvalidArgumentError, match="GroupSize"):
        logic.set_parameter(lite.engine, lite.catalog, lite.settings, MANAGER, tid,
                            "GroupSize", 0)
    logic.set_parameter(lite.engine, lite.catalog, lite.settings, MANAGER, tid,
                        "Priority", {"a": 1})
    info = logic.get(lite.engine, tid, "demo", extra_params=True)
    assert info["GroupSize"] == 5 and info["Campaign"] == "2026"
    assert info["TasksInFlight"] == 3 and info["Priority"] == {"a": 1}


def test_registered_files_reach_the_transformation_and_become_jobs(world: World) -> None:
    """The whole chain in process: journal -> files -> tasks -> bulk jobs -> statuses ->
    Processed; a failing task is retried, a file failing twice ends MaxReset."""
    world.field("kind", "string")
    world.field("run", "int")
    world.register([f"{DATA}/old/f{i}" for i in range(3)])
    world.meta(f"{DATA}/old", {"kind": "raw", "run": 1})
    tid = create(world, reco(Status="Active"))
    ta = agent(TransformationAgent, world)
    ta.run(once=True)  # journal watermark set, the past reconciled: 3 files, 1 task
    assert file_statuses(world, tid) == {"Assigned": 2, "Unused": 1}
    # new files: registered, then their directory described: the journal brings them
    world.register([f"{DATA}/new/f{i}" for i in range(5)])
    world.meta(f"{DATA}/new", {"kind": "raw", "run": 2})
    world.register([f"{DATA}/other/f0"])  # does not match
    ta.run(once=True)
    assert logic.file_stats(world.engine, tid)["Total"] == 8
    assert file_statuses(world, tid) == {"Assigned": 8}
    # a file's own metadata can make it match too
    world.register([f"{DATA}/solo/s1"])
    world.meta(f"{DATA}/solo/s1", {"kind": "raw"})
    ta.run(once=True)
    assert logic.file_stats(world.engine, tid)["Total"] == 9

    wta = agent(WorkflowTaskAgent, world)
    wta.run(once=True)
    tasks = logic.get_tasks(world.engine, "demo", {"TransformationID": tid},
                            input_vector=True)
    assert [t["ExternalStatus"] for t in tasks] == ["Submitted"] * 4
    job_ids = [int(t["ExternalID"]) for t in tasks]
    with world.engine.connect() as conn:
        rows = {r.job_id: r for r in conn.execute(sa.select(jobs).where(
            jobs.c.job_id.in_(job_ids)))}
        jdl = parse_jdl(conn.execute(sa.select(job_jdls.c.original_jdl).where(
            job_jdls.c.job_id == job_ids[0])).scalar_one())
    assert {r.status for r in rows.values()} == {"Waiting"}
    assert {r.job_group for r in rows.values()} == {f"{tid:08d}"}
    assert {r.job_type for r in rows.values()} == {"Processing"}
    assert rows[job_ids[0]].owner == "admin"
    assert jdl["OutputPath"] == f"/demo/prod/{tid:08d}/00000001"
    assert jdl["InputData"] == [f"LFN:{x}" for x in tasks[0]["InputVector"].split(";")]
    assert jdl["JobName"] == f"{tid:08d}_00000001" and jdl["TaskID"] == 1
    # the output directory belongs to the author
    assert world.catalog.dir_id(f"/demo/prod/{tid:08d}") is not None

    def set_job(job: int, status: str) -> None:
        with world.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.job_id == job).values(status=status))

    mon = agent(TransformationMonitor, world)
    set_job(job_ids[0], "Running")
    set_job(job_ids[1], "Done")
    set_job(job_ids[2], "Failed")
    mon.run(once=True)
    stats = file_statuses(world, tid)
    assert stats == {"Assigned": 4, "Processed": 2, "Unused": 3}  # 1 was left over
    statuses = {t["TaskID"]: t["ExternalStatus"] for t in logic.get_tasks(
        world.engine, "demo", {"TransformationID": tid})}
    assert statuses == {1: "Running", 2: "Done", 3: "Failed", 4: "Waiting"}
    failed = files_logic.get_files(world.engine, world.catalog, "demo",
                             {"TransformationID": tid, "Status": "Unused"})
    assert sorted(f["ErrorCount"] for f in failed) == [0, 1, 1]
    # the failed files are regrouped, resubmitted, fail again: MaxReset (limit 2)
    ta.run(once=True)
    wta.run(once=True)
    retry = [t for t in logic.get_tasks(world.engine, "demo", {"TransformationID": tid})
             if t["TaskID"] == 5]
    set_job(int(retry[0]["ExternalID"]), "Killed")
    mon.run(once=True)
    assert file_statuses(world, tid)["MaxReset"] == 2
    maxed = files_logic.get_files(world.engine, world.catalog, "demo",
                            {"TransformationID": tid, "Status": "MaxReset"})
    assert {f["ErrorCount"] for f in maxed} == {2}
    assert all(f["LFN"].startswith(DATA) for f in maxed)
    # reset-files gives them another chance
    assert files_logic.reset_files(world.engine, MANAGER, tid, "MaxReset") == 2
    assert file_statuses(world, tid)["Unused"] == 3

    # a file removed from the catalog while Unused becomes Removed (Stopped: no tasks made)
    logic.set_status(world.engine, MANAGER, tid, "Stopped")
    world.register([f"{DATA}/new/late"])
    ta.run(once=True)
    assert file_statuses(world, tid)["Unused"] == 4
    [late] = files_logic.get_files(world.engine, world.catalog, "demo",
                             {"TransformationID": tid, "Status": "Unused",
                              "LFN": [f"{DATA}/new/late"]})
    assert namespace.remove_files(world.engine, DM_ADMIN, [late["LFN"]]).failed == {}
    ta.run(once=True)
    assert file_statuses(world, tid).get("Removed") == 1


def test_flush_makes_the_last_small_task_then_goes_back_to_active(lite: World) -> None:
    lite.field("kind", "string")
    lite.register([f"{DATA}/r/f{i}" for i in range(3)])
    lite.meta(f"{DATA}/r", {"kind": "raw"})
    tid = create(lite, reco(Status="Active", GroupSize=2))
    ta = agent(TransformationAgent, lite)
    ta.run(once=True)
    assert logic.task_stats(lite.engine, tid)["TotalCreated"] == 1
    logic.set_status(lite.engine, MANAGER, tid, "Flush")
    ta.run(once=True)
    assert logic.task_stats(lite.engine, tid)["TotalCreated"] == 2
    assert logic.get(lite.engine, tid, "demo")["Status"] == "Active"


def test_replication_makes_requests_and_follows_them(world: World) -> None:
    world.register([f"{DATA}/m/f{i}" for i in range(3)], se="DISK-A")
    world.register([f"{DATA}/m/g0"], se="DISK-B")
    tid = create(world, {"Name": "repl", "Type": "Replication", "Plugin": "Broadcast",
                         "Body": "ReplicateAndRegister", "TargetSE": ["DISK-B"],
                         "PluginParams": {"SourceSE": ["DISK-A"]}, "Status": "Active",
                         "InputMetaQuery": {"Path": f"{DATA}/m"}})
    agent(TransformationAgent, world).run(once=True)
    # g0 is already on DISK-B and not on the source: it waits; f* get one task each
    assert file_statuses(world, tid) == {"Assigned": 3, "Unused": 1}
    agent(RequestTaskAgent, world).run(once=True)
    with world.engine.connect() as conn:
        requests = conn.execute(sa.select(rms_requests)).fetchall()
    assert sorted(r.name for r in requests) == [f"{tid:08d}_0000000{i}" for i in (1, 2, 3)]
    assert {r.owner for r in requests} == {"admin"}
    with world.engine.begin() as conn:
        conn.execute(rms_requests.update().values(status="Done"))
    agent(TransformationMonitor, world).run(once=True)
    assert file_statuses(world, tid) == {"Processed": 3, "Unused": 1}


def test_mc_extension_and_extend(lite: World) -> None:
    from transformation.agents.mc_extension import MCExtensionAgent

    tid = create(lite, {"Name": "sim", "Type": "MCSimulation", "Body": TEMPLATE,
                         "MaxNumberOfTasks": 5, "Parameters": {"TasksInFlight": 2},
                         "Status": "Active"})
    assert logic.extend(lite.engine, MANAGER, tid, 1) == [1]
    mc = agent(MCExtensionAgent, lite)
    mc.run(once=True)
    assert logic.task_stats(lite.engine, tid)["TotalCreated"] == 2
    with lite.engine.begin() as conn:
        conn.execute(ts_tasks.update().values(status="Done"))
    mc.run(once=True)
    mc.run(once=True)
    assert logic.task_stats(lite.engine, tid)["TotalCreated"] == 4
    with lite.engine.begin() as conn:
        conn.execute(ts_tasks.update().values(status="Done"))
    mc.run(once=True)
    assert logic.task_stats(lite.engine, tid)["TotalCreated"] == 5
    with lite.engine.begin() as conn:
        conn.execute(ts_tasks.update().values(status="Done"))
    mc.run(once=True)
    assert logic.get(lite.engine, tid, "demo")["Status"] == "Completed"


def test_cleaning_kills_jobs_and_forgets_files(world: World) -> None:
    from transformation.agents.cleaning import TransformationCleaningAgent

    world.field("kind", "string")
    world.register([f"{DATA}/c/f{i}" for i in range(4)])
    world.meta(f"{DATA}/c", {"kind": "raw"})
    tid = create(world, reco(Status="Active", Parameters={"RemoveOutputs": True}))
    agent(TransformationAgent, world).run(once=True)
    agent(WorkflowTaskAgent, world).run(once=True)
    out = f"/demo/prod/{tid:08d}/00000001/out.dat"  # an output a job registered
    world.register([out])
    logic.set_status(world.engine, MANAGER, tid, "Cleaning")
    agent(TransformationCleaningAgent, world).run(once=True)
    assert logic.get(world.engine, tid, "demo")["Status"] == "Cleaned"
    assert count(world, ts_files) == 0 and count(world, ts_tasks) == 0
    with world.engine.connect() as conn:
        assert set(conn.execute(sa.select(jobs.c.status)).scalars()) == {"Deleted"}
        [request] = conn.execute(sa.select(rms_requests)).fetchall()
    from dms.db.rms import get_request

    full = get_request(world.engine, request.request_id)
    assert (full.owner, full.operations[0].type) == ("admin", "RemoveFile")
    assert [f.lfn for f in full.operations[0].files] == [out]
    _ = ALICE


def test_types_an_admin_adds(tmp_path: object) -> None:
    from tests.transformation.conftest import config_for, make_world

    world = make_world(f"sqlite:///{tmp_path}/types.db")
    world.config = config_for(world.config.database or "", JobTypes=["Reconstruction"],
                              DataOperationTypes=["Staging"])
    settings = world.config.operations.transformations
    tid = logic.create(world.engine, world.catalog, settings, MANAGER,
                       {"Name": "r", "Type": "Reconstruction", "Body": TEMPLATE})
    assert logic.get(world.engine, tid, "demo")["Type"] == "Reconstruction"
    with pytest.raises(InvalidArgumentError, match="Body: unknown operation"):
        logic.create(world.engine, world.catalog, settings, MANAGER,
                     {"Name": "s", "Type": "Staging", "Body": TEMPLATE})
    logic.create(world.engine, world.catalog, settings, MANAGER,
                 {"Name": "s", "Type": "Staging", "Body": "ReplicateAndRegister",
                  "TargetSE": "DISK-B"})
    with pytest.raises(ValueError, match="declared twice"):
        config_for("sqlite://", JobTypes=["Replication"])
    world.engine.dispose()


def test_a_crashed_submitter_leaves_nothing_duplicated(world: World) -> None:
    """Tasks Reserved by a dead agent: with their job found by name -> Submitted, without
    -> Created again (and submitted once); a live agent's claims are left alone."""
    from transformation.logic import submit

    world.field("kind", "string")
    world.register([f"{DATA}/x/f{i}" for i in range(6)])
    world.meta(f"{DATA}/x", {"kind": "raw"})
    tid = create(world, reco(Status="Active"))
    agent(TransformationAgent, world).run(once=True)  # 3 tasks
    wta = agent(WorkflowTaskAgent, world, "crashed")
    wta.beat()
    token, claimed = submit.claim(world.engine, tid, "crashed", 2)
    assert [t.task_id for t in claimed] == [1, 2]
    trans = logic.find(world.engine, tid, "demo")
    wta.submit(trans, claimed[:1])  # the job of task 1 was made, then the agent died
    with world.engine.begin() as conn:  # its claims are old now
        conn.execute(ts_tasks.update().values(
            last_update=sa.func.datetime("now", "-1 hour") if conn.dialect.name == "sqlite"
            else sa.text("NOW() - INTERVAL 1 HOUR")))
    assert submit.recover_reserved(world.engine, tid, 1, wta.lookup,
                                   alive={"crashed"}) == (0, 0)  # still alive: untouched
    assert submit.recover_reserved(world.engine, tid, 1, wta.lookup, alive=set()) == (1, 1)
    agent(WorkflowTaskAgent, world, "other").run(once=True)
    tasks = logic.get_tasks(world.engine, "demo", {"TransformationID": tid})
    assert [t["ExternalStatus"] for t in tasks] == ["Submitted"] * 3
    with world.engine.connect() as conn:
        names = list(conn.execute(sa.select(jobs.c.job_name)).scalars())
    assert sorted(names) == [f"{tid:08d}_0000000{i}" for i in (1, 2, 3)]
    assert token


def test_a_rescheduled_job_keeps_its_files(world: World) -> None:
    world.field("kind", "string")
    world.register([f"{DATA}/y/f{i}" for i in range(2)])
    world.meta(f"{DATA}/y", {"kind": "raw"})
    tid = create(world, reco(Status="Active"))
    agent(TransformationAgent, world).run(once=True)
    agent(WorkflowTaskAgent, world).run(once=True)
    [task] = logic.get_tasks(world.engine, "demo", {"TransformationID": tid})
    mon = agent(TransformationMonitor, world)
    for status, task_status, files in (("Rescheduled", "Rescheduled", {"Assigned": 2}),
                                       ("Waiting", "Waiting", {"Assigned": 2}),
                                       ("Done", "Done", {"Processed": 2})):
        with world.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.job_id == int(task["ExternalID"]))
                         .values(status=status))
        mon.run(once=True)
        [now] = logic.get_tasks(world.engine, "demo", {"TransformationID": tid})
        assert now["ExternalStatus"] == task_status
        assert file_statuses(world, tid) == files


def test_the_journal_waits_at_a_fresh_gap_and_reconciliation_catches_the_rest(lite: World
                                                                              ) -> None:
    from datetime import timedelta

    from core.db import utcnow
    from dms.db.changes import Change, changes
    from transformation.logic import inputs

    now = utcnow()
    batch = [Change(1, "F+", 1, None, now), Change(3, "F+", 3, None, now)]
    assert [c.change_id for c in inputs._contiguous(batch, 0)] == [1]  # 2 may still commit
    old = [Change(1, "F+", 1, None, now), Change(3, "F+", 3, None, now - timedelta(minutes=1))]
    assert [c.change_id for c in inputs._contiguous(old, 0)] == [1, 3]  # 2 rolled back
    # files whose journal entries are gone (pruned, or too late) still arrive
    lite.field("kind", "string")
    tid = create(lite, reco(Status="Active", GroupSize=100))
    ta = agent(TransformationAgent, lite)
    ta.run(once=True)
    lite.register([f"{DATA}/lost/f{i}" for i in range(3)])
    lite.meta(f"{DATA}/lost", {"kind": "raw"})
    with lite.engine.begin() as conn:
        conn.execute(changes.delete())
    ta.run(once=True)
    assert logic.file_stats(lite.engine, tid)["Total"] == 0
    assert inputs.reconcile(lite.engine, lite.catalog, tid) == (3, 0)
    assert inputs.reconcile(lite.engine, lite.catalog, tid) == (0, 0)
    assert "Reconciliation: 3 files attached" in [
        r["Message"] for r in logic.logging(lite.engine, tid, "demo")]


def test_selections_take_values_or_lists_of_values_only(lite: World) -> None:
    """The fuzzer's ``getTransformationWithStatus([[[]]])`` was an HTTP 500 (a list reached
    the SQL driver): any selection value must be a scalar or a list of scalars."""
    lite.field("kind", "string")
    tid = create(lite, reco())
    assert [t["TransformationID"] for t in logic.listing(
        lite.engine, "demo", {"Status": ["New", "Active"], "TransformationID": tid})] == [tid]
    for bad in ([[]], [{"a": 1}], {"a": 1}, [["New"]]):
        with pytest.raises(InvalidArgumentError, match="'Status': a value or a list of values"):
            logic.listing(lite.engine, "demo", {"Status": bad})
