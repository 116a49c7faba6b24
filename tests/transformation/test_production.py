"""Productions: links and overlaps checked before anything is stored, start/stop/clean of
every step, the per-step summary."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import sqlalchemy as sa

from core.exceptions import AlreadyExistsError, InvalidArgumentError, NotAuthorizedError
from tests.transformation.conftest import DATA, MANAGER, USER, World
from transformation.db.tables import productions
from transformation.db.tables import transformations as ts_trans
from transformation.logic import production
from transformation.logic import transformations as tlogic

JDL = '[Executable = "/bin/true"; CPUTime = 600;]'
PROD: dict[str, Any] = {
    "Name": "p1", "Description": "reco, merge, replicate",
    "Steps": [
        {"Name": "reco", "Transformation": {
            "Type": "Processing", "Body": JDL, "GroupSize": 2,
            "InputMetaQuery": {"kind": "raw"}, "OutputMetadata": {"step": "reco"}}},
        {"Name": "merge", "Parents": ["reco"], "Transformation": {
            "Type": "Merge", "Body": JDL, "GroupSize": 4, "Plugin": "BySize",
            "InputMetaQuery": {"step": "reco"}, "OutputMetadata": {"step": "merged"}}},
        {"Name": "replicate", "Parents": ["merge"], "Transformation": {
            "Type": "Replication", "Plugin": "Broadcast", "Body": "ReplicateAndRegister",
            "TargetSE": ["DISK-B"], "InputMetaQuery": {"step": "merged"}}},
    ]}


def fields(world: World) -> None:
    world.field("kind", "string")
    world.field("step", "string")


def make(world: World, data: dict[str, Any]) -> int:
    return production.create(world.engine, world.catalog, world.settings, MANAGER, data)


def nothing_stored(world: World) -> bool:
    with world.engine.connect() as conn:
        return not conn.execute(sa.select(productions)).first() and \
            not conn.execute(sa.select(ts_trans)).first()


def variant(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(PROD)
    change(data)
    return data


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["Steps"][1]["Transformation"].update(InputMetaQuery={"step": "other"}),
     "step merge: no parent produces what its query selects"),
    (lambda d: d["Steps"][1]["Transformation"].update(InputMetaQuery={"kind": "raw"}),
     "step merge: no parent produces"),
    (lambda d: d["Steps"][0]["Transformation"].pop("OutputMetadata"),
     "parent reco sets no OutputMetadata"),
    (lambda d: d["Steps"].append({"Name": "again", "Parents": ["replicate"],
                                  "Transformation": d["Steps"][2]["Transformation"]}),
     "parent replicate is a data operation"),
    (lambda d: d["Steps"].append({"Name": "copy", "Parents": ["reco"], "Transformation": {
        "Type": "Replication", "Body": "ReplicateAndRegister", "TargetSE": ["DISK-A"],
        "InputMetaQuery": {"step": ["reco", "x"]}}}),
     "steps merge and copy overlap: a file of reco would feed both"),
    (lambda d: d["Steps"][1].update(Parents=["nope"]), "parent 'nope' is not an earlier step"),
    (lambda d: d["Steps"][2]["Transformation"].update(Plugin="Nope"), "step replicate: Plugin"),
    (lambda d: d["Steps"][0]["Transformation"].update(GroupSize=0), "step reco: GroupSize"),
    (lambda d: d.update(Steps=[]), "Steps must be a non-empty list"),
])
def test_bad_productions_are_refused_whole(lite: World, change: Any, message: str) -> None:
    fields(lite)
    with pytest.raises(InvalidArgumentError, match=message):
        make(lite, variant(change))
    assert nothing_stored(lite)


def test_a_step_name_clash_creates_nothing(lite: World) -> None:
    fields(lite)
    tlogic.create(lite.engine, lite.catalog, lite.settings, MANAGER,
                  {"Name": "p1_merge", "Type": "Processing", "Body": JDL})
    with pytest.raises(AlreadyExistsError, match="step merge"):
        make(lite, PROD)
    with lite.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(ts_trans)).scalar() == 1


def test_siblings_with_disjoint_queries_are_fine(lite: World) -> None:
    """Siblings may split a parent's outputs by a key the files carry themselves."""
    fields(lite)
    data = variant(lambda d: d["Steps"].insert(2, {"Name": "other", "Parents": ["reco"],
                                                   "Transformation": {
        "Type": "Replication", "Body": "ReplicateAndRegister", "TargetSE": ["DISK-A"],
        "InputMetaQuery": {"step": "reco", "kind": "calib"}}}))
    data["Steps"][1]["Transformation"]["InputMetaQuery"]["kind"] = ["physics", "other"]
    make(lite, data)


def test_start_stop_clean_and_summary(lite: World) -> None:
    fields(lite)
    pid = make(lite, PROD)
    info = production.to_wire(lite.engine, production.find(lite.engine, pid, "demo"))
    assert [s["Name"] for s in info["Steps"]] == ["reco", "merge", "replicate"]
    assert [s["TransformationName"] for s in info["Steps"]] == ["p1_reco", "p1_merge",
                                                                "p1_replicate"]
    assert info["Steps"][1]["Parents"] == ["reco"]
    with pytest.raises(NotAuthorizedError):
        production.start(lite.engine, USER, pid)
    # DIRAC's ProductionUser: the author (admin) in another group, not someone else
    with pytest.raises(NotAuthorizedError, match="permissions for production"):
        production.start(lite.engine, tlogic.Actor("alice", "demo_user", "demo",
                                                   frozenset({"ProductionUser"})), pid)
    author = tlogic.Actor("admin", "demo_user", "demo", frozenset({"ProductionUser"}))
    production.start(lite.engine, author, pid)
    production.stop(lite.engine, author, pid)
    production.start(lite.engine, MANAGER, "p1")
    assert {s["Status"] for s in production.to_wire(
        lite.engine, production.find(lite.engine, pid, "demo"))["Steps"]} == {"Active"}
    lite.register([f"{DATA}/raw/f{i}" for i in range(4)])
    lite.meta(f"{DATA}/raw", {"kind": "raw"})
    from transformation.agents.transformation_agent import TransformationAgent

    TransformationAgent(lite.config, instance="x").run(once=True)
    [reco, merge, _repl] = production.summary(lite.engine, pid, "demo")
    assert (reco["Files_Assigned"], reco["Tasks_Total"], reco["PercentDone"]) == (4, 2, 0.0)
    assert merge["Files_Total"] == 0
    assert reco["Jobs"] == {} and reco["Tasks"] == {"Created": 2} and "Requests" in _repl
    production.stop(lite.engine, MANAGER, pid)
    production.clean(lite.engine, MANAGER, pid)
    assert {s["Status"] for s in production.to_wire(
        lite.engine, production.find(lite.engine, pid, "demo"))["Steps"]} == {"Cleaning"}
    from transformation.agents.cleaning import TransformationCleaningAgent

    TransformationCleaningAgent(lite.config, instance="x").run(once=True)
    info = production.to_wire(lite.engine, production.find(lite.engine, pid, "demo"))
    assert info["Status"] == "Cleaned" and {s["Status"] for s in info["Steps"]} == {"Cleaned"}
