"""Device telemetry: NVML (nvidia-ml-py) memory, energy, power, clocks.

NVML's ``used`` covers the whole GPU (CUDA context, other processes), unlike torch's allocator
peaks, which cover only this process's tensors. NVML numbers devices in its own (PCI) order over
*all* GPUs, while CUDA's ``cuda:N`` counts only the devices ``CUDA_VISIBLE_DEVICES`` leaves, so a
CUDA device is matched to its NVML handle through its UUID (falling back to its PCI bus id),
never through its index.

Under MIG a CUDA device is one slice of a GPU: NVML gives a slice its own handle (found by its
``MIG-`` UUID) and its own memory figures, but power, energy, clocks, temperature, utilisation
and throttling exist only for the whole GPU, which the other slices share. A slice's record
therefore keeps the slice's ``used`` memory and leaves every sampled figure null, with a note;
so does a MIG-mode GPU whose slice cannot be matched, instead of reporting the whole GPU.

``NvmlSampler`` brackets timed regions: a background thread polls power, SM clock, temperature,
utilisation and clock-event (throttle) reasons, and energy is the difference of NVML's
cumulative energy counter across each region. Without NVML every field is None and
``telemetry_note`` says why.

Caveats worth carrying into reports: the energy counter (Volta and newer) updates every ~20-100
ms, so regions much shorter than a second read coarsely; power and energy are the whole board's,
including other processes on the same GPU (under MIG they are not reported at all, see above).
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
MIG_NOTE = ("ran on a MIG slice: NVML reports power, energy, clocks, temperature, utilisation and "
            "throttling only for the whole GPU, which other slices share, so they are left out; "
            "device memory used is the slice's own")


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


def _text(value: object) -> str:
    """An NVML string: older bindings return bytes."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _uuid_spellings(uuid: str | None) -> list[str]:
    """The UUIDs NVML may know this device by. torch reports the bare 16 bytes of
    ``cuDeviceGetUuid_v2``, which for a MIG slice are the slice's own UUID: NVML spells that
    ``MIG-...``, a whole GPU's ``GPU-...``, and only NVML can tell which one it is."""
    if uuid is None:
        return []
    if uuid.startswith("GPU-"):
        return [uuid, "MIG-" + uuid[4:]]
    return [uuid]


def _first(lookup, idents: list[str | None]) -> tuple[Any, str | None]:
    """``(handle, ident)`` for the first identifier ``lookup`` knows, else ``(None, None)``."""
    for ident in idents:
        if ident is None:
            continue
        try:
            return lookup(ident), ident
        except Exception:  # NVMLError_NotFound and kin: try the next spelling
            continue
    return None, None


def _is_mig_handle(nv: Any, handle: Any) -> bool:
    try:  # pynvml returns a ctypes c_uint here, not an int
        flag = nv.nvmlDeviceIsMigDeviceHandle(handle)
    except Exception:  # a binding or driver without MIG: no handle is a slice
        return False
    return bool(getattr(flag, "value", flag))


def _mig_enabled(nv: Any, handle: Any) -> bool:
    """Whether the whole GPU ``handle`` runs in MIG mode (so CUDA sees only its slices)."""
    try:
        current = nv.nvmlDeviceGetMigMode(handle)[0]  # [current, pending]
    except Exception:  # NVMLError_NotSupported on GPUs without MIG, or an old binding
        return False
    return current == getattr(nv, "NVML_DEVICE_MIG_ENABLE", 1)


def _mig_slice(nv: Any, gpu: Any, uuids: list[str]) -> Any:
    """The handle of ``gpu``'s slice known by one of ``uuids``, else None. Older drivers' UUID
    lookup knows only whole GPUs, so the slices are searched by index (gaps are normal)."""
    wanted = {u.lower() for u in uuids}
    if not wanted:
        return None
    try:
        count = int(nv.nvmlDeviceGetMaxMigDeviceCount(gpu))
    except Exception:
        return None
    for i in range(count):
        try:
            mig = nv.nvmlDeviceGetMigDeviceHandleByIndex(gpu, i)
            if _text(nv.nvmlDeviceGetUUID(mig)).lower() in wanted:
                return mig
        except Exception:  # NVMLError_NotFound: no slice at this index
            continue
    return None


