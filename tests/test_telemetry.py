"""NVML telemetry. Only the lowest layers are stand-ins: ``pynvml`` (the driver binding, with
scripted power/energy/clock readings for devices found by UUID or PCI bus id, and a GPU in MIG
mode split into slices) and torch's CUDA device properties, so the UUID / PCI-id formatting, the
lookups and the MIG rules run for real. On a machine with a GPU, one test checks the formatting
against NVML itself."""

from __future__ import annotations

import ctypes
import mmap
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from harness.core.loop import Clock, Measured, timed_region
from harness.core.timing import RegionTimer
from harness.probes import telemetry
from harness.probes.memory import current_rss_bytes, peak_rss_bytes, reset_peak_rss
from harness.probes.telemetry import NvmlSampler, throttle_names


class FakeNVMLError(Exception):
    pass


def pci_fields(bus_id: str) -> tuple[int, int, int, int]:
    """NVML's reading of a PCI bus id "domain:bus:device.function": hexadecimal, any case."""
    domain, bus, rest = bus_id.split(":")
    device, function = rest.split(".")
    return int(domain, 16), int(bus, 16), int(device, 16), int(function, 16)


class FakeNvml:
    """Plays the ``pynvml`` module: two GPUs in NVML's (PCI) order, known by NVML's UUID and PCI
    bus id spellings; the energy counter returns scripted millijoule readings, one per read."""

    NVML_CLOCK_SM = 1
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, reasons: int = 0x0, energy: bool = True, power_mw: int = 250_000) -> None:
        self.devices = {  # NVML spellings: "GPU-" UUIDs, upper-case PCI bus ids
            "GPU-0f3e1d2c-aaaa-4bbb-8ccc-1234567890ab": SimpleNamespace(
                name="gpu0", pci="00000000:1A:00.0", used=1_000_000_000),
            "GPU-6c2b4f0e-8a1d-4c3e-9f5a-1b2c3d4e5f60": SimpleNamespace(
                name="gpu1", pci="00000000:3B:00.0", used=7_516_192_768),
        }
        # Energy counter readings in mJ, one popped per read (a read past the script fails)
        self.energy_readings: dict[str, list[int]] = {"gpu0": [], "gpu1": []}
        self.energy_reads = 0
        self.reasons = reasons
        self.energy_supported = energy
        self.power_mw = power_mw
        self.init_calls = 0
        self.lock = threading.Lock()

    def nvmlInit(self) -> None:
        self.init_calls += 1

    def nvmlDeviceGetHandleByUUID(self, uuid: str):
        if uuid not in self.devices:
            raise FakeNVMLError("Not Found")
        return self.devices[uuid].name

    def nvmlDeviceGetHandleByPciBusId(self, pci: str):
        for dev in self.devices.values():
            if pci_fields(dev.pci) == pci_fields(pci):
                return dev.name
        raise FakeNVMLError("Not Found")

    def nvmlDeviceGetMemoryInfo(self, handle: str):
        (dev,) = [d for d in self.devices.values() if d.name == handle]
        return SimpleNamespace(total=80 * 2**30, used=dev.used, free=80 * 2**30 - dev.used)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        if not self.energy_supported:
            raise FakeNVMLError("Not Supported")
        with self.lock:
            self.energy_reads += 1
            return self.energy_readings[handle].pop(0)  # IndexError: an unexpected read

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        return self.power_mw if handle == "gpu1" else 100_000

    def nvmlDeviceGetClockInfo(self, handle: str, clock: int) -> int:
        assert clock == self.NVML_CLOCK_SM
        return 1980

    def nvmlDeviceGetTemperature(self, handle: str, sensor: int) -> int:
        return 70

    def nvmlDeviceGetUtilizationRates(self, handle: str):
        return SimpleNamespace(gpu=97, memory=40)

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: str) -> int:
        return self.reasons


