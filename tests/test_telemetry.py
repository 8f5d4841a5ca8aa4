"""NVML telemetry. There is no GPU here, so a small stand-in for ``pynvml`` plays the driver:
it returns scripted power/energy/clock readings for devices identified by UUID or PCI bus id."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
import torch

from harness.probes import telemetry
from harness.probes.memory import peak_rss_bytes
from harness.probes.telemetry import NvmlSampler, throttle_names


class FakeNVMLError(Exception):
    pass


class FakeNvml:
    """Two GPUs in NVML's (PCI) order; energy advances with every read (1 J per read)."""

    NVML_CLOCK_SM = 1
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, reasons: int = 0x0, energy: bool = True, power_mw: int = 250_000) -> None:
        self.devices = {
            "GPU-aaaa": SimpleNamespace(name="gpu0", pci="00000000:1a:00.0"),
            "GPU-bbbb": SimpleNamespace(name="gpu1", pci="00000000:3b:00.0"),
        }
        self.energy_mj = {"gpu0": 1_000_000, "gpu1": 5_000_000}
        self.reasons = reasons
        self.energy_supported = energy
        self.power_mw = power_mw
        self.lock = threading.Lock()

    def nvmlDeviceGetHandleByUUID(self, uuid: str):
        if uuid not in self.devices:
            raise FakeNVMLError("Not Found")
        return self.devices[uuid].name

    def nvmlDeviceGetHandleByPciBusId(self, pci: str):
        for dev in self.devices.values():
            if dev.pci == pci.lower():
                return dev.name
        raise FakeNVMLError("Not Found")

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        if not self.energy_supported:
            raise FakeNVMLError("Not Supported")
        with self.lock:
            self.energy_mj[handle] += 1000  # +1 J per read, so the region's delta is countable
            return self.energy_mj[handle]

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


@pytest.fixture()
def fake_gpu(monkeypatch):
    """``cuda:0`` is the *second* NVML device (as with CUDA_VISIBLE_DEVICES=1)."""
    nv = FakeNvml()
    monkeypatch.setattr(telemetry, "_nvml_status", lambda: (nv, None))
    monkeypatch.setattr(telemetry, "_cuda_ids", lambda device: ("GPU-bbbb", "00000000:3B:00.0"))
    return nv


def test_handle_is_found_by_uuid_not_by_index(fake_gpu):
    assert telemetry.nvml_handle(torch.device("cuda:0")) == "gpu1"


def test_handle_falls_back_to_pci_bus_id(fake_gpu, monkeypatch):
    monkeypatch.setattr(telemetry, "_cuda_ids", lambda device: ("GPU-unknown", "00000000:3B:00.0"))
    assert telemetry.nvml_handle(torch.device("cuda:0")) == "gpu1"
    monkeypatch.setattr(telemetry, "_cuda_ids", lambda device: (None, "00000000:ff:00.0"))
    assert telemetry.nvml_handle(torch.device("cuda:0")) is None


def test_energy_is_the_counter_difference_across_regions(fake_gpu):
    sampler = NvmlSampler("cuda:0", interval_s=0.005)
    for _ in range(2):
        start_mj = fake_gpu.energy_mj["gpu1"]
        with sampler:
            time.sleep(0.03)
        assert fake_gpu.energy_mj["gpu1"] - start_mj == 2000  # one read at each edge
    s = sampler.summary()
    # Two regions, each the difference of two counter reads 1 J apart (reads add 1 J each).
    assert s["energy_j"] == pytest.approx(2.0)
    assert s["power_w_mean"] == pytest.approx(250.0)
    assert s["sm_clock_mhz_mean"] == 1980
    assert s["temperature_c_max"] == 70
    assert s["gpu_util_mean"] == 97
    assert s["throttled"] is False and s["throttle_reasons"] == []
    assert s["telemetry_samples"] >= 4  # edges of two regions, plus polled samples
    assert s["telemetry_note"] is None


def test_mean_power_averages_the_samples(fake_gpu):
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


def test_absent_nvml_gives_none_fields_and_the_reason(monkeypatch):
    monkeypatch.setattr(telemetry, "_nvml_status",
                        lambda: (None, "NVML not available: NVML Shared Library Not Found"))
    sampler = NvmlSampler("cuda:0")
    with sampler:  # start/stop are no-ops, never errors
        pass
    s = sampler.summary()
    assert not sampler.available
    assert all(s[k] is None for k in telemetry.SUMMARY_FIELDS)
    assert s["telemetry_note"] == "NVML not available: NVML Shared Library Not Found"
    assert telemetry.device_memory_used(torch.device("cuda:0")) is None


def test_cpu_device_has_no_nvml_telemetry():
    s = NvmlSampler("cpu").summary()
    assert all(s[k] is None for k in telemetry.SUMMARY_FIELDS)
    assert "cpu" in s["telemetry_note"]


def test_real_nvml_status_is_either_a_module_or_a_reason():
    module, why = telemetry._nvml_status()
    assert (module is None) != (why is None)
    if module is None:
        assert why.startswith("NVML not available")


def test_unbalanced_start_stop_is_an_error(fake_gpu):
    sampler = NvmlSampler("cuda:0", interval_s=0.005)
    with pytest.raises(RuntimeError):
        sampler.stop()
    sampler.start()
    with pytest.raises(RuntimeError):
        sampler.start()
    sampler.stop()
    assert sampler.summary()["energy_j"] is not None


def test_existing_helpers_still_work(fake_gpu):
    assert peak_rss_bytes() > 0
    assert telemetry.device_memory_used(torch.device("cpu")) is None
