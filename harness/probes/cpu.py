"""The CPU features that decide training speed: torch's kernel level and native low precision.

Two CPUs with one ``cpu_model`` string ("AMD EPYC") can differ by 45x in bf16: with AVX512_BF16
or AMX-BF16 the matmuls and convolutions of ``amp-bf16`` run in bf16, without them oneDNN
converts in software (measured on a 2-core AVX2 EPYC: 12-45x slower than fp32). A number from
such a run measures the emulation, not the format, so ``core.precision`` refuses it unless asked
and every record carries what decides it:

- ``cpu_capability``: the vector ISA torch's own kernels were dispatched to
  (``torch.backends.cpu.get_cpu_capability()``: DEFAULT, AVX2, AVX512, ...; ``ATEN_CPU_CAPABILITY``
  lowers it);
- ``cpu_native_bf16``: the CPU has bf16 dot-product instructions (AVX512_BF16 or AMX-BF16 on
  x86, the BF16 extension on Arm) *and* oneDNN, which runs training's matmuls and convolutions
  on the CPU, may use them (``ONEDNN_MAX_CPU_ISA`` can forbid it);
- ``cpu_native_fp16``: AVX512_FP16 or AMX-FP16 (x86), FP16 arithmetic (Arm), likewise;
- ``cpu_amx``: AMX tiles (Sapphire Rapids and newer), the matrix units behind the fastest bf16.

The instruction sets come from the kernel's CPU flags (``/proc/cpuinfo``; ``sysctl`` on macOS);
oneDNN's permission from torch (``torch.ops.mkldnn``). ``cpu_flags`` and ``onednn_allows`` are
the boundary a test fakes to stand for the other kind of CPU.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path

# x86 flag names as Linux spells them, and Arm's feature names (/proc/cpuinfo "Features").
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
FP16_FLAGS = ("avx512_fp16", "amx_fp16", "fphp")
AMX_FLAGS = ("amx_tile",)
# What a reason names as missing, per format, on x86 and elsewhere (Arm).
WANTED = {"bf16": ("neither AVX512_BF16 nor AMX-BF16", "no BF16 extension"),
          "fp16": ("neither AVX512_FP16 nor AMX-FP16", "no FP16 arithmetic")}
# macOS names the Arm features in sysctl rather than in a flags file.
MACOS_FEATURES = {"hw.optional.arm.FEAT_BF16": "bf16", "hw.optional.arm.FEAT_FP16": "fphp"}


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags, lower case (empty where the platform does not say)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key = line.split(":", 1)[0].strip().lower()
            if key in ("flags", "features"):  # x86 / Arm
                return frozenset(line.split(":", 1)[1].lower().split())
    except OSError:
        pass
    if platform.system() == "Darwin":
        found = set()
        for name, flag in MACOS_FEATURES.items():
            try:
                out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True,
                                     timeout=5).stdout.strip()
            except (OSError, subprocess.SubprocessError):
                continue
            if out == "1":
                found.add(flag)
        return frozenset(found)
    return frozenset()


@functools.lru_cache(maxsize=2)
def onednn_allows(fmt: str) -> bool:
    """Whether oneDNN (training's CPU matmuls and convolutions) will compute ``fmt`` (bf16 or
    fp16) in hardware here. Honours ``ONEDNN_MAX_CPU_ISA``: an ISA capped below the format's
    instructions makes it emulated, whatever the CPU has."""
    import torch

    try:
        check = (torch.ops.mkldnn._is_mkldnn_bf16_supported if fmt == "bf16"
                 else torch.ops.mkldnn._is_mkldnn_fp16_supported)
        return bool(check())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN: no native path
        return False


def has_native(fmt: str) -> bool:
    """The CPU has ``fmt``'s (``bf16`` or ``fp16``) instructions and oneDNN may use them."""
    flags = BF16_FLAGS if fmt == "bf16" else FP16_FLAGS
    return bool(set(flags) & cpu_flags()) and onednn_allows(fmt)


def emulation_reason(fmt: str) -> str | None:
    """Why ``fmt`` is emulated on this CPU (one line naming what is missing), or None when it
    runs natively."""
    if has_native(fmt):
        return None
    flags = BF16_FLAGS if fmt == "bf16" else FP16_FLAGS
    if set(flags) & cpu_flags():  # the CPU has them; oneDNN will not use them
        cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
        why = (f"ONEDNN_MAX_CPU_ISA={cap} caps oneDNN below them" if cap
               else "torch's oneDNN does not use them here")
        return f"this CPU has {fmt} instructions but {why}, so {fmt} is emulated"
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")
    missing = WANTED[fmt][0 if x86 else 1]
    return f"this CPU has no native {fmt} instructions ({missing}), so {fmt} is emulated"


def cpu_capability() -> str | None:
    """The vector ISA torch dispatches its CPU kernels to (DEFAULT, AVX2, AVX512, ...)."""
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return None


def cpu_features() -> dict[str, object]:
    """The record's CPU feature fields (module docstring)."""
    return {"cpu_capability": cpu_capability(),
            "cpu_native_bf16": has_native("bf16"),
            "cpu_native_fp16": has_native("fp16"),
            "cpu_amx": bool(set(AMX_FLAGS) & cpu_flags())}
