"""Peak FLOP/s for MFU: a datasheet table for known GPUs, a measured GEMM peak for the rest.

``peak_flops_per_s(device, precision)`` is what the runner calls. For a CUDA device whose name is
in ``GPU_PEAKS`` it returns the vendor's *dense* tensor-core (or FP32 CUDA-core) peak; for CPUs,
MPS and unknown GPUs it returns the best ``torch.matmul`` rate measured on the spot at sizes that
saturate the device, cached per machine (host + device name + torch version + thread count) in
``$TRAINMARK_CACHE_DIR/peak.json`` (default ``~/.cache/trainmark``). ``trainmark peak`` prints both.

A measured peak is what this software stack achieves on one large GEMM, not the silicon's
theoretical peak, so MFU against it reads "fraction of the best matmul rate" -- and on a busy
machine the measurement is low and MFU high: the cache stores the load average to tell.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import re
import socket
import time
from pathlib import Path

import torch

from harness.errors import UserError

CACHE_ENV = "TRAINMARK_CACHE_DIR"
DEFAULT_BUDGET_S = 2.0  # measuring time per dtype; escalation to larger sizes stops before it
DTYPES = ("fp32", "tf32", "bf16", "fp16")
_TORCH_DTYPE = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16,
                "fp16": torch.float16}


@dataclasses.dataclass(frozen=True)
class GpuPeak:
    name: str  # shown in the source string
    pattern: str  # regex, case-insensitive, searched in torch.cuda.get_device_name()
    tflops: dict[str, float | None]  # dense TFLOP/s per dtype; None: no such fast path
    source: str


def _gpu(name: str, pattern: str, fp32: float, tf32: float | None, bf16: float | None,
         fp16: float | None, source: str) -> GpuPeak:
    return GpuPeak(name, pattern, {"fp32": fp32, "tf32": tf32, "bf16": bf16, "fp16": fp16}, source)


# Dense peaks in TFLOP/s. NVIDIA datasheets print tensor-core figures "with sparsity" (2:4
# structured sparsity, marked *): those are halved here, because training runs dense GEMMs.
# fp16/bf16 are the FP32-accumulate rates (what PyTorch uses); fp32 is the non-tensor CUDA-core
# rate. Order matters: more specific names first (A10G before A10, L40S before L40 before L4).
GPU_PEAKS: tuple[GpuPeak, ...] = (
    # NVIDIA H200 datasheet (nvidia.com/en-us/data-center/h200): SXM FP32 67, TF32 989*,
    # BF16/FP16 1,979*; H200 NVL FP32 60, TF32 835*, BF16/FP16 1,671*.
    _gpu("H200 NVL", r"H200 NVL", 60, 417.5, 835.5, 835.5, "NVIDIA H200 datasheet"),
    _gpu("H200 SXM", r"\bH200\b", 67, 494.5, 989.5, 989.5, "NVIDIA H200 datasheet"),
    # NVIDIA GH200 Grace Hopper datasheet: FP32 67, TF32 494 | 989*, BF16/FP16 990 | 1,979*.
    _gpu("GH200", r"\bGH200\b", 67, 494.5, 989.5, 989.5, "NVIDIA GH200 datasheet"),
    # NVIDIA H100 Tensor Core GPU datasheet: SXM FP32 67, TF32 989*, BF16/FP16 1,979*;
    # PCIe FP32 51, TF32 756*, BF16/FP16 1,513*; NVL FP32 60, TF32 835*, BF16/FP16 1,671*.
    _gpu("H100 NVL", r"H100 NVL", 60, 417.5, 835.5, 835.5, "NVIDIA H100 datasheet"),
    _gpu("H100 PCIe", r"H100.*PCIe", 51, 378, 756.5, 756.5, "NVIDIA H100 datasheet"),
    _gpu("H100 SXM", r"\bH100\b", 67, 494.5, 989.5, 989.5, "NVIDIA H100 datasheet"),
    # NVIDIA A100 datasheet (same peaks for SXM4 and PCIe, 40 and 80 GB): FP32 19.5,
    # TF32 156 | 312*, BF16/FP16 312 | 624*.
    _gpu("A100 SXM", r"A100.*SXM", 19.5, 156, 312, 312, "NVIDIA A100 datasheet"),
    _gpu("A100 PCIe", r"A100.*PCI", 19.5, 156, 312, 312, "NVIDIA A100 datasheet"),
    _gpu("A100", r"\bA100\b", 19.5, 156, 312, 312, "NVIDIA A100 datasheet"),
    # A10G (AWS G5) has no public NVIDIA datasheet; AWS-published figures as tabulated in
    # Baseten's "NVIDIA A10 vs A10G for ML model inference": FP32 31.52, TF32 35, BF16/FP16 70.
    _gpu("A10G", r"\bA10G\b", 31.52, 35, 70, 70, "AWS A10G figures (no NVIDIA datasheet)"),
    # NVIDIA A10 datasheet: FP32 31.2, TF32 62.5 | 125*, BF16/FP16 125 | 250*.
    _gpu("A10", r"\bA10\b", 31.2, 62.5, 125, 125, "NVIDIA A10 datasheet"),
    # NVIDIA A40 datasheet: FP32 37.4, TF32 74.8 | 149.6*, BF16 (FP32 acc.) 149.7 | 299.4*.
    _gpu("A40", r"\bA40\b", 37.4, 74.8, 149.7, 149.7, "NVIDIA A40 datasheet"),
    # NVIDIA L40S datasheet: FP32 91.6, TF32 183 | 366*, BF16/FP16 362.05 | 733*.
    _gpu("L40S", r"\bL40S\b", 91.6, 183, 362.05, 362.05, "NVIDIA L40S datasheet"),
    # NVIDIA L40 datasheet: FP32 90.5, TF32 90.5 | 181*, BF16/FP16 181.05 | 362.1*.
    _gpu("L40", r"\bL40\b", 90.5, 90.5, 181.05, 181.05, "NVIDIA L40 datasheet"),
    # NVIDIA L4 datasheet: FP32 30.3, TF32 120*, BF16/FP16 242* (sparsity figures only).
    _gpu("L4", r"\bL4\b", 30.3, 60, 121, 121, "NVIDIA L4 datasheet"),
    # NVIDIA T4 datasheet: FP32 8.1, mixed-precision FP16/FP32 65 (Turing: no TF32, no BF16).
    _gpu("T4", r"\bT4\b", 8.1, None, None, 65, "NVIDIA T4 datasheet"),
    # NVIDIA V100 datasheet: SXM2 FP32 15.7, tensor 125; PCIe 14, 112; V100S PCIe 16.4, 130.
    _gpu("V100S", r"V100S", 16.4, None, None, 130, "NVIDIA V100 datasheet"),
    _gpu("V100 SXM2", r"V100.*SXM", 15.7, None, None, 125, "NVIDIA V100 datasheet"),
    _gpu("V100 PCIe", r"\bV100\b", 14, None, None, 112, "NVIDIA V100 datasheet"),
    # NVIDIA Ada Lovelace architecture whitepaper, RTX 4090: FP32 82.6, TF32 82.6 | 165.2*,
    # FP16/BF16 with FP32 accumulate 165.2 | 330.4*.
    _gpu("RTX 4090", r"RTX 4090", 82.6, 82.6, 165.2, 165.2, "NVIDIA Ada whitepaper"),
    # NVIDIA Ampere GA102 whitepaper, RTX 3090: FP32 35.6, TF32 35.6 | 71*, FP16/BF16 with FP32
    # accumulate 71 | 142*.
    _gpu("RTX 3090", r"RTX 3090(?! Ti)", 35.6, 35.6, 71, 71, "NVIDIA GA102 whitepaper"),
)


def lookup_gpu(device_name: str) -> GpuPeak | None:
    """The table entry whose pattern occurs in ``device_name`` (first match), else None."""
    for entry in GPU_PEAKS:
        if re.search(entry.pattern, device_name, flags=re.IGNORECASE):
            return entry
    return None


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
    from harness.provenance import cpu_model

    return cpu_model() or "unknown CPU"


def machine_key(device: str) -> str:
    """A measured peak holds only for this host, device, torch build and thread count."""
    return (f"{socket.gethostname()}|{device_label(device)}|torch {torch.__version__}"
            f"|threads {torch.get_num_threads()}")


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
    path, key = cache_path(), machine_key(device)
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


def precision_dtype(precision: str, device_type: str, tf32: bool | None = None) -> str:
    """The GEMM dtype behind a run precision: fp32 (tf32 when enabled on CUDA), bf16 or fp16."""
    from harness.precision import resolve_alias

    name = resolve_alias(precision, device_type)
    mapping = {"fp32": "fp32", "amp-bf16": "bf16", "amp-fp16": "fp16"}
    if name not in mapping:
        raise UserError(f"unknown precision {precision!r}; valid: fp32, amp, amp-bf16, amp-fp16")
    dtype = mapping[name]
    if dtype == "fp32" and device_type == "cuda":
        if tf32 is None:
            tf32 = bool(torch.backends.cuda.matmul.allow_tf32)
        dtype = "tf32" if tf32 else "fp32"
    return dtype


def peak_flops_per_s(device: str, precision: str, *, tf32: bool | None = None,
                     measure: bool = True) -> tuple[float | None, str]:
    """``(peak FLOP/s, source)`` for MFU of a run at ``precision`` on ``device``.

    Source is ``"table: <GPU> <dtype> dense (<datasheet>)"`` or ``"measured <date>: <dtype> GEMM
    n=<size>"``; the value is None (with the reason as source) where no peak is known.
    ``tf32`` overrides ``torch.backends.cuda.matmul.allow_tf32`` (e.g. pass True for conv nets,
    whose cuDNN convolutions use TF32 by default). ``measure=False`` never measures.
    """
    dev = torch.device(device)
    dtype = precision_dtype(precision, dev.type, tf32)
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
        from harness.errors import one_line

        return None, f"measurement failed: {one_line(exc)}"
    if result is None:
        return None, f"no measured {dtype} peak cached; run `trainmark peak`"
    return (float(result["flops_per_s"]),
            f"measured {str(result['measured_at'])[:10]}: {dtype} GEMM n={result['size']}")


# ------------------------------------------------------------------------------------- CLI


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("peak", help="peak FLOP/s per device: measured GEMM and datasheet")
    p.add_argument("--devices", default="auto", help="comma list: auto, cpu, cuda, cuda:N, mps")
    p.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32, tf32, bf16, fp16")
    p.add_argument("--refresh", action="store_true", help="measure again, replacing the cache")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                   help=f"seconds of measuring per device and dtype (default {DEFAULT_BUDGET_S})")
    p.set_defaults(func=cmd_peak)


def _items(flag: str, text: str) -> list[str]:
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    if not items:
        raise UserError(f"{flag}: empty list {text!r}")
    return list(dict.fromkeys(items))


def cmd_peak(args: argparse.Namespace) -> int:
    from harness.devices import resolve_device

    if not args.budget > 0:
        raise UserError(f"--budget must be a positive number of seconds, got {args.budget}")
    devices = [resolve_device(d) for d in _items("--devices", args.devices)]
    dtypes = _items("--dtypes", args.dtypes)
    for dtype in dtypes:
        if dtype not in DTYPES:
            raise UserError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
        if dtype == "tf32" and any(not d.startswith("cuda") for d in devices):
            raise UserError("tf32 exists only on CUDA devices")
    rows = [("device", "name", "dtype", "measured TFLOP/s", "GEMM n", "measured at", "load 1m",
             "datasheet TFLOP/s")]
    for device in dict.fromkeys(devices):
        name = device_label(device)
        entry = lookup_gpu(name) if device.startswith("cuda") else None
        for dtype in dtypes:
            m = measured_peak(device, dtype, refresh=args.refresh, budget_s=args.budget)
            assert m is not None
            sheet = entry.tflops.get(dtype) if entry else None
            rows.append((device, name, dtype, f"{float(m['flops_per_s']) / 1e12:.4g}",
                         str(m["size"]), str(m["measured_at"]), _load(m.get("loadavg_1m")),
                         f"{sheet:g} ({entry.name})" if entry and sheet else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print(f"\ncache: {cache_path()}\nMFU uses the datasheet peak where one is listed, "
          "else the measured one (best of several square GEMMs).\nA load average near or above "
          f"the {os.cpu_count()} CPUs means other work shared the cores: "
          "re-measure with --refresh.")
    return 0


def _load(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"
