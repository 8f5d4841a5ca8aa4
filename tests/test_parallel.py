"""Sharded training on the CPU, for real: FSDP2 over 2 gloo ranks against one process,
activation checkpointing, float8 in torchao's emulation, and the figures a record gives.

Expected values come from elsewhere than the code under test: a single process training the
same global batch (FSDP must average gradients, which gloo has summed in some releases:
pytorch issue 162338), the run without checkpointing, a bf16 run, and FLOP counts worked out
by hand from llama3-debug's shapes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.core import memplan
from harness.core.checkpointing import apply_checkpointing
from harness.core.config import RunConfig
from harness.core.flops import model_flops_per_token, train_step_flops
from harness.core.parallel import prepare
from harness.core.precision import PrecisionPlan, resolve_precision
from harness.core.record import utilisation_fields
from harness.core.step import loss_fn
from harness.errors import Unavailable
from harness.probes import telemetry
from harness.probes.memory import allocator_fields, device_memory_fields
from models import create_model
from tests.test_telemetry import FakeNvml, cuda_props

TESTS = Path(__file__).resolve().parent
CPU = torch.device("cpu")

# llama3-debug by hand: width, blocks, key/value width (2 heads of 16), SwiGLU hidden, vocabulary
D, L, KV, FFN, V = 64, 4, 32, 192, 2048
WQ, WK, WV, WO, W1, W3, W2 = D * D, D * KV, D * KV, D * D, D * FFN, D * FFN, FFN * D
BLOCK = WQ + WK + WV + WO + W1 + W3 + W2  # 49,152 weights in a block's matmuls
HEAD, NORMS = D * V, 2 * L * D + D  # output head; RMSNorm weights (2 per block, 1 final)


def counted_by_hand(B: int, T: int, recomputed_per_block: int = 0,
                    attention_recomputed: bool = False) -> int:
    """What torch's FLOP counter should see in one step: 2 FLOPs per multiply-add; each
    matmul's backward is two products (input and weight gradient); attention's forward is two
    batched products (QK^T, PV: 4·B·T²·D per block) and torch's formula for its backward five
    (the scores recomputed, dV, dP, dQ, dK), 2.5x the forward. Checkpointing adds the
    recomputed forward matmuls (``recomputed_per_block`` weights per block) and attention."""
    tokens = B * T
    linear = 6 * (L * BLOCK + HEAD) * tokens
    attention = L * (4 + 10) * B * T * T * D
    extra = 2 * L * recomputed_per_block * tokens
    if attention_recomputed:
        extra += L * 4 * B * T * T * D
    return linear + attention + extra


def model_flops_by_hand(B: int, T: int) -> int:
    """6·N per token (N: every parameter but the embedding table) plus 12·L·D·T."""
    return (6 * (L * BLOCK + HEAD + NORMS) + 12 * L * D * T) * B * T


def debug_model(block: int = 64) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("llama3-debug", vocab_size=V, block_size=block)


def batch(B: int = 4, T: int = 64, seed: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randint(0, V, (B, T), generator=gen),
            torch.randint(0, V, (B, T), generator=gen))


def train_steps(model: torch.nn.Module, steps: int, x, y, autocast: torch.dtype | None = None):
    """Losses of ``steps`` Adam steps on one batch, and the gradients after the first."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses, grads = [], {}
    for i in range(steps):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=autocast, enabled=autocast is not None):
            loss = loss_fn(model(x), y)
        loss.backward()
        if i == 0:
            grads = {n.replace(".block.", "."): p.grad.clone()
                     for n, p in model.named_parameters()}
        optimizer.step()
        losses.append(loss.item())
    return losses, grads


# ----------------------------------------------------------------- activation checkpointing


