"""Device and host telemetry: NVML (nvidia-ml-py) for whole-device memory, and host peak RSS.

NVML's ``used`` covers the whole GPU (CUDA context, other processes), unlike torch's allocator
peaks, which cover only this process's tensors. NVML's device order is not CUDA's (which honours
``CUDA_VISIBLE_DEVICES``), so devices are matched through their UUID.
"""

from __future__ import annotations

import functools
import resource
import sys

import torch


@functools.lru_cache(maxsize=1)
def _nvml():
    """The initialised ``pynvml`` module, or None where NVML (or the package) is absent."""
    try:
        import pynvml  # provided by nvidia-ml-py

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # ImportError, NVMLError_LibraryNotFound, driver errors: all mean "absent"
        return None


def nvml_handle(device: torch.device):
    nv = _nvml()
    if nv is None or device.type != "cuda":
        return None
    try:
        uuid = str(torch.cuda.get_device_properties(device).uuid)
        return nv.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else "GPU-" + uuid)
    except Exception:
        return None


def device_memory_used(device: torch.device) -> int | None:
    """Bytes in use on the whole device according to NVML; None without NVML or on CPU."""
    handle = nvml_handle(device)
    if handle is None:
        return None
    try:
        return int(_nvml().nvmlDeviceGetMemoryInfo(handle).used)
    except Exception:
        return None


def driver_version() -> str | None:
    nv = _nvml()
    if nv is None:
        return None
    try:
        v = nv.nvmlSystemGetDriverVersion()
        return v.decode() if isinstance(v, bytes) else str(v)
    except Exception:
        return None


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (a high-water mark over its whole life)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB
