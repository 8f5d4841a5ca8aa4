"""How the fleet's waiter reads a job's end without ``sacct`` and settles a dead job, and how a
plan is made for a partition's nodes rather than this machine: fast, without a cluster."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.core.config import RunConfig
from harness.core.suites import load_suite, merge_settings
from harness.errors import UserError
from harness.execution import fleet_job
from harness.execution.executor import (
    GONE,
    JobEnvironment,
    JobRequest,
    JobState,
    Partition,
    SlurmEngine,
    parse_sbatch_options,
)
from harness.execution.fleet import job_states, settle
from harness.execution.fleet_plan import (
    FleetJob,
    FleetRequest,
    Slot,
    manifest_path,
    partition_devices,
    plan,
)
from harness.store.jsonl import ResultsWriter, read_records

CFGS = [RunConfig(model=m, dataset="synthetic", batch_size=8) for m in ("convnet", "resnet20")]


class Forgetful:
    """An engine whose scheduler has forgotten every job (no accounting database)."""

    name = "slurm"

    def __init__(self, folder: Path) -> None:
        self.logs = SlurmEngine(folder)

    def states(self, job_ids):
        return {j: JobState(j, GONE) for j in job_ids}

    def last_words(self, job_id):
        return self.logs.last_words(job_id)


def job(tmp_path: Path, job_id: str = "41") -> FleetJob:
    return FleetJob(job_id, "slurm", "gpu", "gpu", tmp_path / "gpu.jsonl", list(CFGS),
                    "2026-01-01T00:00:00+00:00", "abc/1234", "1234")


def test_a_forgotten_job_is_read_from_its_own_log(tmp_path):
    log = tmp_path / "fleet" / "jobs" / "41" / "41_0_log.err"
    log.parent.mkdir(parents=True)
    log.write_text("[1/2] convnet ...: ok\nslurmstepd: error: *** JOB 41 ON gpu07 DUE TO "
                   "TIME LIMIT ***\n")
    engine = Forgetful(tmp_path / "fleet" / "jobs")
    st = job_states(engine, tmp_path, [job(tmp_path)])["41"]
    assert st.state == "TIMEOUT" and not st.active and "DUE TO TIME LIMIT" in st.reason


def test_a_forgotten_job_with_an_end_marker_completed(tmp_path):
    fleet_job.end_marker(tmp_path, "41").parent.mkdir(parents=True)
    fleet_job.end_marker(tmp_path, "41").write_text('{"exit_code": 0, "node": "gpu07"}')
    st = job_states(Forgetful(tmp_path), tmp_path, [job(tmp_path)])["41"]
    assert (st.state, st.node) == ("COMPLETED", "gpu07")


def test_a_forgotten_job_without_any_trace_is_not_waited_for(tmp_path):
    st = job_states(Forgetful(tmp_path), tmp_path, [job(tmp_path)])["41"]
    assert not st.active and "no longer knows" in st.reason


def test_a_job_past_its_time_limit_leaves_timeout_records_with_the_reason(tmp_path):
    ResultsWriter(tmp_path / "gpu.jsonl").write({  # the job measured its first config
        **dataclasses.asdict(CFGS[0]), "status": "ok", "job_id": "41", "run_id": "r1",
        "device_name": "H100", "host": "gpu07"})
    (tmp_path / "fleet").mkdir()
    j = job(tmp_path)
    lost = settle(tmp_path, "slurm", j, JobState("41", "TIMEOUT", "TimeLimit", "gpu07"))
    assert [c.model for c in lost] == ["resnet20"]
    rec = read_records(tmp_path / "gpu.jsonl")[-1]
    assert rec["status"] == "timeout" and rec["model"] == "resnet20"
    assert "TIMEOUT" in rec["error"] and "gpu07" in rec["error"] and "TimeLimit" in rec["error"]
    assert rec["run_id"] == "r1" and rec["device_name"] == "H100"  # the job's run and machine
    assert rec["code_digest"] == "1234" and rec["recorded_by"] == "fleet"
    events = read_records(manifest_path(tmp_path))  # settled once: never recorded twice
    assert [(e["event"], e["job_id"], e["state"]) for e in events] == [("settled", "41",
                                                                       "TIMEOUT")]
    assert events[0]["lost"] == [CFGS[1].label()]


def test_the_job_refuses_to_run_other_code_and_says_so(tmp_path, monkeypatch):
    here = JobEnvironment("slurm", "41", "gpu07", 0, 1)
    monkeypatch.setattr(fleet_job, "job_environment", lambda: here)
    fleet_job.code_identity()  # its git calls happen before subprocess.run is watched
    ran = []
    monkeypatch.setattr(fleet_job.subprocess, "run", lambda *a, **k: ran.append(a))
    spec = {"out_dir": str(tmp_path), "partition": "gpu", "argv": [],
            "code_digest": "0" * 16, "code_identity": "cafe/" + "0" * 16}
    assert fleet_job.run_job(spec) == 3 and ran == []
    end = fleet_job.read_end_marker(tmp_path, "41")
    assert "cafe/" + "0" * 16 in end["error"] and "differs" in end["error"]


def test_devices_are_planned_for_the_partitions_nodes_not_this_machine():
    gpu, cpu = partition_devices("h100", 4), partition_devices("cpu-nodes", 0)
    assert (gpu("auto"), gpu("cuda"), gpu("cuda:3"), gpu("cpu")) == \
        ("cuda:0", "cuda:0", "cuda:3", "cpu")
    assert cpu("auto") == "cpu"
    with pytest.raises(UserError, match="'cuda:4'.*'h100'.*4 GPU"):
        gpu("cuda:4")
    with pytest.raises(UserError, match="'cuda'.*'cpu-nodes'"):
        cpu("cuda")


def test_slots_name_one_results_file_per_partition_node_and_shape():
    assert Slot("h100", None).name == "h100"
    assert Slot("h100", "gpu07").name == "h100-gpu07"
    assert Slot("h100", None, nodes=2, tasks_per_node=4).name == "h100-ddp2x4"


def test_extra_sbatch_options():
    assert parse_sbatch_options(["--mail-type=END", "#SBATCH --exclusive"]) == \
        {"mail-type": "END", "exclusive": True}
    with pytest.raises(UserError, match="--sbatch"):
        parse_sbatch_options(["mail type=END"])


def fleet_request(tmp_path: Path, devices: str = "auto", **kw) -> FleetRequest:
    settings = merge_settings(load_suite("smoke"), {"devices": [devices], "nproc": [1]})
    return FleetRequest(out_dir=tmp_path, partitions=("gpu",), settings=settings,
                        run_argv=("--suite", "smoke"), job=JobRequest("t", ""), **kw)


def test_each_node_of_a_partition_gets_its_own_pinned_job_and_results_file(tmp_path):
    part = {"gpu": Partition("gpu", ("n1", "n2"), 0, None)}
    plans = plan(fleet_request(tmp_path, each_node=True), part)
    assert [(p.request.nodelist, p.results.name) for p in plans] == \
        [("n1", "gpu-n1.jsonl"), ("n2", "gpu-n2.jsonl")]
    assert all(c.device == "cpu" for p in plans for c in p.configs)  # no GPU there


def test_a_ddp_job_asks_for_one_gpu_per_rank_and_plans_the_world_size(tmp_path):
    part = {"gpu": Partition("gpu", ("n1",), 8, 120)}
    (p,) = plan(fleet_request(tmp_path, nodes=2, nproc=(4,)), part)
    assert (p.request.nodes, p.request.tasks_per_node, p.request.gpus_per_node) == (2, 4, 4)
    assert {(c.device, c.nproc) for c in p.configs} == {("cuda:0", 8)}
    assert p.results.name == "gpu-ddp2x4.jsonl" and "--resume" in p.argv
    (cpu,) = plan(fleet_request(tmp_path, devices="cpu"), part)
    assert cpu.request.gpus_per_node == 0  # a CPU sweep does not hold the node's GPUs
    with pytest.raises(UserError, match="--time-limit 200.*120"):
        plan(dataclasses.replace(fleet_request(tmp_path),
                                 job=JobRequest("t", "", time_limit_min=200)), part)