@pytest.mark.parametrize("mode, wrapped", [("selective", 4), ("full", 4), ("selective:2", 2)])
def test_checkpointing_leaves_the_loss_and_gradients_as_they_were(mode, wrapped):
    x, y = batch()
    plain_losses, plain_grads = train_steps(debug_model(), 3, x, y)
    model = debug_model()
    assert apply_checkpointing(model, mode) == wrapped
    losses, grads = train_steps(model, 3, x, y)
    assert losses == plain_losses  # the same arithmetic, recomputed: bit for bit on the CPU
    assert grads.keys() == plain_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, plain_grads[name], rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("mode, recomputed, attention", [
    ("none", 0, False),
    # every matmul of the block but the last (w2): non-reentrant checkpointing stops its
    # recomputation once it has what the backward needs, and nothing keeps w2's output
    ("full", BLOCK - W2, True),
    ("selective:2", (BLOCK - W2) // 2, True),  # half the blocks, fully (attention: / 2 below)
    # per operator: the 2nd, 4th and 6th matmul of each block (wk, wo, w3) are recomputed,
    # attention's output is kept
    ("selective", WK + WO + W3, False),
])
def test_counted_flops_include_the_recomputation_by_hand(mode, recomputed, attention):
    model = debug_model()
    apply_checkpointing(model, mode)
    x, y = batch(4, 64)
    counted = train_step_flops(model, x, y, loss_fn=loss_fn).total
    expected = counted_by_hand(4, 64, recomputed, attention)
    if mode == "selective:2":  # blocks 2 and 4 only: their attention is recomputed too
        expected -= L * 4 * 4 * 64 * 64 * D // 2
    assert counted == expected
    # The model's FLOPs do not move with checkpointing: 6N + 12·L·D·T per token
    assert model_flops_per_token(model, 64) * 4 * 64 == model_flops_by_hand(4, 64)


def test_checkpointing_a_model_without_transformer_blocks_is_unavailable():
    with pytest.raises(Unavailable, match="ConvNet has none"):
        apply_checkpointing(create_model("convnet"), "full")


# ----------------------------------------------------------------------------------- float8


def test_float8_emulation_converts_the_linears_and_trains_close_to_bf16():
    pytest.importorskip("torchao")
    x, y = batch(4, 64)
    bf16, _ = train_steps(debug_model(), 4, x, y, autocast=torch.bfloat16)
    model = debug_model()
    plan = PrecisionPlan("fp8", torch.bfloat16, False, float8=True)
    prepared = prepare(model, CPU, parallel="ddp", activation_checkpointing="none", plan=plan,
                       emulate_float8=True)
    # every block's 7 linear layers; the output head stays in bf16
    assert prepared.fields["float8_linears"] == 7 * L
    assert type(model.output).__name__ == "Linear"
    fp8, _ = train_steps(model, 4, x, y, autocast=torch.bfloat16)
    assert fp8 != bf16  # the casts to float8 happened
    for a, b in zip(fp8, bf16, strict=True):
        assert a == pytest.approx(b, rel=2e-3)  # and cost little: measured up to 0.004%


def test_fp8_and_fp16_are_unavailable_where_they_cannot_run():
    with pytest.raises(Unavailable, match="compute capability 8.9"):
        resolve_precision("fp8", CPU)
    fp16 = PrecisionPlan("amp-fp16", torch.float16, True)
    with pytest.raises(Unavailable, match="fp16 needs loss scaling"):
        prepare(debug_model(), CPU, parallel="fsdp", activation_checkpointing="none",
                plan=fp16)


# ------------------------------------------------------------------------ FSDP over 2 ranks


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("fsdp") / "ranks.pt"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(TESTS / "fsdp_ranks.py"), str(out)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out)


@pytest.mark.slow
def test_fsdp_on_two_ranks_trains_as_one_process_on_the_global_batch(two_ranks):
    sys.path.insert(0, str(TESTS))
    import fsdp_ranks as ranks

    x, y = ranks.global_batch()
    model = ranks.fresh_model()
    losses, grads = train_steps(model, ranks.STEPS, x, y)
    # each rank's loss is the mean over its half; the global batch's is their mean
    fsdp = [sum(step) / 2 for step in zip(*two_ranks["losses"], strict=True)]
    assert fsdp == pytest.approx(losses, abs=1e-5)
    assert two_ranks["losses"][0] != two_ranks["losses"][1]  # the ranks had different data
    assert grads.keys() == two_ranks["grads"].keys()
    for name, grad in grads.items():  # averaged, not summed (a sum would be 2x)
        torch.testing.assert_close(two_ranks["grads"][name], grad, rtol=1e-4, atol=1e-6,
                                   msg=name)
    for name, param in model.named_parameters():
        torch.testing.assert_close(two_ranks["params"][name], param.detach(), rtol=1e-4,
                                   atol=1e-5, msg=name)
    assert two_ranks["fields"]["fsdp_units"] == L + 1
    assert two_ranks["fields"]["fsdp_reduce_op"] == "sum, then / world size"  # gloo


