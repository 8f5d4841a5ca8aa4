"""trainmark across the nodes of a real multi-node Slurm cluster (``scripts/multinode-slurm``:
three slurmd on this machine, each in its own namespaces, so node names, ``MASTER_ADDR`` and
rendezvous behave as on a real cluster; issue 29). Each test is minutes long: the long run.

- srun with two tasks per node: local ranks (and GPU ordinals) from ``SLURM_LOCALID``, before
  and after joining the group, which meets on the first node without ``MASTER_ADDR``;
- DDP and FSDP across two nodes: ok records of world size 2, written by rank 0 on n1;
- a slow node (n3, a tenth of one CPU): node health flags it and no other;
- a node powered off mid-job, with Slurm's requeue and without: every config ok exactly once
  after ``fleet status --wait`` and at most one rerun, the lost ones named NODE_FAIL and node;
- a time limit: the configs the job had not recorded become ``timeout`` records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.store.jsonl import read_records

REPO = Path(__file__).resolve().parent.parent
MULTINODE = REPO / "scripts" / "multinode-slurm"
pytestmark = [pytest.mark.slurm, pytest.mark.long, pytest.mark.slow]

# Code identity has its own tests (test_fleet.py); here a sweep's code is the checkout's.
TINY = ["--devices", "cpu", "--precisions", "fp32", "--optimizers", "sgd", "--steps", "2",
        "--warmup", "1", "--repeats", "2", "--eval-samples", "16", "--train-samples", "64",
        "--batch-sizes", "8", "--poll", "1", "--setup", "export OMP_NUM_THREADS=1"]

RANKS = """
import json, os, socket
import torch, torch.distributed as tdist
from harness.core import dist
before = dist.env_from_os()
dist.init("cpu")
after = dist.env_from_os()
t = torch.tensor([1.0]); tdist.all_reduce(t)
print(json.dumps({"rank": after.rank, "host": socket.gethostname(),
                  "localid": int(os.environ["SLURM_LOCALID"]), "before": before.local_rank,
                  "after": after.local_rank, "ordinal": dist.gpu_ordinal(after.local_rank, 2),
                  "master": os.environ["MASTER_ADDR"], "world": int(t.item())}), flush=True)
