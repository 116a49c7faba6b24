"""Queue capacity: GPU/RAM/whole-node requirements of jobs, what resources offer, the refusal
of jobs no configured queue could run (with the reason), GPU detection on worker nodes, and the
dataset grouping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.config.schema import Config
from core.db import init_schema, make_engine, utcnow, write_transaction
from core.exceptions import InvalidJDLError, JobSubmissionError, NoMatchError
from pilot.node import gpu_models, gpus
from wms.db import jobs as jobs_db
from wms.db.schema import WMS_SCHEMA
from wms.logic import capacity, matching
from wms.logic.dataset_jobs import check_template, dataset_jdls, group_by_location, restart_jdl
from wms.logic.jdl import parse_jdl
from wms.logic.job_description import describe_job

CONFIG = Config.model_validate({"Resources": {"Sites": {
    "LCG.CPU.org": {"CEs": {"ce1": {"CEType": "Local", "Queues": {
        "short": {"MaxCPUTime": 3600, "NumberOfProcessors": 4, "MaxRAM": 8000},
        "long": {"MaxCPUTime": 172800, "NumberOfProcessors": 1}}}}},
    "LCG.GPU.org": {"CEs": {"slurm": {"CEType": "Slurm", "Settings": {"WorkDir": "/tmp"},
                                      "Queues": {"gpu": {
                                          "MaxCPUTime": 86400, "NumberOfProcessors": 8,
                                          "MaxRAM": 64000, "NumberOfGPUs": 2,
                                          "GPUModel": "A100", "WholeNode": True,
                                          "Platform": "EL9", "Tags": ["ssd"]}}}}},
}}})


def job(text: str) -> object:
    return describe_job(parse_jdl(f"[Executable = \"x\"; {text}]"), owner="a",
                        owner_group="g", vo="demo")


@pytest.mark.parametrize(("jdl", "reason"), [
    ("NumberOfGPUs = 2; MinRAM = 16000;", None),
    ("NumberOfGPUs = 2; GPUModel = \"A100\"; WholeNode = true; Platform = \"EL9\";", None),
    ("NumberOfProcessors = 4; MaxRAM = 8000; CPUTime = 3000;", None),
    ("NumberOfGPUs = 4;", "no queue offers 4 GPUs"),
    ("NumberOfGPUs = 2; MinRAM = 100000;", "no queue offers 2 GPUs with 100000 MB"),
    ("GPUModel = \"H100\";", "no queue offers 1 H100 GPU"),
    ("NumberOfProcessors = 16;", "no queue offers 16 processors"),
    ("Tags = {\"infiniband\"};", "no queue offers tag infiniband"),
    ("Site = \"LCG.CPU.org\"; NumberOfGPUs = 1;",
     "no queue at LCG.CPU.org offers 1 GPU"),
    ("Site = \"LCG.Nowhere.org\";", "no queue is configured at LCG.Nowhere.org"),
    ("NumberOfProcessors = 8; CPUTime = 500000;",
     "no queue offers 500000 s of CPU time for 8 processors"),
    ("NumberOfGPUs = 4; WaitForResources = true;", None),
])
def test_impossible_jobs_are_named(jdl: str, reason: str | None) -> None:
    assert capacity.impossible(capacity.queues_of(CONFIG), job(jdl)) == reason  # type: ignore[arg-type]


def test_check_jobs_and_its_switches() -> None:
    with pytest.raises(JobSubmissionError, match="no queue offers 4 GPUs .WaitForResources"):
        capacity.check_jobs(CONFIG, [job("NumberOfGPUs = 4;")])  # type: ignore[list-item]
    off = CONFIG.model_copy(update={"operations": CONFIG.operations.model_copy(update={
        "job_scheduling": CONFIG.operations.job_scheduling.model_copy(
            update={"refuse_impossible_jobs": False})})})
    capacity.check_jobs(off, [job("NumberOfGPUs = 4;")])  # type: ignore[list-item]
    capacity.check_jobs(Config(), [job("NumberOfGPUs = 4;")])  # no queue: no check


def test_job_description_gpu_and_ram() -> None:
    desc = job("NumberOfGPUs = 2; GPUModel = \"A100\"; MinRAM = 3000; MaxRAM = 8000;")
    assert desc.requirement_tags == ["3GB", "GPU", "2GPUs", "GPU:A100"]  # type: ignore[attr-defined]
    assert job("GPUs = 1;").number_of_gpus == 1  # type: ignore[attr-defined]
    for bad, match in (("MinRAM = 9; MaxRAM = 8;", "MinRAM"), ("NumberOfGPUs = 65;", "GPUs"),
                       ("GPUModel = \"a;b\";", "GPUModel")):
        with pytest.raises(InvalidJDLError, match=match):
            job(bad)


def test_queue_listing_and_resources() -> None:
    queues = capacity.queues_of(CONFIG)
    assert [q.name for q in capacity.select_queues(queues, tag="GPU")] == [
        "LCG.GPU.org/slurm/gpu"]
    assert [q.name for q in capacity.select_queues(queues, tag="4Processors")] == [
        "LCG.CPU.org/ce1/short", "LCG.GPU.org/slurm/gpu"]
    gpu = capacity.select_queues(queues, site="LCG.GPU.org")[0]
    assert capacity.queue_resource(gpu)["NumberOfGPUs"] == 2
    assert gpu.describe()["GPUModel"] == "A100"


def test_the_matcher_gives_gpu_jobs_to_gpu_nodes_only(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    init_schema(engine, WMS_SCHEMA)
    desc = job("NumberOfGPUs = 2; GPUModel = \"A100\";")
    now = utcnow()
    with write_transaction(engine) as conn:
        [job_id] = jobs_db.insert_jobs(conn, [jobs_db.NewJob(
            owner="a", owner_group="g", vo="demo", status="Waiting", minor_status="x",
            original_jdl="[]")], now=now, source="t")
        matching.enqueue_jobs(conn, [matching.tq_job_from_description(job_id, desc)], now)  # type: ignore[arg-type]
    settings = matching.MatchSettings()
    scope = matching.MatchScope("demo")
    base = {"Site": "LCG.GPU.org", "CPUTime": 86400}
    for offer in ({}, {"NumberOfGPUs": 1, "GPUModels": ["A100"]},
                  {"NumberOfGPUs": 2, "GPUModels": ["V100"]}):
        with pytest.raises(NoMatchError):
            matching.match_job(engine, {**base, **offer}, settings=settings, scope=scope)
    node = gpu_models(["NVIDIA A100-SXM4-40GB"] * 4)
    match = matching.match_job(engine, {**base, "NumberOfGPUs": 4, "GPUModels": node},
                               settings=settings, scope=scope)
    assert match.job_id == job_id
    engine.dispose()


def test_gpu_detection(tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\n"
                   "[ \"$1\" = --query-gpu=index,name ] || exit 9\n"
                   "printf '0, NVIDIA A100-SXM4-40GB\\n1, NVIDIA A100-SXM4-40GB\\n"
                   "2, NVIDIA A100-SXM4-40GB\\n'\n")
    smi.chmod(0o755)
    path = f"{tmp_path}:{os.environ.get('PATH', '')}"
    assert gpus({"PATH": path}) == ["NVIDIA A100-SXM4-40GB"] * 3
    assert gpus({"PATH": path, "CUDA_VISIBLE_DEVICES": "2"}) == ["NVIDIA A100-SXM4-40GB"]
    assert gpus({"PATH": path, "CUDA_VISIBLE_DEVICES": "NoDevFiles"}) == []
    empty = str(tmp_path / "none")
    assert gpus({"PATH": empty}) == []
    assert gpus({"PATH": empty, "SLURM_GPUS_ON_NODE": "2"}, "A100") == ["A100", "A100"]


def test_dataset_grouping_and_templates() -> None:
    files = {f"/demo/d/f{i:02d}": ["DISK-A"] for i in range(20)}
    groups = group_by_location(files, 5)
    assert [len(g) for g in groups] == [5, 5, 5, 5]
    assert sum(groups, []) == sorted(files)
    mixed = {**files, "/demo/d/x": ["DISK-A", "XRD"], "/demo/d/y": ["XRD", "DISK-A"]}
    assert group_by_location(mixed, 50)[-1] == ["/demo/d/x", "/demo/d/y"]
    with pytest.raises(ValueError, match="files per job"):
        group_by_location(files, 0)
    [jdl] = dataset_jdls(check_template('[Executable = "x";]'), [["/demo/d/f00"]])
    assert jdl.get_str_list("InputData") == ["LFN:/demo/d/f00"]
    for bad in ('[Executable = "x"; InputData = "/demo/a";]',
                '[Executable = "x"; Parameters = 3;]', '[Executable = "x"; Event = "e";]'):
        with pytest.raises(InvalidJDLError):
            check_template(bad)
    assert "Event" not in restart_jdl('[Executable = "x"; Event = "e";]')


def test_job_api_sets_events_and_gpus() -> None:
    from wms.dirac_api import Job

    job = Job()
    job.setExecutable("/bin/echo", arguments="x")
    assert job.setEvent("an00h000")["OK"]
    assert job.setNumberOfGPUs(2, model="A100")["OK"]
    assert not job.setNumberOfGPUs(0)["OK"]
    jdl = parse_jdl(job._toJDL())
    assert (jdl["Event"], jdl["NumberOfGPUs"], jdl["GPUModel"]) == ("an00h000", 2, "A100")


def test_a_pilot_gives_each_job_its_own_gpus(tmp_path: Path) -> None:
    from pilot.agent import Agent, AgentOptions
    from pilot.node import NodeInfo
    from pilot.rpc import RpcClient
    from pilot.wrapper import JobWrapper, WrapperOptions

    node = NodeInfo(host="h", os_name="x", platform="p", processors=4, memory_mb=8000,
                    disk_free_mb=1, gpus=["A100"] * 4, gpu_ids=["4", "5", "6", "7"])
    agent = Agent(None, AgentOptions(workdir=str(tmp_path)), node)  # type: ignore[arg-type]
    assert agent.resource(1)["NumberOfGPUs"] == 4
    match = {"JobID": 1, "JDL": '[Executable = "x"; NumberOfGPUs = 3;]'}
    assert agent.job_gpus(match) == 3
    agent.free_gpu_ids = agent.free_gpu_ids[3:]  # what start_job takes for that job
    assert agent.resource(1)["NumberOfGPUs"] == 1 and agent.job_gpus(match) == 1
    offline = RpcClient(["https://127.0.0.1:1"])  # never called: environment() is local
    env = JobWrapper(match, offline, WrapperOptions(gpu_ids=["4", "5", "6"])).environment()
    assert (env["CUDA_VISIBLE_DEVICES"], env["PILOTWMS_GPUS"]) == ("4,5,6", "3")
    assert JobWrapper(match, offline, WrapperOptions(gpu_ids=[])
                      ).environment()["CUDA_VISIBLE_DEVICES"] == ""


def test_batch_requests_for_gpus() -> None:
    from wms.agents.push_jobs import job_gpus
    from wms.ce.htcondor import HTCondorComputingElement
    from wms.ce.slurm import SlurmCommands

    argv = SlurmCommands("/w").sbatch(queue="gpu", job_name="p", processors=1,
                                      wall_seconds=None, memory_mb=None, gpus=2)
    assert "--gres=gpu:2" in argv
    assert not any(a.startswith("--gres") for a in SlurmCommands("/w").sbatch(
        queue="q", job_name="p", processors=1, wall_seconds=None, memory_mb=None))
    condor = HTCondorComputingElement("ce", {"WorkDir": "/w"})
    assert "request_GPUs = 2" in condor.submit_description(
        "/w/p.sh", 1, processors=1, wall_seconds=None, memory_mb=None, gpus=2)
    assert job_gpus({"NumberOfGPUs": 2}) == 2  # what push mode asks Slurm for