@pytest.mark.slow
def test_fsdp_keeps_the_loss_with_checkpointing_and_float8_stays_close_to_bf16(two_ranks):
    assert two_ranks["selective"] == two_ranks["losses"]
    fp8, bf16 = two_ranks["fp8"], two_ranks["bf16"]
    assert two_ranks["fp8_fields"]["float8_linears"] == 7 * L
    assert two_ranks["fp8_fields"]["fsdp_param_dtype"] == "bfloat16"
    assert fp8 != bf16
    for rank_fp8, rank_bf16 in zip(fp8, bf16, strict=True):
        assert rank_fp8 == pytest.approx(rank_bf16, rel=2e-3)  # measured up to 0.01%


@pytest.mark.slow
def test_a_model_built_on_meta_and_sharded_equals_one_built_whole(two_ranks):
    """Under one seed, each rank's shards, materialised and initialised after fully_shard,
    hold what building whole and then sharding gives: every parameter (gathered back in full),
    the rotary tables, the first loss; with checkpointing, float8 and a tied head too."""
    assert set(two_ranks["meta"]) == {"plain", "selective", "fp8-full", "tied"}
    for case, got in two_ranks["meta"].items():
        assert got["builds"] == ("whole", "meta"), case
        assert got["names"] and got["params_equal"] and got["rope_equal"], case
        assert got["losses"][0] == got["losses"][1], case
    assert two_ranks["meta"]["tied"]["tied"]  # the head still is the embedding


@pytest.mark.slow
def test_a_sharded_run_records_what_torchtitan_logs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["run", "--models", "llama3-debug", "--devices", "cpu", "--parallel", "fsdp",
            "--nproc", "2", "--activation-checkpointing", "selective", "--batch-sizes", "2",
            "--seq-len", "32", "--optimizers", "adam", "--precisions", "fp32", "--warmup", "1",
            "--steps", "2", "--repeats", "2", "--eval-samples", "4", "--isolation", "none",
            "--quiet", "--no-report", "--out", "r.jsonl"]
    assert main(argv) == 0
    (rec,) = [json.loads(line) for line in Path("r.jsonl").read_text().splitlines()]
    assert rec["status"] == "ok", rec["error"]
    assert (rec["nproc"], rec["parallel"], rec["activation_checkpointing"]) == (
        2, "fsdp", "selective")
    assert (rec["dist_backend"], rec["fsdp_units"], rec["ac_blocks"]) == ("gloo", L + 1, L)
    assert rec["throughput_per_device"] == pytest.approx(rec["throughput"] / 2)
    assert rec["model_flops_per_step"] == model_flops_by_hand(2, 32)  # per rank
    assert rec["flops_per_step"] == counted_by_hand(2, 32, WK + WO + W3)  # with recompute
    assert rec["mfu_flops"] == "model" and rec["hfu"] > rec["mfu"] > 0
    # built sharded, and planned: 459,328 parameters over 2 ranks, float32 weights and
    # gradients (229,664 x 4 B each), Adam's two moments; half of what this process may use
    assert rec["build"] == "meta"
    assert rec["plan_params_bytes"] == rec["plan_grads_bytes"] == 229_664 * 4
    assert rec["plan_optimizer_bytes"] == 2 * 229_664 * 4
    assert rec["plan_activations_bytes"] > 0 and rec["plan_transient_bytes"] > 0
    assert rec["plan_total_bytes"] == sum(rec[f"plan_{part}_bytes"] for part in (
        "params", "grads", "optimizer", "activations", "transient"))
    assert rec["plan_capacity_bytes"] == memplan.process_memory_bytes() // 2
    assert rec["hfu"] / rec["mfu"] == pytest.approx(rec["flops_per_step"]
                                                    / rec["model_flops_per_step"])
    # memory on the CPU: the host's, sane; the CUDA allocator's figures absent, not zero
    pages = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert rec["device_memory_capacity_bytes"] == pages
    assert 0 < rec["peak_rss_pct"] < 100
    assert rec["peak_rss_pct"] == pytest.approx(100 * rec["peak_rss_bytes"] / pages)
    for field in ("peak_memory_active_bytes", "peak_memory_reserved_pct", "alloc_retries",
                  "power_limit_w"):
        assert rec.get(field) is None, field


# ------------------------------------------------------------------ a record's arithmetic


