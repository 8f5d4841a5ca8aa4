"""Precision names -> autocast dtype and loss scaling, per device (timm ``resolve_precision``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.errors import Unavailable

PRECISIONS = ("fp32", "amp", "amp-fp16", "amp-bf16")
BF16_MIN_CAPABILITY = (8, 0)  # Ampere: the first GPUs with bf16 tensor cores
# fp16 trains with dynamic loss scaling (GradScaler) on these: without it small gradients
# underflow to zero in fp16. torch's GradScaler runs on MPS too.
SCALED_DEVICE_TYPES = ("cuda", "mps")


@dataclass(frozen=True)
class PrecisionPlan:
    name: str  # resolved: fp32 | amp-fp16 | amp-bf16
    autocast_dtype: torch.dtype | None  # None: plain fp32, no autocast
    use_scaler: bool  # fp16 on CUDA/MPS needs GradScaler against gradient underflow


def resolve_alias(precision: str, device_type: str) -> str:
    """``amp`` means the fast mixed precision of the device: fp16 on CUDA/MPS, bf16 on CPU."""
    if precision == "amp":
        return "amp-bf16" if device_type == "cpu" else "amp-fp16"
    return precision


def resolve_precision(precision: str, device: torch.device) -> PrecisionPlan:
    """A plan for ``precision`` on ``device``; ``Unavailable`` (with the reason) if it can't run."""
    name = resolve_alias(precision, device.type)
    if name == "fp32":
        return PrecisionPlan(name, None, False)
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    dtype = torch.float16 if name == "amp-fp16" else torch.bfloat16
    if not torch.amp.is_autocast_available(device.type):
        raise Unavailable(f"autocast is not available on {device.type}")
    if device.type == "cuda" and dtype == torch.bfloat16:
        # torch.cuda.is_bf16_supported() also counts emulation (T4, V100: sm 7.x run bf16
        # through fp32 paths, slowly), which would be recorded as a bf16 speed. Native bf16
        # tensor cores start with Ampere, compute capability 8.0, on the config's own GPU.
        major, minor = torch.cuda.get_device_capability(device)
        if (major, minor) < BF16_MIN_CAPABILITY:
            raise Unavailable(f"{torch.cuda.get_device_name(device)} (compute capability "
                              f"{major}.{minor}) has no native bf16; it needs "
                              f"{BF16_MIN_CAPABILITY[0]}.{BF16_MIN_CAPABILITY[1]} or newer")
    # Loss scaling matters only for fp16 on accelerators; bf16 has fp32's exponent range.
    use_scaler = dtype == torch.float16 and device.type in SCALED_DEVICE_TYPES
    return PrecisionPlan(name, dtype, use_scaler)


def gemm_dtype(precision: str, device_type: str, tf32: bool | None = None) -> str:
    """The GEMM dtype a run precision mostly multiplies in, for its peak FLOP/s: fp32 (tf32 on
    CUDA when TF32 is enabled; ``tf32`` overrides the matmul flag, e.g. True for conv nets,
    whose cuDNN convolutions use TF32 by default), bf16 or fp16."""
    name = resolve_alias(precision, device_type)
    mapping = {"fp32": "fp32", "amp-bf16": "bf16", "amp-fp16": "fp16"}
    if name not in mapping:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    dtype = mapping[name]
    if dtype == "fp32" and device_type == "cuda":
        if tf32 is None:
            tf32 = bool(torch.backends.cuda.matmul.allow_tf32)
        dtype = "tf32" if tf32 else "fp32"
    return dtype