def resolve_device(device: torch.device) -> tuple[Any, bool, str | None]:
    """``(handle, is_mig_slice, note)``: the NVML handle whose figures are ``device``'s own, and
    whether it is a MIG slice (memory only); ``(None, False, why)`` where there is none, which
    includes a MIG-mode GPU whose slice cannot be matched (its figures are not this config's)."""
    if device.type != "cuda":
        return None, False, f"no NVML telemetry on {device.type}: NVML reads NVIDIA GPUs"
    nv, why = _nvml_status()
    if nv is None:
        return None, False, why
    try:
        uuid, pci = _cuda_ids(device)
    except Exception as exc:
        return None, False, f"no NVML telemetry: torch cannot describe {device} ({exc})"
    uuids = _uuid_spellings(uuid)
    handle, ident = _first(nv.nvmlDeviceGetHandleByUUID, uuids)
    if handle is not None and ((ident or "").startswith("MIG-") or _is_mig_handle(nv, handle)):
        return handle, True, None
    gpu = handle if handle is not None else _first(nv.nvmlDeviceGetHandleByPciBusId, [pci])[0]
    if gpu is None:
        return None, False, f"NVML has no device matching {device} (UUID / PCI bus id)"
    if not _mig_enabled(nv, gpu):
        return gpu, False, None
    # MIG mode: CUDA runs on one slice, so the GPU's own figures are everyone's; find the slice.
    mig = _mig_slice(nv, gpu, [u for u in uuids if u.startswith("MIG-")])
    if mig is not None:
        return mig, True, None
    return None, False, (f"{device} is a slice of a GPU in MIG mode (PCI {pci}) that NVML cannot "
                         f"match by UUID {uuid}: the whole GPU's memory, power, energy, clocks, "
                         "temperature and utilisation are left out, they are not this config's")


def nvml_handle(device: torch.device) -> Any:
    """The NVML handle of CUDA ``device`` (by UUID, else PCI bus id; a MIG slice's own handle);
    None if unavailable, or if ``device`` is an unmatched slice of a MIG-mode GPU."""
    return resolve_device(device)[0]


def device_memory_used(device: torch.device) -> int | None:
    """Bytes in use on the whole device (a MIG slice: the slice) according to NVML; None
    without NVML, on CPU, or on a MIG slice NVML cannot match."""
    handle = nvml_handle(device)
    if handle is None:
        return None
    try:
        return int(_nvml().nvmlDeviceGetMemoryInfo(handle).used)
    except Exception:
        return None


def power_limit_w(device: torch.device) -> float | None:
    """The board power limit NVML enforces now, in watts (torchtitan's H100 figures were taken
    at 500 W of a 700 W board): the same GPU at another limit is another machine's speed. None
    without NVML, off CUDA, or on a MIG slice (the limit is the whole GPU's)."""
    handle = nvml_handle(device) if device.type == "cuda" else None
    if handle is None or _is_mig_handle(_nvml(), handle):
        return None
    try:
        return _nvml().nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0
    except Exception:
        return None


def driver_version() -> str | None:
    nv = _nvml()
    if nv is None:
        return None
    try:
        return _text(nv.nvmlSystemGetDriverVersion())
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
    method is safe to call from any thread. Where NVML or the device is unavailable, or the
    device is a MIG slice (whose polled figures would be the whole GPU's), ``start`` and ``stop``
    do nothing and ``summary()`` holds None fields and the reason.
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
        handle, mig, why = resolve_device(self.device)
        if handle is None:
            return None, None, why
        if mig:  # nothing to sample: every figure it polls is the whole GPU's
            return None, None, MIG_NOTE
        return _nvml(), handle, None

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
