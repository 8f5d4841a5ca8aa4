"""Device telemetry: NVML (nvidia-ml-py) memory, energy, power, clocks.

NVML's ``used`` covers the whole GPU (CUDA context, other processes), unlike torch's allocator
peaks, which cover only this process's tensors. NVML numbers devices in its own (PCI) order over
*all* GPUs, while CUDA's ``cuda:N`` counts only the devices ``CUDA_VISIBLE_DEVICES`` leaves, so a
CUDA device is matched to its NVML handle through its UUID (falling back to its PCI bus id),
never through its index.

``NvmlSampler`` brackets timed regions: a background thread polls power, SM clock, temperature,
utilisation and clock-event (throttle) reasons, and energy is the difference of NVML's
cumulative energy counter across each region. Without NVML every field is None and
``telemetry_note`` says why.

Caveats worth carrying into reports: the energy counter (Volta and newer) updates every ~20-100
ms, so regions much shorter than a second read coarsely; power and energy are the whole board's,
including other processes on the same GPU; under MIG the UUID lookup falls back to the PCI bus
id, i.e. the whole GPU's counters.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Any

import torch

# NVML clock-event ("throttle") reason bits, stable across driver versions (nvml.h).
THROTTLE_REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
# Reasons that are settings or idleness, not the chip holding back a busy kernel.
BENIGN_REASONS = frozenset({"gpu_idle", "applications_clocks_setting", "display_clock_setting"})

SUMMARY_FIELDS = ("energy_j", "power_w_mean", "sm_clock_mhz_mean", "temperature_c_max",
                  "gpu_util_mean", "throttled", "throttle_reasons")


@functools.lru_cache(maxsize=1)
def _nvml_status() -> tuple[Any, str | None]:
    """``(initialised pynvml module, None)``, or ``(None, why NVML is unavailable)``."""
    try:
        import pynvml  # provided by nvidia-ml-py
    except ImportError as exc:
        return None, f"NVML not available: nvidia-ml-py is not installed ({exc})"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...: all "absent"
        return None, f"NVML not available: {str(exc) or type(exc).__name__}"
    return pynvml, None


def _nvml():
    """The initialised ``pynvml`` module, or None where NVML (or the package) is absent."""
    return _nvml_status()[0]


def _cuda_ids(device: torch.device) -> tuple[str | None, str | None]:
    """``(UUID, PCI bus id)`` of a CUDA device in NVML's spelling, as far as torch knows them."""
    props = torch.cuda.get_device_properties(device)
    uuid = str(getattr(props, "uuid", "") or "") or None
    if uuid and not uuid.startswith(("GPU-", "MIG-")):
        uuid = "GPU-" + uuid
    pci = None
    if hasattr(props, "pci_bus_id"):
        domain = int(getattr(props, "pci_domain_id", 0))
        pci = f"{domain:08x}:{int(props.pci_bus_id):02x}:{int(props.pci_device_id):02x}.0"
    return uuid, pci


def nvml_handle(device: torch.device):
    """The NVML handle of CUDA ``device`` (by UUID, else PCI bus id); None if unavailable."""
    nv = _nvml()
    if nv is None or device.type != "cuda":
        return None
    try:
        uuid, pci = _cuda_ids(device)
    except Exception:
        return None
    for lookup, ident in ((nv.nvmlDeviceGetHandleByUUID, uuid),
                          (nv.nvmlDeviceGetHandleByPciBusId, pci)):
        if ident is None:
            continue
        try:
            return lookup(ident)
        except Exception:
            continue
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


def throttle_names(mask: int) -> list[str]:
    """Reason names set in an NVML clock-event bit mask (unknown bits as ``bit_0x...``)."""
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_REASONS)
    names += [f"bit_{1 << i:#x}" for i in range(unknown.bit_length()) if unknown >> i & 1]
    return names


def empty_summary(note: str | None) -> dict[str, object]:
    """All telemetry fields None, with ``telemetry_note`` saying why (for records)."""
    return {**dict.fromkeys(SUMMARY_FIELDS), "telemetry_samples": 0, "telemetry_note": note}


