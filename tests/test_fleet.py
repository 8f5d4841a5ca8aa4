"""``trainmark fleet`` against a real Slurm cluster (``scripts/local-slurm``: one node, listed in
partitions hw_a and hw_b, accounting off so ``sacct`` fails), and on this machine through
submitit's local executor.

One fleet run is shared by several tests (the module fixture ``swept``): the smoke suite over
both partitions, hw_b's job cancelled with ``scancel`` after its first record, then the same
command twice more (the rerun measures only what was lost; the third submits nothing).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.cli import main
from harness.core.suites import expand, load_suite, merge_settings
from harness.probes.provenance import code_identity
from harness.store.jsonl import read_records

REPO = Path(__file__).resolve().parent.parent
TINY = ["--suite", "smoke", "--devices", "cpu", "--steps", "2", "--warmup", "1", "--repeats", "2",
        "--eval-samples", "32", "--train-samples", "64"]
PARTITIONS = ("hw_a", "hw_b")


def smoke_models() -> list[str]:
    """The models of the smoke suite, from the suite file (not from the code under test)."""
    return list(dict.fromkeys(c.model for c in expand(merge_settings(load_suite("smoke"), {}))))


def fleet_cmd(*argv: str) -> list[str]:
    return [sys.executable, "-m", "harness", "fleet", *argv]


def slurm_jobs() -> set[str]:
    """Every job id slurmctld still knows (finished ones included)."""
    out = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    return set(out.split())


def slurm_nodes() -> set[str]:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return set(out.split())


def manifest(out: Path) -> list[dict]:
    return read_records(out / "fleet" / "jobs.jsonl")


def submitted(out: Path) -> list[dict]:
    return [e for e in manifest(out) if e["event"] == "submitted"]


@pytest.fixture(scope="module")
def swept(slurm_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    out = root / "fl"
    # --shared: both partitions are this one node; whole-node jobs would run one after the
    # other (the whole-node request is tested in test_fleet_sbatch.py and test_multinode.py).
    argv = fleet_cmd("--partitions", ",".join(PARTITIONS), *TINY, "--out-dir", str(out),
                     "--poll", "1", "--shared")
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    hw_b = out / "hw_b.jsonl"
    deadline = time.monotonic() + 240
    while not (hw_b.exists() and hw_b.read_text().strip()):  # hw_b's first config recorded
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "hw_b's job recorded nothing within 240 s"
        time.sleep(0.3)
    job_b = next(e["job_id"] for e in submitted(out) if e["partition"] == "hw_b")
    subprocess.run(["scancel", job_b], check=True, timeout=60)
    first_out, first_err = proc.communicate(timeout=300)
    first_wall = time.monotonic() - started
    after_cancel = read_records(hw_b)
    second = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=300)
    jobs_before_third = slurm_jobs()
    third = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=300)
    print(f"\nfleet test: first run (2 jobs, one cancelled) {first_wall:.1f} s, whole fixture "
          f"{time.monotonic() - started:.1f} s", file=sys.stderr)
    return SimpleNamespace(out=out, root=root, first=(proc.returncode, first_out, first_err),
                           cancelled=job_b, after_cancel=after_cancel, second=second,
                           third=third, jobs_before_third=jobs_before_third)


@pytest.mark.slurm
@pytest.mark.slow
def test_the_smoke_suite_is_recorded_once_per_partition_with_where_and_what_code(swept):
    models = smoke_models()
    mine = code_identity()["code_digest"]
    jobs = {e["job_id"]: e["partition"] for e in submitted(swept.out)}
    for part in PARTITIONS:
        records = read_records(swept.out / f"{part}.jsonl")
        ok = [r for r in records if r["status"] == "ok"]
        assert sorted(r["model"] for r in ok) == sorted(models), part  # once each
        for r in ok:
            assert r["partition"] == part and r["executor"] == "slurm"
            assert jobs[r["job_id"]] == part  # a job of this partition wrote it
            assert r["node"] in slurm_nodes()
            assert r["code_digest"] == mine and r["code_identity"].endswith("/" + mine)
    assert swept.second.returncode == 0, swept.second.stderr[-2000:]


@pytest.mark.slurm
@pytest.mark.slow
def test_the_waiter_shows_progress_and_a_cancelled_job_becomes_crashed_records(swept):
    code, out, err = swept.first
    assert code == 1, err[-2000:]
    assert "running" in out and "configs recorded" in out  # the progress line
    lost = [r for r in swept.after_cancel if r["status"] != "ok"]
    measured = [r for r in swept.after_cancel if r["status"] == "ok"]
    assert measured and lost, "scancel came before the first record or after the last"
    assert {r["model"] for r in measured} | {r["model"] for r in lost} == set(smoke_models())
    for r in lost:
        assert r["status"] == "crashed" and r["recorded_by"] == "fleet"
        assert r["job_id"] == swept.cancelled and r["partition"] == "hw_b"
        assert "CANCELLED" in r["error"] and r["node"] in r["error"]
        assert r["device_name"] == measured[0]["device_name"]  # reported on its machine
        assert r["model"] in err  # the command names what was lost
    assert f"job {swept.cancelled}" in err and "CANCELLED" in err
    # hw_a's job was left alone: all its configs measured by its own job
    assert all(r["status"] == "ok" for r in read_records(swept.out / "hw_a.jsonl"))


@pytest.mark.slurm
@pytest.mark.slow
def test_running_the_same_command_again_measures_only_what_the_folder_lacks(swept):
    jobs = submitted(swept.out)
    assert [e["partition"] for e in jobs] == ["hw_a", "hw_b", "hw_b"]  # one more, for hw_b
    lost = {r["model"] for r in swept.after_cancel if r["status"] != "ok"}
    assert {c["model"] for c in jobs[2]["configs"]} == lost
    rerun = [r for r in read_records(swept.out / "hw_b.jsonl") if r["job_id"] == jobs[2]["job_id"]]
    assert sorted(r["model"] for r in rerun) == sorted(lost)
    assert all(r["status"] == "ok" for r in rerun)
    # the third time nothing is missing: nothing submitted, the manifest unchanged
    assert swept.third.returncode == 0, swept.third.stderr[-2000:]
    assert "nothing to submit" in swept.third.stdout
    assert len(submitted(swept.out)) == 3 and slurm_jobs() == swept.jobs_before_third


@pytest.mark.slurm
@pytest.mark.slow
def test_the_report_of_the_folder_sets_the_partitions_side_by_side(swept, tmp_path):
    rep = tmp_path / "rep"
    assert main(["report", str(swept.out), "--out", str(rep),
                 "--price", "hw_a=1.5", "--price", "hw_b=3"]) == 0
    md = (rep / "report.md").read_text()
    assert "hw\\_a vs hw\\_b" in md.splitlines()[0]  # the partitions are the machines
    comparison = md.split("## Hardware comparison", 1)[1].split("\n## ", 1)[0]
    assert "hw\\_b × ref" in comparison
    cost = md.split("## Cost", 1)[1].split("\n## ", 1)[0]
    assert "USD per 1M items" in cost and "hw\\_a" in cost and "hw\\_b" in cost
    machines = md.split("## Machines", 1)[1].split("\n## ", 1)[0]
    assert "| partition |" in machines and "| code |" in machines and swept.cancelled in machines


@pytest.mark.slurm
@pytest.mark.long  # ~16 s: a second fleet, detached, with a 2-rank srun job
def test_detach_then_status_and_a_ddp_config_of_two_ranks_started_by_srun(slurm_cluster,
                                                                           tmp_path, capsys):
    out = tmp_path / "ddp"
    argv = ["--partitions", "hw_a", *TINY, "--models", "convnet", "--nproc", "2",
            "--out-dir", str(out)]
    started = time.monotonic()
    detached = subprocess.run(fleet_cmd(*argv, "--detach"), cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)
    assert detached.returncode == 0, detached.stderr[-2000:]
    assert "fleet status" in detached.stdout
    (job,) = [e["job_id"] for e in submitted(out)]
    jobs_then, manifest_then = slurm_jobs(), (out / "fleet" / "jobs.jsonl").read_text()
    capsys.readouterr()
    assert main(["fleet", *argv]) == 2  # the same command while its job runs: refused
    assert f"still running or unknown ({job})" in capsys.readouterr().err
    assert slurm_jobs() == jobs_then  # nothing submitted, nothing settled
    assert (out / "fleet" / "jobs.jsonl").read_text() == manifest_then
    early = subprocess.run(fleet_cmd("status", str(out)), cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
    assert early.returncode == 0, early.stderr[-2000:]
    assert "PENDING" in early.stdout or "RUNNING" in early.stdout, early.stdout
    assert "0/1 configs recorded" in early.stdout
    done = subprocess.run(fleet_cmd("status", str(out), "--wait", "--poll", "1"), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "COMPLETED" in done.stdout and "1/1 configs recorded" in done.stdout
    print(f"\nfleet DDP test: {time.monotonic() - started:.1f} s", file=sys.stderr)

    records = read_records(out / "hw_a-ddp1x2.jsonl")
    assert len(records) == 1  # rank 0 alone writes
    rec = records[0]
    assert rec["status"] == "ok" and rec["nproc"] == 2 and rec["job_id"] == job
    assert len(rec["rank_step_time_ms_median"]) == 2  # both ranks timed the same regions
    folder = out / "fleet" / "jobs" / job
    script = (folder / f"{job}_submission.sh").read_text()
    assert "--ntasks-per-node=2" in script and "\nsrun " in script  # srun starts the ranks
    for rank in (0, 1):
        log = (folder / f"{job}_{rank}_log.err").read_text()
        assert f"task {rank}/2" in log  # each rank ran trainmark run itself


@pytest.mark.slurm
def test_bad_input_submits_nothing(slurm_cluster, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = slurm_jobs()
    assert main(["fleet", "--partitions", "hw_a,nosuch", *TINY, "--out-dir", "f"]) == 2
    assert main(["fleet", "--partitions", "hw_a", *TINY, "--out-dir", "f",
                 "--time-limit", "100000"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "'nosuch'" in err[0] and "hw_a, hw_b" in err[0]
    assert "--time-limit 100000" in err[1] and "'hw_a'" in err[1]
    assert slurm_jobs() == before and list(tmp_path.iterdir()) == []


@pytest.mark.long  # ~11 s: the same plan through submitit's local executor
def test_the_local_executor_runs_the_same_plan_on_this_machine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["fleet", "--executor", "local", "--partitions", "laptop", *TINY,
                 "--models", "convnet", "--out-dir", "loc", "--poll", "1"]) == 0
    records = read_records(tmp_path / "loc" / "laptop.jsonl")
    assert [r["model"] for r in records] == ["convnet"] and records[0]["status"] == "ok"
    assert records[0]["executor"] == "local" and records[0]["partition"] == "laptop"
    assert records[0]["job_id"] == submitted(tmp_path / "loc")[0]["job_id"]
    assert records[0]["suite"] == "smoke" and submitted(tmp_path / "loc")[0]["suite"] == "smoke"
    end = json.loads((tmp_path / "loc" / "fleet" / "ends" /
                      f"{records[0]['job_id']}.json").read_text())
    assert end["exit_code"] == 0
