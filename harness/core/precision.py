"""Precision names -> autocast dtype and loss scaling, per device (timm ``resolve_precision``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.errors import Unavailable
from harness.probes.cpu import emulation_reason

PRECISIONS = ("fp32", "amp", "amp-fp16", "amp-bf16", "fp8")
BF16_MIN_CAPABILITY = (8, 0)  # Ampere: the first GPUs with bf16 tensor cores
# fp8: the linear layers' matmuls in float8 (torchao's float8 training: e4m3 forward, e5m2
# gradients, dynamic tensorwise scales), everything else in bf16 autocast. Needs float8 tensor
# cores: Ada and Hopper (compute capability 8.9) and newer, and the optional torchao package.
FP8_MIN_CAPABILITY = (8, 9)
TORCHAO_MISSING = "fp8 needs the optional torchao package: pip install 'trainmark[fp8]'"
# fp16 trains with dynamic loss scaling (GradScaler) on these: without it small gradients
# underflow to zero in fp16. torch's GradScaler runs on MPS too.
SCALED_DEVICE_TYPES = ("cuda", "mps")
# How a refusal of an emulated format tells the user to measure it anyway.
ALLOW_EMULATED_HINT = "pass --allow-emulated to measure the emulation"


@dataclass(frozen=True)
class PrecisionPlan:
    name: str  # resolved: fp32 | amp-fp16 | amp-bf16 | fp8
    autocast_dtype: torch.dtype | None  # None: plain fp32, no autocast
    use_scaler: bool  # fp16 on CUDA/MPS needs GradScaler against gradient underflow
    float8: bool = False  # linear layers converted to torchao's float8 training (core.parallel)
    # The hardware has no native instructions for the autocast dtype and it ran anyway, asked
    # for with --allow-emulated: the number measures the emulation (record: precision_emulated).
    emulated: bool = False


def resolve_alias(precision: str, device_type: str) -> str:
    """``amp`` means the fast mixed precision of the device: fp16 on CUDA/MPS, bf16 on CPU."""
    if precision == "amp":
        return "amp-bf16" if device_type == "cpu" else "amp-fp16"
    return precision


def resolve_precision(precision: str, device: torch.device,
                      allow_emulated: bool = False) -> PrecisionPlan:
    """A plan for ``precision`` on ``device``; ``Unavailable`` (with the reason) if it can't run.

    A low-precision format the hardware only emulates (bf16 on a GPU below compute capability
    8.0; bf16 or fp16 on a CPU without their instructions, ``probes.cpu``) is refused: such a
    number measures the emulation, up to 45x slower than fp32 on an AVX2 CPU, not the format.
    ``allow_emulated`` measures it anyway, and the plan says it was emulated."""
    name = resolve_alias(precision, device.type)
    if name == "fp32":
        return PrecisionPlan(name, None, False)
    if name == "fp8":
        check_float8(device)
        return PrecisionPlan(name, torch.bfloat16, False, float8=True)
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    dtype = torch.float16 if name == "amp-fp16" else torch.bfloat16
    if not torch.amp.is_autocast_available(device.type):
        raise Unavailable(f"autocast is not available on {device.type}")
    why = emulated_because(dtype, device)
    if why is not None and not allow_emulated:
        raise Unavailable(f"{why}; {ALLOW_EMULATED_HINT}")
    # Loss scaling matters only for fp16 on accelerators; bf16 has fp32's exponent range.
    use_scaler = dtype == torch.float16 and device.type in SCALED_DEVICE_TYPES
    return PrecisionPlan(name, dtype, use_scaler, emulated=why is not None)


def emulated_because(dtype: torch.dtype, device: torch.device) -> str | None:
    """Why ``dtype`` (bf16 or fp16) is emulated on ``device``, or None where it is native."""
    fmt = "bf16" if dtype == torch.bfloat16 else "fp16"
    if device.type == "cpu":
        return emulation_reason(fmt)
    if device.type == "cuda" and fmt == "bf16":
        # torch.cuda.is_bf16_supported() also counts emulation (T4, V100: sm 7.x run bf16
        # through fp32 paths, slowly), which would be recorded as a bf16 speed. Native bf16
        # tensor cores start with Ampere, compute capability 8.0, on the config's own GPU.
        major, minor = torch.cuda.get_device_capability(device)
        if (major, minor) < BF16_MIN_CAPABILITY:
            return (f"{torch.cuda.get_device_name(device)} (compute capability {major}.{minor})"
                    f" has no native bf16; it needs {BF16_MIN_CAPABILITY[0]}."
                    f"{BF16_MIN_CAPABILITY[1]} or newer")
    return None


def check_float8(device: torch.device) -> None:
    """``Unavailable`` (with the reason) unless float8 training runs on ``device``: a CUDA GPU
    of compute capability 8.9 or newer, with torchao installed. (torchao's emulation runs
    anywhere, but measures nothing a user would train with: only tests use it.)"""
    if device.type != "cuda":
        raise Unavailable(f"fp8 needs a CUDA GPU of compute capability "
                          f"{FP8_MIN_CAPABILITY[0]}.{FP8_MIN_CAPABILITY[1]} or newer (float8 "
                          f"tensor cores); this config runs on {device.type}")
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < FP8_MIN_CAPABILITY:
        raise Unavailable(f"{torch.cuda.get_device_name(device)} (compute capability "
                          f"{major}.{minor}) has no float8 tensor cores; fp8 needs "
                          f"{FP8_MIN_CAPABILITY[0]}.{FP8_MIN_CAPABILITY[1]} or newer")
    try:
        import torchao.float8  # noqa: F401
    except ImportError as exc:
        raise Unavailable(f"{TORCHAO_MISSING} ({exc})") from None


def gemm_dtype(precision: str, device_type: str, tf32: bool | None = None) -> str:
    """The GEMM dtype a run precision mostly multiplies in, for its peak FLOP/s: fp32 (tf32 on
    CUDA when TF32 is enabled; ``tf32`` overrides the matmul flag, e.g. True for conv nets,
    whose cuDNN convolutions use TF32 by default), bf16 or fp16. fp8 is measured against the
    bf16 peak: its attention and other matmuls run in bf16, so the share of fp8 arithmetic
    varies, and torchtitan, for that reason, gives no MFU for float8 at all; the record's
    ``peak_flops_dtype`` says which peak a utilisation figure divides by."""
    name = resolve_alias(precision, device_type)
    mapping = {"fp32": "fp32", "amp-bf16": "bf16", "amp-fp16": "fp16", "fp8": "bf16"}
    if name not in mapping:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    dtype = mapping[name]
    if dtype == "fp32" and device_type == "cuda":
        if tf32 is None:
            tf32 = bool(torch.backends.cuda.matmul.allow_tf32)
        dtype = "tf32" if tf32 else "fp32"
    return dtype
