"""The memory plan (harness/core/memplan.py): its arithmetic by hand, what a rank may use (the
cgroup's limit), and an unfittable config refused as an ``oom`` record before it is built.

The two-rank check that a model built on the meta device and sharded equals one built whole is
in tests/test_parallel.py (``test_a_model_built_on_meta_and_sharded_equals_one_built_whole``),
where the ranks are already launched.
"""

from __future__ import annotations

import json
import time

import pytest
import torch
import torch.nn as nn

from harness.cli import main
from harness.core import memplan
from harness.core.config import RunConfig
from harness.core.memplan import SavedTensors, cgroup_memory_limit, plan_memory, saved_activations
from harness.core.runner import Runner
from harness.probes.memory import peak_rss_bytes

DEBUG = {"vocab_size": 2048, "block_size": 64}
DEBUG_PARAMS = 459_328  # llama3-debug at a 2,048-token vocabulary (models/llama.py)
GIB = 2**30


def test_saved_activations_of_a_small_network_by_hand():
    """Linear(8, 16) -> ReLU -> Linear(16, 3) and cross-entropy over a batch of 4, float32:
    the first matmul keeps its input x (4 x 8), ReLU its output (4 x 16, which the second matmul
    keeps too: one storage), the loss its log-softmax (4 x 3), the targets (4 int64) and its
    scalar weight; the parameters not at all."""
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)).to("meta")
    x = torch.empty(4, 8, device="meta")
    y = torch.empty(4, dtype=torch.long, device="meta")
    saved = saved_activations(model, x, y)
    assert saved.outside == 4 * 8 * 4 + 4 * 16 * 4 + 4 * 3 * 4 + 4 * 8 + 4
    assert saved.blocks == [] and saved.largest == 4 * 16 * 4


def test_checkpointing_keeps_what_each_mode_says():
    """Three blocks saving 10, 20, 30 B with inputs of 1, 2, 3 B, of which 4, 5, 6 B are what
    the per-operator policy keeps; 100 B outside the blocks."""
    s = SavedTensors(outside=100, blocks=[10, 20, 30], inputs=[1, 2, 3], kept=[4, 5, 6])
    assert s.total("none") == 100 + 60
    assert s.total("full") == 100 + (1 + 2 + 3) + 30  # inputs, and the largest block again
    assert s.total("selective:2") == 100 + 10 + 2 + 30 + 20  # only the 2nd block recomputes
    assert s.total("selective") == 100 + (1 + 4) + (2 + 5) + (3 + 6) + 30


def activations(seq: int, ac: str = "none") -> int:
    plan = plan_memory("llama3-debug", {"vocab_size": 2048, "block_size": seq}, batch_size=2,
                       precision="fp32", optimizer="adam", parallel="fsdp",
                       activation_checkpointing=ac, world=1, capacity=None)
    assert plan.activations is not None
    return plan.activations


def test_attention_is_counted_as_the_fused_kernels_save_it():
    """Linear in the sequence length: the T x T attention matrix that meta tensors' math
    fallback builds (quadratic) is not counted. Checkpointing holds less."""
    assert activations(128) == pytest.approx(2 * activations(64), rel=1e-3)
    assert activations(64, "full") < activations(64, "selective") < activations(64)


@pytest.mark.parametrize("optimizer, states", [("sgd", 1), ("adam", 2), ("adagrad", 1)])
def test_the_plan_of_llama3_debug_by_hand(optimizer, states):
    whole = plan_memory("llama3-debug", DEBUG, batch_size=2, precision="fp32",
                        optimizer=optimizer, parallel="ddp", activation_checkpointing="none",
                        world=2, capacity=None)
    assert whole.params == whole.grads == DEBUG_PARAMS * 4
    assert whole.optimizer == states * DEBUG_PARAMS * 4
    sharded = plan_memory("llama3-debug", DEBUG, batch_size=2, precision="fp32",
                          optimizer=optimizer, parallel="fsdp", activation_checkpointing="none",
                          world=2, capacity=None)
    assert sharded.params == sharded.grads == DEBUG_PARAMS // 2 * 4
    assert sharded.optimizer == states * DEBUG_PARAMS // 2 * 4
    assert sharded.activations == whole.activations  # the same batch per rank
    # DDP over 2 ranks: its float32 buckets; FSDP: the root (embedding, head, norm: 2 x 2048 x
    # 64 + 64) and two blocks gathered, one unit's gradient with its float32 copy; both: the
    # largest saved tensor once more
    root, block = 2 * 2048 * 64 + 64, (DEBUG_PARAMS - 2 * 2048 * 64 - 64) // 4
    largest = whole.transient - DEBUG_PARAMS * 4
    assert largest == sharded.transient - ((root + 2 * block) * 4 + max(root, block) * 8)
    assert 0 < largest < whole.activations
    assert sharded.total == sum((sharded.params, sharded.grads, sharded.optimizer,
                                 sharded.activations, sharded.transient))


