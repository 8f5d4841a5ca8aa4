"""Memory probes: the torch allocator's peaks on accelerators, the host process's peak RSS.

NVML's whole-device ``used`` figure is in ``telemetry``: it includes the CUDA context and other
processes, so it is a second view, not the config's own memory.
"""

from __future__ import annotations

import resource
import sys

import torch


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> tuple[int | None, int | None]:
    """Torch allocator peaks ``(allocated, reserved)`` in bytes; None where not tracked (CPU)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), torch.cuda.max_memory_reserved(device)
    if device.type == "mps":
        # MPS exposes only current (not peak) figures; record what exists, after the run.
        return torch.mps.current_allocated_memory(), torch.mps.driver_allocated_memory()
    return None, None


def release_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (a high-water mark over its whole life)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB
