"""Datasheet peak FLOP/s of known GPUs, for MFU where a vendor figure exists.

Dense tensor-core (or FP32 CUDA-core) rates per GEMM dtype; ``lookup_gpu(name)`` finds the entry
for ``torch.cuda.get_device_name()``. Add a GPU by adding a row with its datasheet as source.
"""

from __future__ import annotations

import dataclasses
import re


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


# A MIG slice's profile, as NVML names it: "NVIDIA H100 80GB HBM3 MIG 1g.10gb" is one of the
# GPU's 7 compute slices (A100 and H100 alike), so its peak is 1/7 of the whole GPU's.
MIG_PROFILE = re.compile(r"\bMIG\s+(\d+)g\.\d+gb", re.IGNORECASE)
MIG_SLICES = 7


def lookup_gpu(device_name: str) -> GpuPeak | None:
    """The table entry whose pattern occurs in ``device_name`` (first match), else None. A MIG
    slice gets its share of the GPU's peak (``Ng`` of 7 compute slices); a MIG name without a
    readable profile gets None, not the whole GPU's peak (an MFU several times too low)."""
    for entry in GPU_PEAKS:
        if re.search(entry.pattern, device_name, flags=re.IGNORECASE):
            break
    else:
        return None
    if not re.search(r"\bMIG\b", device_name, flags=re.IGNORECASE):
        return entry
    profile = MIG_PROFILE.search(device_name)
    if profile is None or not 1 <= int(profile.group(1)) <= MIG_SLICES:
        return None
    share = int(profile.group(1)) / MIG_SLICES
    return dataclasses.replace(
        entry, name=f"{entry.name} MIG {profile.group(1)}g",
        tflops={k: None if v is None else v * share for k, v in entry.tflops.items()},
        source=f"{entry.source}, x {profile.group(1)}/{MIG_SLICES} (MIG compute slices)")