class FakeUuid:
    """torch's ``_CUuuid``: ``str()`` gives the bare UUID, without NVML's "GPU-" prefix."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


def cuda_props(uuid: str | None = "6c2b4f0e-8a1d-4c3e-9f5a-1b2c3d4e5f60", pci=(0, 0x3B, 0)):
    """What ``torch.cuda.get_device_properties`` gives: ``pci`` is (domain, bus, device) as
    integers, or None for a torch build without the PCI fields."""
    props = SimpleNamespace(name="Fake GPU", uuid=FakeUuid(uuid) if uuid is not None else "")
    if pci is not None:
        props.pci_domain_id, props.pci_bus_id, props.pci_device_id = pci
    return props


@pytest.fixture()
def nvml_status_cache():
    """``_nvml_status`` caches its answer per process: start and end each test without one."""
    telemetry._nvml_status.cache_clear()
    yield
    telemetry._nvml_status.cache_clear()


@pytest.fixture()
def fake_gpu(monkeypatch, nvml_status_cache):
    """Only the lowest layers are fake: ``pynvml`` (the NVML binding) and torch's device
    properties; ``cuda:0`` is the *second* NVML device (as with CUDA_VISIBLE_DEVICES=1)."""
    nv = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    props = {0: cuda_props()}
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device: props[torch.device(device).index or 0])
    nv.cuda_props = props
    return nv


def test_cuda_ids_are_spelt_as_nvml_spells_them(monkeypatch):
    props = {}
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props["now"])
    cuda0 = torch.device("cuda:0")
    props["now"] = cuda_props("6c2b4f0e-8a1d-4c3e-9f5a-1b2c3d4e5f60", pci=(0, 0x3B, 0))
    assert telemetry._cuda_ids(cuda0) == ("GPU-6c2b4f0e-8a1d-4c3e-9f5a-1b2c3d4e5f60",
                                          "00000000:3b:00.0")
    # Domain 16, bus 175, device 3: eight, two and two hexadecimal digits, function 0.
    props["now"] = cuda_props("MIG-11111111-2222-3333-4444-555555555555", pci=(16, 175, 3))
    assert telemetry._cuda_ids(cuda0) == ("MIG-11111111-2222-3333-4444-555555555555",
                                          "00000010:af:03.0")
    props["now"] = cuda_props(None, pci=None)  # no UUID, a torch without PCI fields
    assert telemetry._cuda_ids(cuda0) == (None, None)


def test_handle_is_found_by_uuid_not_by_index(fake_gpu):
    assert telemetry.nvml_handle(torch.device("cuda:0")) == "gpu1"
    assert fake_gpu.init_calls == 1


def test_handle_falls_back_to_pci_bus_id(fake_gpu):
    cuda0 = torch.device("cuda:0")
    fake_gpu.cuda_props[0] = cuda_props("99999999-0000-0000-0000-000000000000", pci=(0, 0x3B, 0))
    assert telemetry.nvml_handle(cuda0) == "gpu1"  # NVML knows no such UUID: by PCI bus id
    fake_gpu.cuda_props[0] = cuda_props(None, pci=(0, 0x1A, 0))
    assert telemetry.nvml_handle(cuda0) == "gpu0"
    fake_gpu.cuda_props[0] = cuda_props(None, pci=(0, 0xFF, 0))
    assert telemetry.nvml_handle(cuda0) is None
    assert telemetry.device_memory_used(cuda0) is None


def test_device_memory_used_is_nvml_used_of_the_matching_device(fake_gpu):
    assert telemetry.device_memory_used(torch.device("cuda:0")) == 7_516_192_768  # gpu1's
    assert telemetry.device_memory_used(torch.device("cpu")) is None


def test_energy_is_the_counter_difference_across_regions(fake_gpu):
    # NVML's cumulative counter in mJ, read once at each edge of each region (the polling
    # thread never reads it). Region 1: 123_478_289 - 123_456_789 mJ = 21.5 J; the 1_711 mJ
    # spent between the regions are not counted; region 2: 123_532_125 - 123_480_000 = 52.125
    # J. Total 73.625 J.
    fake_gpu.energy_readings["gpu1"] = [123_456_789, 123_478_289, 123_480_000, 123_532_125]
    sampler = NvmlSampler("cuda:0", interval_s=0.005)
    for _ in range(2):
        with sampler:
            time.sleep(0.01)
    assert fake_gpu.energy_reads == 4 and fake_gpu.energy_readings["gpu1"] == []
    s = sampler.summary()
    assert s["energy_j"] == pytest.approx(73.625)
    assert s["power_w_mean"] == pytest.approx(250.0)
    assert s["sm_clock_mhz_mean"] == 1980
    assert s["temperature_c_max"] == 70
    assert s["gpu_util_mean"] == 97
    assert s["throttled"] is False and s["throttle_reasons"] == []
    assert s["telemetry_samples"] >= 4  # edges of two regions, plus polled samples
    assert s["telemetry_note"] is None


def test_mean_power_averages_the_samples(fake_gpu):
    fake_gpu.energy_readings["gpu1"] = [0, 1]
    sampler = NvmlSampler("cuda:0", interval_s=0.002)
    sampler.start()
    time.sleep(0.02)
    fake_gpu.power_mw = 350_000  # power rises mid-region
    time.sleep(0.02)
    sampler.stop()
    powers = [s["power_w"] for s in sampler._samples]
    assert powers[0] == 250 and powers[-1] == 350  # the edge samples see both levels
    mean = sampler.summary()["power_w_mean"]
    assert mean == pytest.approx(sum(powers) / len(powers))
    assert 250 < mean < 350


def test_power_cap_counts_as_throttling_but_idle_does_not(fake_gpu):
    fake_gpu.reasons = 0x1 | 0x2  # idle + application clocks setting
    with NvmlSampler("cuda:0", interval_s=0.005) as idle:
        pass
    assert idle.summary()["throttled"] is False
    assert idle.summary()["throttle_reasons"] == ["gpu_idle", "applications_clocks_setting"]

    fake_gpu.reasons = 0x4 | 0x40  # software power cap + hardware thermal slowdown
    with NvmlSampler("cuda:0", interval_s=0.005) as hot:
        pass
    assert hot.summary()["throttled"] is True
    assert hot.summary()["throttle_reasons"] == ["sw_power_cap", "hw_thermal_slowdown"]


def test_throttle_names_keep_unknown_bits():
    assert throttle_names(0) == []
    assert throttle_names(0x8 | 0x400) == ["hw_slowdown", "bit_0x400"]


def test_missing_energy_counter_gives_null_energy_and_a_note(fake_gpu):
    fake_gpu.energy_supported = False
    with NvmlSampler("cuda:0", interval_s=0.005) as sampler:
        pass
    s = sampler.summary()
    assert s["energy_j"] is None and s["power_w_mean"] == pytest.approx(250.0)
    assert "energy counter unsupported" in s["telemetry_note"]


def test_absent_nvml_gives_none_fields_and_the_reason(monkeypatch, nvml_status_cache):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # what `import pynvml` meets without it
    sampler = NvmlSampler("cuda:0")
    with sampler:  # start/stop are no-ops, never errors
        pass
    s = sampler.summary()
    assert not sampler.available
    assert all(s[k] is None for k in telemetry.SUMMARY_FIELDS)
    assert s["telemetry_note"].startswith("NVML not available: nvidia-ml-py is not installed (")
    assert telemetry.device_memory_used(torch.device("cuda:0")) is None
    assert telemetry.driver_version() is None


def test_nvml_that_fails_to_initialise_gives_the_drivers_reason(monkeypatch, nvml_status_cache):
    class NVMLError_LibraryNotFound(Exception):  # noqa: N801 (pynvml's name)
        pass

    def init():
        raise NVMLError_LibraryNotFound("NVML Shared Library Not Found")

    monkeypatch.setitem(sys.modules, "pynvml", SimpleNamespace(nvmlInit=init))
    assert telemetry._nvml_status() == (None, "NVML not available: NVML Shared Library Not Found")
    s = NvmlSampler("cuda:0").summary()
    assert s["energy_j"] is None
    assert s["telemetry_note"] == "NVML not available: NVML Shared Library Not Found"


def test_an_error_without_a_message_is_named_by_its_type(monkeypatch, nvml_status_cache):
    class NVMLError_Uninitialized(Exception):  # noqa: N801 (pynvml's name)
        pass

    def init():
        raise NVMLError_Uninitialized()

    monkeypatch.setitem(sys.modules, "pynvml", SimpleNamespace(nvmlInit=init))
    assert telemetry._nvml_status() == (None, "NVML not available: NVMLError_Uninitialized")


def test_nvml_is_initialised_once_and_the_driver_version_decoded(fake_gpu):
    fake_gpu.nvmlSystemGetDriverVersion = lambda: b"580.65.06"  # older bindings return bytes
    assert telemetry._nvml_status() == (fake_gpu, None)
    assert telemetry.driver_version() == "580.65.06"
    NvmlSampler("cuda:0")
    telemetry.device_memory_used(torch.device("cuda:0"))
    assert fake_gpu.init_calls == 1


def test_cpu_device_has_no_nvml_telemetry():
    s = NvmlSampler("cpu").summary()
    assert all(s[k] is None for k in telemetry.SUMMARY_FIELDS)
    assert "cpu" in s["telemetry_note"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU and its driver")
def test_cuda_ids_match_what_nvml_itself_reports(nvml_status_cache):
    """On a real GPU: torch's UUID and PCI bus id, as formatted, are one NVML device's own."""
    nv = pytest.importorskip("pynvml")
    nv.nvmlInit()

    def text(value) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    devices = {}
    for i in range(nv.nvmlDeviceGetCount()):
        h = nv.nvmlDeviceGetHandleByIndex(i)
        devices[text(nv.nvmlDeviceGetUUID(h))] = text(nv.nvmlDeviceGetPciInfo(h).busId)
    uuid, pci = telemetry._cuda_ids(torch.device("cuda:0"))
    assert pci is not None and pci.lower() in {b.lower() for b in devices.values()}
    if uuid is not None and uuid.startswith("GPU-"):  # MIG slices are not NVML devices
        assert devices[uuid].lower() == pci.lower()
    handle = telemetry.nvml_handle(torch.device("cuda:0"))
    if uuid is not None and uuid.startswith("GPU-"):
        # The MIG rules on real hardware: a whole GPU is no slice, and not in MIG mode (else
        # CUDA would have shown a slice), so the handle is the GPU's own.
        assert not telemetry.resolve_device(torch.device("cuda:0"))[1]
    if telemetry.resolve_device(torch.device("cuda:0"))[1]:  # a MIG slice: its parent's PCI id
        handle = nv.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle)
    assert text(nv.nvmlDeviceGetPciInfo(handle).busId).lower() == pci.lower()


def test_unbalanced_start_stop_is_an_error(fake_gpu):
    fake_gpu.energy_readings["gpu1"] = [5_000_000, 5_000_250]
    sampler = NvmlSampler("cuda:0", interval_s=0.005)
    with pytest.raises(RuntimeError):
        sampler.stop()
    sampler.start()
    with pytest.raises(RuntimeError):
        sampler.start()
    sampler.stop()
    assert sampler.summary()["energy_j"] == pytest.approx(0.25)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux /proc only")
def test_peak_rss_is_a_high_water_mark_that_sees_touched_memory():
    size = 64 * 2**20
    if not reset_peak_rss():
        pytest.skip("this kernel cannot reset the RSS high-water mark")
    before = current_rss_bytes()
    # Fresh anonymous pages, written, so every page is resident. (Not a bytes object: malloc
    # may hand back memory that earlier tests freed but the process still holds, which adds
    # nothing to the RSS.)
    buf = mmap.mmap(-1, size)
    for offset in range(0, size, mmap.PAGESIZE):
        buf[offset] = 1
    assert peak_rss_bytes() >= before + 0.9 * size
    buf.close()
    assert peak_rss_bytes() >= before + 0.9 * size  # a high-water mark: freeing does not lower it


# --- MIG -------------------------------------------------------------------------------------

SLICE0_UUID = "MIG-a1b2c3d4-1111-5222-9333-444455556666"
SLICE2_UUID = "MIG-0d0e0f10-7777-5888-a999-000011112222"
SLICE0_USED = 3_221_225_472  # 3 GiB: this slice's own memory in use
SLICE2_USED = 536_870_912  # 0.5 GiB
GPU1_USED = 7_516_192_768  # the whole GPU's (FakeNvml's gpu1)


def bare(uuid: str) -> str:
    """The UUID as torch reports it: cuDeviceGetUuid_v2's bytes, without NVML's prefix."""
    return uuid.split("-", 1)[1]


class FakeMigNvml(FakeNvml):
    """Plays ``pynvml`` with its MIG calls, as on an A100/H100: NVML's second GPU ("gpu1", the
    one cuda:0 maps to) is MIG-capable and, with ``mig_mode``, split into slices, each a MIG
    device with its own "MIG-" UUID and memory, at sparse indices (1 is empty, as after an
    instance was destroyed); gpu0 has no MIG at all. ``uuid_knows_mig``: a recent driver whose
    UUID lookup also finds slices; older ones find only whole GPUs. Asked for power, energy,
    clocks or temperature through a slice's handle it answers with the whole GPU's readings,
    the worst a driver could do, so a test sees any such read in the record."""

    NVML_DEVICE_MIG_ENABLE = 1

    def __init__(self, mig_mode: bool = True, uuid_knows_mig: bool = True) -> None:
        super().__init__()
        self.mig_mode = {"gpu0": None, "gpu1": mig_mode}  # None: no MIG (NVML: Not Supported)
        self.uuid_knows_mig = uuid_knows_mig
        self.slices = {0: SimpleNamespace(name="gpu1-mig0", uuid=SLICE0_UUID, used=SLICE0_USED),
                       2: SimpleNamespace(name="gpu1-mig2", uuid=SLICE2_UUID, used=SLICE2_USED)}

    def slice_named(self, handle: str):
        return next((s for s in self.slices.values() if s.name == handle), None)

    @staticmethod
    def gpu_of(handle: str) -> str:
        return handle.split("-mig")[0]

    def nvmlDeviceGetHandleByUUID(self, uuid: str):
        for sl in self.slices.values():
            if sl.uuid == uuid and self.mig_mode["gpu1"] and self.uuid_knows_mig:
                return sl.name
        return super().nvmlDeviceGetHandleByUUID(uuid)

    def nvmlDeviceIsMigDeviceHandle(self, handle: str):
        return ctypes.c_uint(int(self.slice_named(handle) is not None))  # pynvml's own type

    def nvmlDeviceGetMigMode(self, handle: str) -> list[int]:
        mode = self.mig_mode.get(handle)
        if mode is None:
            raise FakeNVMLError("Not Supported")
        return [int(mode), int(mode)]  # [current, pending]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: str) -> int:
        return 7 if self.mig_mode.get(handle) is not None else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: str, index: int):
        if handle != "gpu1" or not self.mig_mode["gpu1"] or index not in self.slices:
            raise FakeNVMLError("Not Found")
        return self.slices[index].name

    def nvmlDeviceGetUUID(self, handle: str) -> bytes:  # older bindings return bytes
        sl = self.slice_named(handle)
        if sl is not None:
            return sl.uuid.encode()
        return next(u for u, d in self.devices.items() if d.name == handle).encode()

    def nvmlDeviceGetMemoryInfo(self, handle: str):
        sl = self.slice_named(handle)
        if sl is None:
            return super().nvmlDeviceGetMemoryInfo(handle)
        return SimpleNamespace(total=20 * 2**30, used=sl.used, free=20 * 2**30 - sl.used)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        return super().nvmlDeviceGetTotalEnergyConsumption(self.gpu_of(handle))

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        return super().nvmlDeviceGetPowerUsage(self.gpu_of(handle))


@pytest.fixture()
def mig_nvml(monkeypatch, nvml_status_cache):
    """A ``FakeMigNvml`` factory installed as ``pynvml``; ``cuda:0`` gets the given properties."""
    def install(props, **kw) -> FakeMigNvml:
        nv = FakeMigNvml(**kw)
        monkeypatch.setitem(sys.modules, "pynvml", nv)
        telemetry._nvml_status.cache_clear()
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)
        return nv
    return install


def sampled_summary(interval_s: float = 0.002) -> dict[str, object]:
    sampler = NvmlSampler("cuda:0", interval_s=interval_s)
    with sampler:
        time.sleep(0.01)
    return sampler.summary()


@pytest.mark.parametrize("uuid_knows_mig, uuid, handle, used", [
    # a recent driver: NVML's UUID lookup finds the slice
    (True, SLICE0_UUID, "gpu1-mig0", SLICE0_USED),
    # an older one: found among gpu1's slices by index, past the empty index 1
    (False, SLICE2_UUID, "gpu1-mig2", SLICE2_USED),
], ids=["uuid-lookup", "slice-search"])
def test_a_mig_slice_reports_its_own_memory_and_no_whole_gpu_figures(mig_nvml, uuid_knows_mig,
                                                                      uuid, handle, used):
    # torch reports the slice's bare UUID and its GPU's PCI bus id (gpu1's, 3B).
    nv = mig_nvml(cuda_props(bare(uuid), pci=(0, 0x3B, 0)), uuid_knows_mig=uuid_knows_mig)
    cuda0 = torch.device("cuda:0")
    assert telemetry.nvml_handle(cuda0) == handle
    assert telemetry.device_memory_used(cuda0) == used  # the slice's, not GPU1_USED
    s = sampled_summary()
    # The fake would answer 250 W, 1980 MHz, 70 C: only null proves none was read.
    assert {k: s[k] for k in telemetry.SUMMARY_FIELDS} == dict.fromkeys(telemetry.SUMMARY_FIELDS)
    assert nv.energy_reads == 0
    assert "MIG slice" in s["telemetry_note"] and "whole GPU" in s["telemetry_note"]


@pytest.mark.parametrize("uuid", [
    "99999999-0000-4000-8000-000000000000",  # a slice NVML does not know (found by PCI id)
    "6c2b4f0e-8a1d-4c3e-9f5a-1b2c3d4e5f60",  # the GPU's own UUID, though it runs in MIG mode
], ids=["unknown-uuid", "parent-uuid"])
def test_an_unmatched_slice_of_a_mig_gpu_reports_nothing_rather_than_the_whole_gpu(mig_nvml,
                                                                                   uuid):
    nv = mig_nvml(cuda_props(uuid, pci=(0, 0x3B, 0)))
    nv.energy_readings["gpu1"] = [1_000_000, 1_002_500]  # would give 2.5 J if read
    cuda0 = torch.device("cuda:0")
    assert telemetry.nvml_handle(cuda0) is None
    assert telemetry.device_memory_used(cuda0) is None  # not GPU1_USED
    s = sampled_summary()
    assert {k: s[k] for k in telemetry.SUMMARY_FIELDS} == dict.fromkeys(telemetry.SUMMARY_FIELDS)
    assert nv.energy_reads == 0
    assert "MIG mode" in s["telemetry_note"] and "left out" in s["telemetry_note"]


def test_gpus_not_in_mig_mode_keep_their_whole_gpu_figures(mig_nvml):
    # gpu1 can do MIG but runs without it (the usual H100), found by its UUID; its whole-GPU
    # figures are the config's: 250 W, 1980 MHz, 70 C, and 1_002_500 - 1_000_000 mJ = 2.5 J.
    nv = mig_nvml(cuda_props("6c2b4f0e-8a1d-4c3e-9f5a-1b2c3d4e5f60", pci=(0, 0x3B, 0)),
                  mig_mode=False)
    nv.energy_readings["gpu1"] = [1_000_000, 1_002_500]
    cuda0 = torch.device("cuda:0")
    assert telemetry.nvml_handle(cuda0) == "gpu1"
    assert telemetry.device_memory_used(cuda0) == GPU1_USED
    s = sampled_summary()
    assert s["energy_j"] == pytest.approx(2.5)
    assert s["power_w_mean"] == pytest.approx(250.0)
    assert s["sm_clock_mhz_mean"] == 1980 and s["temperature_c_max"] == 70
    assert s["telemetry_note"] is None
    # gpu0 has no MIG at all (NVML: Not Supported), found by PCI bus id: still the GPU itself.
    nv = mig_nvml(cuda_props(None, pci=(0, 0x1A, 0)))
    assert telemetry.nvml_handle(cuda0) == "gpu0"
    assert telemetry.device_memory_used(cuda0) == 1_000_000_000


# --- the sampler around a failing region ------------------------------------------------------

def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "nvml-sampler" and t.is_alive()]


def test_a_region_that_raises_leaves_no_sampler_thread_running(fake_gpu):
    # The step stands in for one that fails mid-region (a CUDA OOM, a cuBLAS error); with
    # --isolation none the process goes on to the next config, so the thread must not survive.
    fake_gpu.energy_readings["gpu1"] = [10_000, 10_400, 20_000, 20_100]
    sampler = NvmlSampler("cuda:0", interval_s=0.002)
    clock = Clock(RegionTimer(torch.device("cpu")), sampler, items_per_step=4)
    calls = []

    def step(batch: torch.Tensor) -> torch.Tensor:
        calls.append(batch)
        if len(calls) == 3:
            raise RuntimeError("CUDA out of memory")
        return torch.tensor(1.0)

    before = len(sampler_threads())
    with pytest.raises(RuntimeError, match="out of memory"):
        timed_region(step, torch.zeros(6, 4, dtype=torch.long), clock, Measured())
    assert sampler._thread is None
    assert len(sampler_threads()) == before
    with sampler:  # and it is ready for the next region (start() refuses a running sampler)
        pass
    assert sampler.summary()["energy_j"] == pytest.approx(0.5)  # 0.4 J + 0.1 J
