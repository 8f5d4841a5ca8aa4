"""Memory probes: the torch allocator's peaks on accelerators, the host process's peak RSS.

NVML's whole-device ``used`` figure is in ``telemetry``: it includes the CUDA context and other
processes, so it is a second view, not the config's own memory.
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Mapping

import torch

# The allocator's event counters that ``reset_peak_memory_stats`` leaves running over the
# process's life; read at each reset so a config's figures count its own events only.
COUNTERS = ("num_alloc_retries", "num_ooms")
_counted_at_reset: dict[int, dict[str, int]] = {}


def reset_peak_memory(device: torch.device) -> None:
    """Restart the allocator's peaks, and the retry/OOM counts from here (torch's reset clears
    the peaks only: after one OOM probe every later in-process record would show one)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        stats = torch.cuda.memory_stats(device)
        _counted_at_reset[_index(device)] = {k: int(stats.get(k, 0)) for k in COUNTERS}


def _index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def peak_memory(device: torch.device) -> tuple[int | None, int | None]:
    """Torch allocator peaks ``(allocated, reserved)`` in bytes; None where not tracked (CPU)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), torch.cuda.max_memory_reserved(device)
    if device.type == "mps":
        # MPS exposes only current (not peak) figures; record what exists, after the run.
        return torch.mps.current_allocated_memory(), torch.mps.driver_allocated_memory()
    return None, None


GIB = 2**30


def host_memory_bytes() -> int | None:
    """The host's physical memory (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def share_pct(part: int | None, whole: int | None) -> float | None:
    """``part`` as a percentage of ``whole``; None if either is unknown."""
    if part is None or not whole:
        return None
    return 100.0 * part / whole


def allocator_fields(stats: Mapping[str, int], capacity: int | None,
                     since: Mapping[str, int] | None = None) -> dict[str, object]:
    """The CUDA caching allocator's figures as torchtitan logs them, from
    ``torch.cuda.memory_stats()`` since the last peak reset: peak *active* memory (bytes in
    live blocks, including the unused tail of a rounded-up block, so a little above
    ``max_memory_allocated``), peak reserved (segments held from the driver), both in GiB and
    as a percentage of the device's ``capacity``; and how often an allocation had to free
    cached blocks and retry (``alloc_retries``: fragmentation, memory pressure) or failed
    outright (``alloc_ooms``), counted from ``since`` (the counters at the last reset)."""
    since = since or {}
    active = stats.get("active_bytes.all.peak")
    reserved = stats.get("reserved_bytes.all.peak")
    return {
        "peak_memory_active_bytes": active,
        "peak_memory_active_gib": None if active is None else active / GIB,
        "peak_memory_active_pct": share_pct(active, capacity),
        "peak_memory_reserved_gib": None if reserved is None else reserved / GIB,
        "peak_memory_reserved_pct": share_pct(reserved, capacity),
        "alloc_retries": _since(stats, since, "num_alloc_retries"),
        "alloc_ooms": _since(stats, since, "num_ooms"),
    }


def _since(stats: Mapping[str, int], since: Mapping[str, int], key: str) -> int | None:
    value = stats.get(key)
    return None if value is None else int(value) - int(since.get(key, 0))


def device_memory_fields(device: torch.device) -> dict[str, object]:
    """``allocator_fields`` on CUDA (with the device's capacity); on other devices only the
    capacity, the host's memory for the CPU (its peak share is ``peak_rss_pct``)."""
    if device.type == "cuda":
        capacity = torch.cuda.get_device_properties(device).total_memory
        return {"device_memory_capacity_bytes": capacity,
                **allocator_fields(torch.cuda.memory_stats(device), capacity,
                                   _counted_at_reset.get(_index(device)))}
    return {"device_memory_capacity_bytes": host_memory_bytes() if device.type == "cpu"
            else None}


def trim_host_heap() -> bool:
    """Return the C heap's free memory to the OS (glibc ``malloc_trim``), so that the RSS read
    next counts what the process holds, not blocks it freed but malloc kept (e.g. the
    temporaries of generating a dataset in chunks). False where there is no glibc."""
    import ctypes

    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def release_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])  # "VmHWM:  123456 kB"
    except OSError:
        pass
    return None  # not Linux


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far: a high-water mark over its whole life, so
    one config's own figure only in a process that ran that config alone (isolation)."""
    hwm = _proc_status_kib("VmHWM")
    if hwm is not None:
        return hwm * 1024
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB


def minor_page_faults() -> int:
    """Minor page faults of this process so far, all its threads: pages touched for the first
    time since they were mapped, each zero-filled by the kernel. A steady training step has
    next to none (``probes.host_heap``); thousands per step mean memory is handed back to the
    OS and mapped again every step."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def current_rss_bytes() -> int | None:
    """This process's resident set size now (None where /proc is absent)."""
    rss = _proc_status_kib("VmRSS")
    return None if rss is None else rss * 1024


def reset_peak_rss() -> bool:
    """Restart the peak-RSS high-water mark from the current RSS (Linux: ``clear_refs``), so
    a worker forked from a larger process measures only itself. False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False