class NvmlSampler:
    """Polls one GPU in a background thread during ``start()``..``stop()`` regions.

    Use as ``with sampler:`` or ``start()``/``stop()``, around (never inside) a timed region;
    several regions accumulate (energy adds up, samples pool) until ``summary()``. ``start`` and
    ``stop`` cost a few NVML calls and a thread start/join; polling runs in its own thread at
    ``interval_s`` (NVML calls release the GIL), so the timed loop itself is untouched. Every
    method is safe to call from any thread. Where NVML or the device is unavailable, ``start``
    and ``stop`` do nothing and ``summary()`` holds None fields and the reason.
    """

    def __init__(self, device: torch.device | str, interval_s: float = 0.1) -> None:
        self.device = torch.device(device)
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._samples: list[dict[str, float | int | None]] = []
        self._energy_mj = 0
        self._energy_ok = True
        self._region_start_mj: int | None = None
        self._nv, self._handle, self.note = self._connect()

    def _connect(self) -> tuple[Any, Any, str | None]:
        if self.device.type != "cuda":
            return None, None, f"no NVML telemetry on {self.device.type}: NVML reads NVIDIA GPUs"
        nv, why = _nvml_status()
        if nv is None:
            return None, None, why
        handle = nvml_handle(self.device)
        if handle is None:
            return None, None, f"NVML has no device matching {self.device} (UUID / PCI bus id)"
        return nv, handle, None

    @property
    def available(self) -> bool:
        return self._handle is not None

    def _energy(self) -> int | None:
        try:
            return int(self._nv.nvmlDeviceGetTotalEnergyConsumption(self._handle))  # mJ
        except Exception:  # pre-Volta GPUs and some vGPUs have no energy counter
            return None

    def _sample(self) -> dict[str, float | int | None]:
        nv, h = self._nv, self._handle

        def read(fn, *args):
            try:
                return fn(h, *args)
            except Exception:  # a query this GPU does not support stays None
                return None

        power = read(nv.nvmlDeviceGetPowerUsage)  # mW
        util = read(nv.nvmlDeviceGetUtilizationRates)
        # nvidia-ml-py renamed "throttle reasons" to "clocks event reasons" (driver 530+).
        reasons_fn = (getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
                      or nv.nvmlDeviceGetCurrentClocksThrottleReasons)
        return {
            "t": time.perf_counter(),
            "power_w": power / 1000.0 if power is not None else None,
            "sm_clock_mhz": read(nv.nvmlDeviceGetClockInfo, nv.NVML_CLOCK_SM),
            "temperature_c": read(nv.nvmlDeviceGetTemperature, nv.NVML_TEMPERATURE_GPU),
            "gpu_util": util.gpu if util is not None else None,
            "reasons": read(reasons_fn),
        }

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            sample = self._sample()
            with self._lock:
                self._samples.append(sample)

    def start(self) -> None:
        if not self.available:
            return
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("NvmlSampler.start() called twice without stop()")
            self._region_start_mj = self._energy()
            self._samples.append(self._sample())  # the region's first sample, at its edge
            self._stop.clear()
            self._thread = threading.Thread(target=self._poll, name="nvml-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if not self.available:
            return
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            raise RuntimeError("NvmlSampler.stop() called without start()")
        self._stop.set()
        thread.join()
        end_mj = self._energy()
        with self._lock:
            self._samples.append(self._sample())  # and its last, at the other edge
            if self._region_start_mj is None or end_mj is None:
                self._energy_ok = False
            else:
                self._energy_mj += end_mj - self._region_start_mj

    def __enter__(self) -> NvmlSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def summary(self) -> dict[str, object]:
        """Record fields over all regions so far (see ``SUMMARY_FIELDS``), plus a note."""
        if not self.available:
            return empty_summary(self.note)
        with self._lock:
            samples = list(self._samples)
            energy_mj, energy_ok = self._energy_mj, self._energy_ok
        if not samples:
            return empty_summary("telemetry sampler was never started")

        def values(key: str) -> list[float]:
            return [s[key] for s in samples if s[key] is not None]

        def mean(key: str) -> float | None:
            vals = values(key)
            return sum(vals) / len(vals) if vals else None

        masks = values("reasons")
        seen = throttle_names(int(functools.reduce(lambda a, b: a | b, masks, 0)))
        note = None if energy_ok else "NVML energy counter unsupported on this GPU"
        return {
            "energy_j": energy_mj / 1000.0 if energy_ok else None,
            "power_w_mean": mean("power_w"),
            "sm_clock_mhz_mean": mean("sm_clock_mhz"),
            "temperature_c_max": max(values("temperature_c"), default=None),
            "gpu_util_mean": mean("gpu_util"),
            "throttled": any(r not in BENIGN_REASONS for r in seen) if masks else None,
            "throttle_reasons": seen if masks else None,
            "telemetry_samples": len(samples),
            "telemetry_note": note,
        }
