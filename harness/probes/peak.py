"""Peak FLOP/s for MFU: a datasheet table for known GPUs, a measured GEMM peak for the rest.

``peak_flops_per_s(device, dtype)`` is what the runner calls, with the GEMM dtype its precision
runs (``core.precision.gemm_dtype``). For a CUDA device whose name is in ``peak_table.GPU_PEAKS``
it returns the vendor's *dense* tensor-core (or FP32 CUDA-core) peak; for CPUs, MPS and unknown
GPUs the best ``torch.matmul`` rate measured at sizes that saturate the device, cached per
machine (``harness.schema.machine_key`` with the host) in ``$TRAINMARK_CACHE_DIR/peak.json``
(default ``~/.cache/trainmark``). The runner only reads the cache: a sweep measures what it needs
before its first config (``execution.peaks.prepare_peaks``), never in the middle of one.
``trainmark peak`` prints both.

A measured peak is what this software stack achieves on one large GEMM, not the silicon's
theoretical peak, so MFU against it reads "fraction of the best matmul rate" -- and on a busy
machine the measurement is low and MFU high: the cache stores the load average to tell.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time
from pathlib import Path

import torch

from harness.errors import UserError, one_line
from harness.probes.peak_table import lookup_gpu
from harness.probes.provenance import cpu_model
from harness.schema import machine_key

CACHE_ENV = "TRAINMARK_CACHE_DIR"
DEFAULT_BUDGET_S = 2.0  # measuring time per dtype; escalation to larger sizes stops before it
DTYPES = ("fp32", "tf32", "bf16", "fp16")
_TORCH_DTYPE = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16,
                "fp16": torch.float16}


# ------------------------------------------------------------------------------- measuring


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def measure_gemm(device: str, dtype: str, budget_s: float = DEFAULT_BUDGET_S,
                 max_size: int | None = None) -> dict[str, object]:
    """Best ``torch.matmul`` FLOP/s of square ``dtype`` GEMMs on ``device`` within ``budget_s``.

    Sizes grow (256, 512, ... up to 4096 on CPU, 16384 on GPUs) while the next size's predicted
    cost (a warm-up and two repeats at 8x the last per-call time) fits the remaining budget:
    a slow path (fp16 GEMM on most CPUs runs at ~1 GFLOP/s) stops at a small size instead of
    running for minutes. Each size is warmed up once; each timed repeat (one to five) runs enough
    calls for ~20 ms, synchronized at its edges; the best repeat of any size is the peak.
    """
    dev = torch.device(device)
    torch_dtype = _TORCH_DTYPE[dtype]
    sizes = [256, 512, 1024, 2048, 4096]
    if dev.type != "cpu":
        sizes += [8192, 16384]
    if max_size is not None:
        sizes = [n for n in sizes if n <= max_size] or [min(sizes)]
    saved_tf32 = torch.backends.cuda.matmul.allow_tf32
    deadline = time.perf_counter() + budget_s
    best, best_n, per_call = 0.0, sizes[0], 0.0
    try:
        if dev.type == "cuda":  # fp32 and tf32 are the same dtype; the flag picks the kernel
            torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
        for n in sizes:
            if best > 0 and time.perf_counter() + 3 * 8 * per_call > deadline:
                break  # next size: 8x the work per call, >= 3 calls; it would overrun
            gen = torch.Generator(device=dev).manual_seed(0)
            a = torch.randn(n, n, device=dev, generator=gen).to(torch_dtype)
            b = torch.randn(n, n, device=dev, generator=gen).to(torch_dtype)
            t0 = time.perf_counter()
            torch.matmul(a, b)  # warm-up: kernel selection, allocation, thread-pool start
            _sync(dev)
            per_call = time.perf_counter() - t0
            if best > 0 and time.perf_counter() > deadline:
                break  # the warm-up alone used up the budget (a busy or slow device)
            calls = max(1, int(0.02 / max(per_call, 1e-9)))
            for rep in range(5):
                if rep >= 1 and time.perf_counter() + calls * per_call > deadline:
                    break
                t0 = time.perf_counter()
                for _ in range(calls):
                    torch.matmul(a, b)
                _sync(dev)
                seconds = time.perf_counter() - t0
                per_call = seconds / calls
                rate = 2.0 * n**3 * calls / seconds
                if rate > best:
                    best, best_n = rate, n
            del a, b
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved_tf32
    return {
        "flops_per_s": best,
        "size": best_n,
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "budget_s": budget_s,
        "loadavg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


# ----------------------------------------------------------------------------------- cache


def cache_path() -> Path:
    """``$TRAINMARK_CACHE_DIR/peak.json``, else ``$XDG_CACHE_HOME`` or ``~/.cache``/trainmark."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(base) / "trainmark")
    return Path(root) / "peak.json"