dist.shutdown()
"""


def client_env(cluster: dict) -> dict:
    return {**os.environ, **cluster, "PYTHONPATH": str(REPO)}


def fleet(cluster: dict, cwd: Path, *argv: str, timeout: float = 600
          ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "fleet", *argv], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env=client_env(cluster))


def node(cluster: dict, action: str, name: str) -> None:
    subprocess.run([str(MULTINODE), action, name], check=True, timeout=60,
                   env=client_env(cluster))


def node_state(cluster: dict, name: str) -> str:
    return subprocess.run(["sinfo", "-h", "-n", name, "-o", "%T"], capture_output=True,
                          text=True, timeout=60, env=client_env(cluster)).stdout.strip()


def all_records(out: Path) -> list[dict]:
    return [r for p in sorted(out.glob("*.jsonl")) for r in read_records(p)]


def test_two_tasks_per_node_take_their_local_rank_from_slurm(multinode_cluster, tmp_path):
    done = subprocess.run(["srun", "-N2", "--ntasks-per-node=2", "--exclude=n3",
                           sys.executable, "-c", RANKS], capture_output=True, text=True,
                          timeout=300, env=client_env(multinode_cluster), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    ranks = sorted((json.loads(ln) for ln in done.stdout.splitlines() if ln.startswith("{")),
                   key=lambda r: r["rank"])
    assert [r["host"] for r in ranks] == ["n1", "n1", "n2", "n2"]
    for r in ranks:
        assert r["before"] == r["after"] == r["localid"] == r["ordinal"] == r["rank"] % 2, r
        assert r["master"] == "n1" and r["world"] == 4  # met on the first node, no MASTER_ADDR


def test_ddp_and_fsdp_across_two_nodes(multinode_cluster, tmp_path):
    out = tmp_path / "across"
    done = fleet(multinode_cluster, tmp_path, "--partitions", "mn", "--nodes", "2",
                 "--exclude", "n3", "--models", "llama3-debug", "--dataset",
                 "synthetic-tokens", "--seq-len", "32", "--parallel", "ddp,fsdp", *TINY,
                 "--out-dir", str(out))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    recs = read_records(out / "mn-ddp2x1.jsonl")
    assert sorted(r["parallel"] for r in recs) == ["ddp", "fsdp"]
    for r in recs:
        assert r["status"] == "ok" and r["nproc"] == 2, r.get("error")
        assert r["node"] == "n1" and r["host"] == "n1"  # rank 0 writes, on the first node
        assert len(r["rank_step_time_ms_median"]) == 2
    logs = "".join(p.read_text() for p in (out / "fleet").rglob("*_log.err"))
    assert "task 0/2 on n1 (MASTER_ADDR=n1)" in logs and "task 1/2 on n2 (MASTER_ADDR=n1)" in logs


def test_a_slow_node_is_flagged_by_node_health(multinode_cluster, tmp_path):
    from harness.analysis.node_health import node_health
    from harness.store.frame import load_results

    out = tmp_path / "health"
    done = fleet(multinode_cluster, tmp_path, "--partitions", "mn", "--each-node",
                 "--models", "convnet,resnet20,transformer", *TINY, "--batch-sizes", "8,16",
                 "--min-time", "0.5", "--out-dir", str(out), timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    health = node_health(load_results(sorted(out.glob("*.jsonl"))))
    print(health.summary.to_string(), file=sys.stderr)
    assert health.slow == [("mn", "n3")]


def wait_for_first_record(path: Path, limit: float = 300) -> None:
    deadline = time.monotonic() + limit
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"nothing recorded in {path} within {limit:.0f} s"
        time.sleep(0.5)


def wait_for_state(cluster: dict, name: str, states: tuple[str, ...], limit: float = 90) -> str:
    deadline = time.monotonic() + limit
    while (state := node_state(cluster, name)) not in states:
        assert time.monotonic() < deadline, f"{name} is {state!r}, not {states}"
        time.sleep(1)
    return state


@pytest.mark.parametrize("requeue", [True, False], ids=["requeue", "no-requeue"])
def test_a_node_powered_off_mid_job(multinode_cluster, tmp_path, requeue):
    out = tmp_path / "dead"
    argv = ["--partitions", "mn", "--sbatch=--nodelist=n2", "--models",
            "convnet,resnet20,transformer", *TINY, "--out-dir", str(out), "--detach"]
    if not requeue:
        argv.append("--sbatch=--no-requeue")
    submitted = fleet(multinode_cluster, tmp_path, *argv)
    assert submitted.returncode == 0, submitted.stdout[-2000:] + submitted.stderr[-2000:]
    wait_for_first_record(out / "mn.jsonl")
    node(multinode_cluster, "poweroff", "n2")
    wait_for_state(multinode_cluster, "n2", ("down", "down*"))
    node(multinode_cluster, "poweron", "n2")  # back, so that a requeued job can run again
    waited = fleet(multinode_cluster, tmp_path, "status", str(out), "--wait", "--poll", "1",
                   timeout=900)
    manifest = [json.loads(ln) for ln in (out / "fleet" / "jobs.jsonl").read_text().splitlines()]
    settled = [e for e in manifest if e["event"] == "settled"]
    lost = [r for r in all_records(out) if r.get("recorded_by") == "fleet"]
    if requeue:  # Slurm ran the job again once n2 was back: it recorded what it had lost
        assert waited.returncode == 0, waited.stdout[-2000:] + waited.stderr[-2000:]
        assert not lost
    else:  # the job ended NODE_FAIL: its lost configs are records naming that, and n2
        assert waited.returncode != 0
        assert lost and all("NODE_FAIL" in r["error"] and "n2" in r["error"] for r in lost)
        assert any(e.get("state") == "NODE_FAIL" for e in settled)
        rerun = fleet(multinode_cluster, tmp_path, *[a for a in argv if a != "--detach"])
        assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    ok = Counter(r["model"] for r in all_records(out) if r["status"] == "ok")
    assert ok == {"convnet": 1, "resnet20": 1, "transformer": 1}  # each ok exactly once


def test_a_job_at_its_time_limit_leaves_timeout_records(multinode_cluster, tmp_path):
    out = tmp_path / "limit"
    done = fleet(multinode_cluster, tmp_path, "--partitions", "mn", "--exclude", "n3",
                 "--models", "test_linear,test_hang,convnet", *TINY, "--time-limit", "1",
                 "--timeout", "600", "--out-dir", str(out), timeout=600)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]  # configs lost
    recs = {r["model"]: r for r in read_records(out / "mn.jsonl")}
    assert recs["test_linear"]["status"] == "ok"
    for model in ("test_hang", "convnet"):  # running at the limit, and never started
        assert recs[model]["status"] == "timeout", recs[model]
        assert "TIMEOUT" in recs[model]["error"] and recs[model]["recorded_by"] == "fleet"
