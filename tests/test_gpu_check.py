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