def device_label(device: str) -> str:
    """Human device name: the GPU's name, or the CPU model."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    if dev.type == "mps":
        return "Apple MPS"
    return cpu_model() or "unknown CPU"


def cache_key(device: str) -> str:
    """A measured peak holds only for this host, device, torch build and thread count."""
    return machine_key({"host": socket.gethostname(), "device_name": device_label(device),
                        "torch_version": torch.__version__,
                        "num_threads": torch.get_num_threads()}, with_host=True)


def _read_cache(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # missing or corrupt cache: measure again rather than fail a benchmark


def _write_cache(path: Path, data: dict[str, dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # atomic: a concurrent reader sees the old or the new file, whole


def measured_peak(device: str, dtype: str, *, refresh: bool = False, measure: bool = True,
                  budget_s: float = DEFAULT_BUDGET_S) -> dict[str, object] | None:
    """The cached GEMM measurement for ``device``/``dtype``, measuring (and caching) if absent.

    ``refresh`` re-measures; ``measure=False`` only reads the cache (None if absent).
    """
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    path, key = cache_path(), cache_key(device)
    entry = _read_cache(path).get(key, {}).get("measurements", {}).get(dtype)
    if entry and not refresh:
        return entry
    if not measure:
        return None
    result = measure_gemm(device, dtype, budget_s=budget_s)
    data = _read_cache(path)  # re-read: another process may have added entries meanwhile
    machine = data.setdefault(key, {
        "host": socket.gethostname(), "device_name": device_label(device),
        "torch_version": torch.__version__, "num_threads": torch.get_num_threads(),
        "measurements": {},
    })
    machine.setdefault("measurements", {})[dtype] = result
    _write_cache(path, data)
    return result


# ------------------------------------------------------------------------------ for the runner


def peak_flops_per_s(device: str, dtype: str, *,
                     measure: bool = True) -> tuple[float | None, str]:
    """``(peak FLOP/s, source)`` of ``dtype`` GEMMs (fp32, tf32, bf16, fp16) on ``device``.

    Source is ``"table: <GPU> <dtype> dense (<datasheet>)"`` or ``"measured <date>: <dtype> GEMM
    n=<size>"``; the value is None (with the reason as source) where no peak is known.
    ``measure=False`` only reads the cache.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        entry = lookup_gpu(torch.cuda.get_device_name(dev))
        if entry is not None:
            if entry.tflops[dtype] is None and dtype == "tf32":
                dtype = "fp32"  # pre-Ampere: the TF32 flag is ignored, fp32 GEMMs run
            value = entry.tflops[dtype]
            if value is None:
                return None, f"table: {entry.name} has no {dtype} tensor-core peak"
            return value * 1e12, f"table: {entry.name} {dtype} dense ({entry.source})"
    try:
        result = measured_peak(device, dtype, measure=measure)
    except Exception as exc:  # e.g. a dtype the device cannot multiply: no peak, say why
        return None, f"measurement failed: {one_line(exc)}"
    if result is None:
        return None, f"no measured {dtype} peak cached; run `trainmark peak`"
    return (float(result["flops_per_s"]),
            f"measured {str(result['measured_at'])[:10]}: {dtype} GEMM n={result['size']}")
