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
    model = 1.7e14  # (6N + 12 L d T) x 16,384 tokens for the 1B row, about
    plain = gpu_check.without_recompute(model)  # what the counter finds with no recompute
    fields = {"activation_checkpointing": "selective", "mfu_flops": "model", "mfu": 0.40,
              "hfu": 0.40 * 1.2 * plain / model, "peak_memory_active_pct": 52.0,
              "peak_memory_reserved_gib": 60.0, "power_limit_w": 700.0,
              "throughput_per_device": 30_000.0, "alloc_ooms": 0,
              "model_flops_per_step": model, "flops_per_step": 1.2 * plain}
    assert gpu_check.llama_problems([good("llama3.2-1b", **fields)]) == []
    # no recomputation in the count: selective checkpointing did not run
    flat = good("llama3.2-1b", **{**fields, "hfu": 0.40})
    assert any("recomputation is missing" in p for p in gpu_check.llama_problems([flat]))
    # issue 29: SDPA's backward alone (5 bmms counted, 4 in the convention) puts HFU above
    # MFU with nothing recomputed; the old check (hfu > mfu) passed this record
    sdpa_only = good("llama3.2-1b", **{**fields, "flops_per_step": plain,
                                       "hfu": 0.40 * plain / model})
    assert sdpa_only["hfu"] > sdpa_only["mfu"]
    assert any("recomputation is missing" in p for p in gpu_check.llama_problems([sdpa_only]))
    oom = good("llama3.2-1b", **{**fields, "alloc_ooms": 3})
    assert any("3 allocator OOMs" in p for p in gpu_check.llama_problems([oom]))
    bare = good("llama3.2-1b", **{**fields, "power_limit_w": None})
    assert any("no power_limit_w" in p for p in gpu_check.llama_problems([bare]))


def test_the_fsdp_step_needs_nccl_shards_and_an_fp8_row_or_its_reason():
    def sharded(precision, **kw):
        fields = {"nproc": 2, "fsdp_units": 5, "fsdp_reduce_op": "avg",
                  "float8_linears": 28 if precision == "fp8" else None}
        return good("llama3-debug", precision, **{**fields, **kw})

    h100, a100 = (9, 0), (8, 0)
    assert gpu_check.fsdp_problems([sharded("amp-bf16"), sharded("fp8")], 2, h100) == []
    old_gpu = good("llama3-debug", "fp8", status="unavailable",
                   error="NVIDIA A100 (compute capability 8.0) has no float8 tensor cores; "
                         "fp8 needs 8.9 or newer")
    assert gpu_check.fsdp_problems([sharded("amp-bf16"), old_gpu], 2, a100) == []
    summed = sharded("amp-bf16", fsdp_reduce_op="sum, then / world size", dist_backend="gloo")
    assert len(gpu_check.fsdp_problems([summed, sharded("fp8")], 2, h100)) == 1
    unconverted = sharded("fp8", float8_linears=0)
    assert any("float8" in p for p in gpu_check.fsdp_problems([sharded("amp-bf16"),
                                                                 unconverted], 2, h100))
    # issue 29: on an H100 (sm90) fp8 must run; torchao missing used to pass
    no_torchao = good("llama3-debug", "fp8", status="unavailable",
                      error="fp8 needs torchao (pip install trainmark[fp8])")
    problems = gpu_check.fsdp_problems([sharded("amp-bf16"), no_torchao], 2, h100)
    assert any("compute capability 9.0" in p for p in problems)


def test_a_compile_step_needs_a_compiled_record_with_its_compile_time():
    ok = good("transformer", compile=True, compile_time_s=21.0)
    assert gpu_check.compile_problems([ok]) == []
    assert gpu_check.compile_problems([good("transformer", compile=False)])
    assert gpu_check.compile_problems([]) == ["compile: 0 records, expected 1"]
    assert any(step == "compile" for step, _ in gpu_check.STEPS)


def test_the_summary_line_survives_a_record_without_mfu():
    """No peak FLOP/s (an unlisted GPU whose measurement failed): mfu is None; the line
    formatted it with :.1% and raised, ending the whole check."""
    rec = good("llama3.2-1b", mfu=None, hfu=None, throughput_per_device=30_000.0,
               peak_memory_reserved_gib=60.0, peak_memory_reserved_pct=75.0)
    line = gpu_check.llama_line(rec)
    assert "MFU n/a (HFU n/a)" in line and "30,000" in line


def test_a_rerun_into_the_same_folder_starts_each_results_file_afresh(tmp_path):
    stale = tmp_path / "sweep.jsonl"
    stale.write_text('{"status": "ok"}\n')
    assert gpu_check.fresh(stale) == stale and not stale.exists()
    assert gpu_check.fresh(tmp_path / "none.jsonl") == tmp_path / "none.jsonl"


def test_the_time_the_docs_give_is_the_scripts():
    readme = (SCRIPT.parent.parent / "README.md").read_text()
    assert "under 8 minutes" in readme and "Total ~ 7.5 minutes" in SCRIPT.read_text()
