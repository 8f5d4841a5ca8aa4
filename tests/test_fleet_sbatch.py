"""What a fleet job asks of Slurm (issue 29, review items 3 and 4), read from the sbatch script
submitit writes, through a stand-in ``sbatch`` that keeps the script (no cluster needed):
no wckey unless one is given, and a timing job takes its node, CPUs and memory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.core.suites import load_suite, merge_settings
from harness.execution.executor import JobRequest, Partition, SlurmEngine
from harness.execution.fleet_plan import FleetRequest, plan


def job(spec: dict) -> int:
    return 0


@pytest.fixture()
def sbatch_kept(tmp_path, monkeypatch) -> Path:
    """``sbatch`` keeps the script it is given and answers with a job id; ``srun`` exists."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kept = tmp_path / "script.sh"
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {kept}\necho "Submitted batch job 42"\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return kept


def submitted(tmp_path: Path, kept: Path, request: JobRequest) -> list[str]:
    assert SlurmEngine(tmp_path / "jobs").submit(job, {}, request) == "42"
    return kept.read_text().splitlines()


def test_no_wckey_unless_given(tmp_path, sbatch_kept):
    lines = submitted(tmp_path, sbatch_kept, JobRequest(name="t", partition="p"))
    assert not [ln for ln in lines if "--wckey" in ln]  # submitit's default was "submitit"
    lines = submitted(tmp_path, sbatch_kept, JobRequest(name="t", partition="p", wckey="bench"))
    assert "#SBATCH --wckey=bench" in lines


def test_a_timing_job_takes_its_node_and_srun_gives_tasks_their_cpus(tmp_path, sbatch_kept):
    parts = {"p": Partition("p", ("n1", "n2"), 0, None, cpus_per_node=16)}
    request = FleetRequest(out_dir=tmp_path, partitions=("p",),
                           settings=merge_settings(load_suite("smoke"), {"devices": ["cpu"]}),
                           run_argv=(), job=JobRequest(name="t", partition=""), nproc=(4,))
    slot = plan(request, parts)[0]
    assert slot.request.cpus_per_task == 4  # 16 CPUs shared by 4 tasks, not 1 each
    lines = submitted(tmp_path, sbatch_kept, slot.request)
    assert {"#SBATCH --exclusive", "#SBATCH --mem=0", "#SBATCH --cpus-per-task=4",
            "#SBATCH --ntasks-per-node=4"} <= set(lines)
    setup = lines.index("export SRUN_CPUS_PER_TASK=4")  # Slurm 22.05-23.02: srun needs it
    assert setup < next(i for i, ln in enumerate(lines) if ln.startswith("srun "))


def test_shared_asks_only_for_what_is_given(tmp_path, sbatch_kept):
    lines = submitted(tmp_path, sbatch_kept,
                      JobRequest(name="t", partition="p", whole_node=False))
    assert not [ln for ln in lines if "exclusive" in ln or "--mem" in ln or "cpus" in ln]


def test_job_states_list_only_this_users_jobs(tmp_path, monkeypatch):
    """The waiter polls every few seconds: ``squeue -t all`` listed every user's jobs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    args = tmp_path / "args"
    (bin_dir / "squeue").write_text(f'#!/bin/sh\necho "$@" > {args}\n'
                                    'echo "7|RUNNING|None|n1"\necho "8|PENDING|Resources|"\n')
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    states = SlurmEngine(tmp_path).states(["7", "8", "9"])
    assert "--me" in args.read_text().split()
    assert states["7"].state == "RUNNING" and states["7"].node == "n1"
    assert states["8"].reason == "Resources" and states["9"].state == "GONE"