def test_per_device_throughput_and_utilisation_by_hand():
    """llama3-debug, 2 ranks of batch 2 x 32 tokens, 0.25 s a step, a 1 TFLOP/s device: 512
    tokens/s in all, 256 per device; model FLOPs 132,341,760 per rank and step (by hand:
    (6 x 328,256 + 12 x 4 x 64 x 32) x 64), so MFU = 132,341,760 / 0.25 / 1e12 = 5.29e-4; the
    count, with selective recomputation, 142,606,336: HFU 5.70e-4."""
    fields = utilisation_fields(counted=142_606_336, model_flops=132_341_760, step_s=0.25,
                                peak=1e12, world=2)
    assert fields["mfu"] == pytest.approx(132_341_760 / 0.25 / 1e12)
    assert fields["hfu"] == pytest.approx(142_606_336 / 0.25 / 1e12)
    assert fields["achieved_flops_per_s"] == pytest.approx(2 * 142_606_336 / 0.25)
    assert fields["peak_flops_per_s"] == 2e12 and fields["mfu_flops"] == "model"
    assert model_flops_by_hand(2, 32) == 132_341_760
    assert counted_by_hand(2, 32, WK + WO + W3) == 142_606_336
    # an image model: no analytic FLOPs, its count is its model FLOPs
    image = utilisation_fields(counted=1000, model_flops=None, step_s=1.0, peak=1e4, world=1)
    assert (image["mfu"], image["hfu"], image["mfu_flops"]) == (0.1, 0.1, "counted")
    from harness.core import record

    tokens = RunConfig(model="llama3-debug", dataset="synthetic-tokens", nproc=2)
    assert tokens.needs_launcher and RunConfig(model="llama3-debug", dataset="synthetic-tokens",
                                               parallel="fsdp").needs_launcher
    assert record.peak_dtype(RunConfig(model="llama3-debug", dataset="x", precision="fp8",
                                       device="cuda:0"), conv=False) == "bf16"


def test_allocator_fields_are_torchtitans_memory_figures():
    stats = {"active_bytes.all.peak": 3 * 2**30, "reserved_bytes.all.peak": 6 * 2**30,
             "num_alloc_retries": 2, "num_ooms": 0}
    fields = allocator_fields(stats, capacity=80 * 2**30)
    assert fields == {"peak_memory_active_bytes": 3 * 2**30, "peak_memory_active_gib": 3.0,
                      "peak_memory_active_pct": 3.75, "peak_memory_reserved_gib": 6.0,
                      "peak_memory_reserved_pct": 7.5, "alloc_retries": 2, "alloc_ooms": 0}
    unknown = allocator_fields({}, capacity=None)
    assert set(unknown.values()) == {None}
    cpu = device_memory_fields(CPU)
    assert cpu == {"device_memory_capacity_bytes":
                   os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")}


class PowerLimitedNvml(FakeNvml):
    def nvmlDeviceGetEnforcedPowerLimit(self, handle: str) -> int:
        return {"gpu0": 700_000, "gpu1": 500_000}[handle]  # milliwatts


def test_power_limit_is_the_enforced_limit_of_the_config_gpu_in_watts(monkeypatch):
    telemetry._nvml_status.cache_clear()
    monkeypatch.setitem(sys.modules, "pynvml", PowerLimitedNvml())
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: cuda_props())
    try:
        assert telemetry.power_limit_w(torch.device("cuda:0")) == 500.0  # NVML's 2nd GPU
        assert telemetry.power_limit_w(CPU) is None
    finally:
        telemetry._nvml_status.cache_clear()


@pytest.mark.long
def test_the_largest_batch_that_fits_is_found_for_a_sharded_config(tmp_path, monkeypatch):
    """Each probe of ``--batch-sizes max`` is itself a 2-rank FSDP run (rank 0's record is
    judged); under a budget every size fits, so the search ends at its limit."""
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--models", "llama3-debug", "--devices", "cpu", "--parallel", "fsdp",
                 "--nproc", "2", "--batch-sizes", "max:4", "--memory-budget", "8",
                 "--seq-len", "32", "--precisions", "fp32", "--optimizers", "adam",
                 "--warmup", "1", "--steps", "2", "--repeats", "2", "--eval-samples", "4",
                 "--isolation", "none", "--quiet", "--no-report", "--out", "r.jsonl"]) == 0
    (rec,) = [json.loads(line) for line in Path("r.jsonl").read_text().splitlines()]
    assert rec["status"] == "ok", rec["error"]
    assert (rec["batch_size"], rec["parallel"], rec["nproc"]) == (4, "fsdp", 2)
    assert rec["batch_size_probes"] == [[1, True], [2, True], [4, True]]
