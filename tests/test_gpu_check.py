"""scripts/gpu-check cannot pass by accident: its checks fail on the records of a failed step
(no GPU here, so the records are written by hand as a GPU run would write them)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu-check"


def _load():
    loader = importlib.machinery.SourceFileLoader("gpu_check", str(SCRIPT))
    spec = importlib.util.spec_from_loader("gpu_check", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


gpu_check = _load()


def good(model: str, precision: str = "amp-bf16", **kw) -> dict:
    """A record of one ok config on a GPU, every GPU-only field filled."""
    rec = {"model": model, "precision": precision, "batch_size": 128, "status": "ok",
           "error": None, "device": "cuda:0", "optimizer_fused": True,
           "step_syncs_host": False, "nproc": 1, "dist_backend": "cpu:gloo,cuda:nccl",
           **dict.fromkeys(gpu_check.GPU_FIELDS, 1.0)}
    rec.update(kw)
    return rec


def test_a_ddp_step_passes_only_with_ok_records_from_an_nccl_group():
    ok = [good("resnet20"), good("transformer")]
    assert gpu_check.ddp_problems(ok, nproc=1) == []
    # The old check, (nproc == 1).all(), passed on these: every config failed.
    failed = [good(m, status="error", error="No backend type associated with device type cpu",
                   **dict.fromkeys(gpu_check.GPU_FIELDS)) for m in ("resnet20", "transformer")]
    problems = gpu_check.ddp_problems(failed, nproc=1)
    assert len(problems) == 2 and all("No backend type" in p for p in problems)
    assert gpu_check.ddp_problems([], nproc=1) == ["ddp: 0 records, expected 2"]
    # ok, but not from a process group at all (a plain run): not the DDP path
    plain = [good(m, dist_backend=None) for m in ("resnet20", "transformer")]
    assert len(gpu_check.ddp_problems(plain, nproc=1)) == 2
    assert len(gpu_check.ddp_problems(ok, nproc=2)) == 2  # 2 GPUs: two ranks expected


def test_the_sweep_needs_gpu_fields_fused_optimizers_and_no_host_sync():
    models = ("convnet", "resnet20", "transformer")
    precisions = ("fp32", "amp-bf16", "amp-fp16")
    recs = [good(m, p) for m in models for p in precisions]
    assert gpu_check.sweep_problems(recs) == []
    synced = [*recs[:-1], good("transformer", "amp-fp16", optimizer_fused=False,
                               step_syncs_host=True)]
    assert any("step_syncs_host=True" in p for p in gpu_check.sweep_problems(synced))
    on_cpu = [*recs[:-1], good("transformer", "amp-fp16", device="cpu", energy_j=None)]
    problems = gpu_check.sweep_problems(on_cpu)
    assert any("no energy_j" in p for p in problems)
    assert any("ran on cpu" in p for p in problems)
    assert gpu_check.sweep_problems(recs[:8]) == ["sweep: 8 records, expected 9"]


def test_the_llama_step_needs_checkpointing_counted_and_torchtitans_memory_fields():
    fields = {"activation_checkpointing": "selective", "mfu_flops": "model", "mfu": 0.40,
              "hfu": 0.48, "peak_memory_active_pct": 52.0, "peak_memory_reserved_gib": 60.0,
              "power_limit_w": 700.0, "throughput_per_device": 30_000.0, "alloc_ooms": 0}
    assert gpu_check.llama_problems([good("llama3.2-1b", **fields)]) == []
    # no recomputation in the count: selective checkpointing did not run
    flat = good("llama3.2-1b", **{**fields, "hfu": 0.40})
    assert any("not above mfu" in p for p in gpu_check.llama_problems([flat]))
    oom = good("llama3.2-1b", **{**fields, "alloc_ooms": 3})
    assert any("3 allocator OOMs" in p for p in gpu_check.llama_problems([oom]))
    bare = good("llama3.2-1b", **{**fields, "power_limit_w": None})
    assert any("no power_limit_w" in p for p in gpu_check.llama_problems([bare]))


def test_the_fsdp_step_needs_nccl_shards_and_an_fp8_row_or_its_reason():
    def sharded(precision, **kw):
        fields = {"nproc": 2, "fsdp_units": 5, "fsdp_reduce_op": "avg",
                  "float8_linears": 28 if precision == "fp8" else None}
        return good("llama3-debug", precision, **{**fields, **kw})

    assert gpu_check.fsdp_problems([sharded("amp-bf16"), sharded("fp8")], nproc=2) == []
    old_gpu = good("llama3-debug", "fp8", status="unavailable",
                   error="NVIDIA A100 (compute capability 8.0) has no float8 tensor cores; "
                         "fp8 needs 8.9 or newer")
    assert gpu_check.fsdp_problems([sharded("amp-bf16"), old_gpu], nproc=2) == []
    summed = sharded("amp-bf16", fsdp_reduce_op="sum, then / world size", dist_backend="gloo")
    assert len(gpu_check.fsdp_problems([summed, sharded("fp8")], nproc=2)) == 1
    unconverted = sharded("fp8", float8_linears=0)
    assert any("float8" in p for p in gpu_check.fsdp_problems([sharded("amp-bf16"),
                                                                 unconverted], nproc=2))