def test_cgroup_limits_v1_and_v2_tightest_ancestor_wins(tmp_path):
    v2 = tmp_path / "v2"
    (v2 / "jobs" / "one").mkdir(parents=True)
    (v2 / "jobs" / "memory.max").write_text("8589934592\n")
    (v2 / "jobs" / "one" / "memory.max").write_text("max\n")
    assert cgroup_memory_limit("0::/jobs/one\n", v2) == 8 * GIB
    v1 = tmp_path / "v1"
    (v1 / "memory" / "api" / "x").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # none
    (v1 / "memory" / "api" / "x" / "memory.limit_in_bytes").write_text(f"{3 * GIB}\n")
    text = "4:memory:/api/x\n3:cpuset:/\n0::/\n"
    assert cgroup_memory_limit(text, v1) == 3 * GIB
    assert cgroup_memory_limit("4:memory:/\n", v1) is None  # unlimited
    assert cgroup_memory_limit("4:memory:/elsewhere\n", tmp_path / "none") is None


def test_the_ranks_of_one_host_share_its_memory(monkeypatch):
    monkeypatch.setattr(memplan, "cgroup_memory_limit", lambda: 6 * GIB)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert memplan.rank_capacity(torch.device("cpu"), world=4) == 3 * GIB
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "3(x2)")
    assert memplan.ranks_on_this_host(6) == 3
    assert memplan.rank_capacity(torch.device("cpu"), world=6) == 2 * GIB


def run_one(model: str, seq_len: int) -> dict:
    """One config measured in this process, as a sweep's worker measures it."""
    cfg = RunConfig(model=model, dataset="synthetic-tokens", batch_size=1, optimizer="adam",
                    warmup_steps=1, timed_steps=1, repeats=1, eval_samples=2, seq_len=seq_len)
    return Runner(isolation="none").run(cfg)


def test_a_70b_model_is_refused_in_seconds_without_being_built():
    """70.55B parameters: 282 GB of float32 weights alone on one process, far beyond any CPU
    host here. The record is ``oom``, names the estimate, and the process never grew."""
    started = time.perf_counter()
    rec = run_one("llama3.1-70b", seq_len=256)
    assert time.perf_counter() - started < 60
    assert rec["status"] == "oom" and rec.get("build") is None
    weights = 70_553_706_496 * 4
    assert rec["plan_params_bytes"] == rec["plan_grads_bytes"] == weights
    assert rec["plan_optimizer_bytes"] == 2 * weights
    assert rec["plan_capacity_bytes"] == memplan.process_memory_bytes()
    assert rec["error"].startswith(f"memory plan: {rec['plan_total_bytes'] / GIB:.1f} GiB per "
                                   "rank (params 262.8, grads 262.8, optimizer 525.7, ")
    assert rec["error"].endswith(f"> {rec['plan_capacity_bytes'] / GIB:.1f} GiB this rank may "
                                 "use; not started")
    assert peak_rss_bytes() < 8 * GIB


def test_a_memory_limit_is_a_boundary_the_plan_respects(monkeypatch):
    """A config that runs here is refused where the process may use less than its estimate
    (a memory cgroup's limit), and its record says why."""
    monkeypatch.setattr(memplan, "cgroup_memory_limit", lambda: 2**20)  # 1 MiB
    rec = run_one("llama3-debug", seq_len=32)
    assert rec["status"] == "oom", rec["error"]
    assert rec["plan_capacity_bytes"] == 2**20 < rec["plan_total_bytes"]
    assert "> 1.0 MiB this rank may use; not started" in rec["error"]


@pytest.mark.long
def test_70b_and_405b_over_two_sharded_ranks_are_oom_records(tmp_path):
    """The issue's command: two FSDP ranks on the CPU under torch.distributed.run. Each rank
    plans (the 405B: 3.8 TiB per rank in bf16 with Adam) and the sweep records ``oom``."""
    out = tmp_path / "r.jsonl"
    assert main(["run", "--models", "llama3.1-70b,llama3.1-405b", "--nproc", "2",
                 "--parallel", "fsdp", "--devices", "cpu", "--batch-sizes", "1",
                 "--precisions", "amp-bf16", "--optimizers", "adam", "--quiet", "--no-report",
                 "--out", str(out)]) == 0  # failures are records
    recs = {r["model"]: r for r in map(json.loads, out.read_text().splitlines())}
    for model, params in (("llama3.1-70b", 70_553_706_496), ("llama3.1-405b", 405_853_388_800)):
        rec = recs[model]
        assert rec["status"] == "oom" and "memory plan:" in rec["error"], rec["error"]
        assert rec["plan_params_bytes"] == -(-params // 2) * 4
        assert f"{rec['plan_total_bytes'] / GIB:.1f} GiB per rank" in rec["error"]
        assert rec["wall_time_s"] < 120
