"""Peak FLOP/s: the datasheet table, the measured (and cached) GEMM peak, ``trainmark peak``."""

from __future__ import annotations

import json
import socket

import pytest
import torch

from harness.cli import main
from harness.core.precision import gemm_dtype
from harness.probes import peak

TINY_BUDGET = 0.3  # seconds per dtype: enough for a positive number, not for a true peak


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(peak.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("name, entry", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"),
    ("NVIDIA H100 PCIe", "H100 PCIe"),
    ("NVIDIA H100 NVL", "H100 NVL"),
    ("NVIDIA H200", "H200 SXM"),
    ("NVIDIA A100-SXM4-80GB", "A100 SXM"),
    ("NVIDIA A100 80GB PCIe", "A100 PCIe"),
    ("NVIDIA A10", "A10"),
    ("NVIDIA A10G", "A10G"),
    ("NVIDIA L4", "L4"),
    ("NVIDIA L40S", "L40S"),
    ("NVIDIA L40", "L40"),
    ("Tesla T4", "T4"),
    ("Tesla V100-SXM2-16GB", "V100 SXM2"),
    ("Tesla V100-PCIE-32GB", "V100 PCIe"),
    ("NVIDIA GeForce RTX 4090", "RTX 4090"),
    ("NVIDIA GeForce RTX 3090", "RTX 3090"),
])
def test_table_lookup_by_device_name(name, entry):
    assert peak.lookup_gpu(name).name == entry


def test_unknown_and_near_miss_names_are_not_in_the_table():
    for name in ("NVIDIA GeForce RTX 3090 Ti", "NVIDIA A1000", "AMD Instinct MI300X", "cpu"):
        assert peak.lookup_gpu(name) is None


def test_table_values_are_dense_peaks():
    h100 = peak.lookup_gpu("NVIDIA H100 80GB HBM3")
    assert h100.tflops["bf16"] == pytest.approx(1979 / 2, rel=1e-3)  # datasheet: 1,979 sparse
    assert peak.lookup_gpu("NVIDIA A100-SXM4-40GB").tflops == {
        "fp32": 19.5, "tf32": 156, "bf16": 312, "fp16": 312}
    assert peak.lookup_gpu("Tesla T4").tflops["bf16"] is None


def test_cuda_peak_comes_from_the_table(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100-SXM4-80GB")
    value, source = peak.peak_flops_per_s("cuda:0", "bf16")
    assert value == 312e12 and source.startswith("table: A100 SXM bf16 dense")
    assert peak.peak_flops_per_s("cuda:0", "fp16")[0] == 312e12
    assert peak.peak_flops_per_s("cuda:0", "fp32")[0] == 19.5e12
    assert peak.peak_flops_per_s("cuda:0", "tf32")[0] == 156e12
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    assert peak.peak_flops_per_s("cuda:0", "tf32")[0] == 8.1e12  # no TF32 on Turing
    value, source = peak.peak_flops_per_s("cuda:0", "bf16")
    assert value is None and "no bf16" in source


def test_precision_names_map_to_gemm_dtypes():
    assert gemm_dtype("fp32", "cpu") == "fp32"
    assert gemm_dtype("amp", "cpu") == "bf16"  # amp means bf16 autocast on the CPU
    assert gemm_dtype("amp-fp16", "cpu") == "fp16"
    assert gemm_dtype("amp", "cuda") == "fp16"  # ... and fp16 with GradScaler on CUDA
    assert gemm_dtype("fp32", "cuda", tf32=False) == "fp32"
    assert gemm_dtype("fp32", "cuda", tf32=True) == "tf32"
    with pytest.raises(ValueError, match="fp8"):
        gemm_dtype("fp8", "cpu")


def test_measured_gemm_peak_is_positive_and_bounded_in_time():
    import time

    t0 = time.perf_counter()
    result = peak.measure_gemm("cpu", "fp32", budget_s=TINY_BUDGET)
    assert time.perf_counter() - t0 < 5  # one size past the budget at most
    assert result["flops_per_s"] > 1e8 and result["size"] >= 256


def test_cpu_peak_is_measured_once_then_cached(cache_dir, monkeypatch):
    calls = []
    real = peak.measure_gemm

    def counting(device, dtype, budget_s=peak.DEFAULT_BUDGET_S, max_size=None):
        calls.append(dtype)
        return real(device, dtype, budget_s=TINY_BUDGET, max_size=512)

    monkeypatch.setattr(peak, "measure_gemm", counting)
    value, source = peak.peak_flops_per_s("cpu", "fp32")
    assert value > 0 and source.startswith("measured ") and "fp32 GEMM" in source
    again, _ = peak.peak_flops_per_s("cpu", "fp32")
    assert again == value and calls == ["fp32"]  # second call: from the cache
    bf16, _ = peak.peak_flops_per_s("cpu", "bf16")
    assert bf16 > 0 and calls == ["fp32", "bf16"]

    data = json.loads((cache_dir / "peak.json").read_text())
    (key,) = data
    # one measurement holds for one host, device, torch build and thread count
    host = socket.gethostname().lower()
    assert key.startswith(host) and f"torch{torch.__version__.replace('+', '-')}" in key
    assert key.endswith(f"-{torch.get_num_threads()}t")
    assert set(data[key]["measurements"]) == {"fp32", "bf16"}

    monkeypatch.setattr(torch, "get_num_threads", lambda: 999)  # another machine key
    assert peak.peak_flops_per_s("cpu", "fp32", measure=False)[0] is None


def test_corrupt_cache_is_measured_again(cache_dir, monkeypatch):
    cache_dir.mkdir(parents=True)
    (cache_dir / "peak.json").write_text("{not json")
    monkeypatch.setattr(peak, "measure_gemm", lambda *a, **k: {
        "flops_per_s": 1e9, "size": 256, "measured_at": "2026-01-01T00:00:00+00:00"})
    assert peak.peak_flops_per_s("cpu", "fp32") == (1e9, "measured 2026-01-01: fp32 GEMM n=256")


def test_cli_peak_prints_a_table_and_caches(cache_dir, capsys):
    assert main(["peak", "--devices", "cpu", "--budget", str(TINY_BUDGET)]) == 0
    out = capsys.readouterr().out
    header, fp32, bf16 = out.splitlines()[:3]
    assert "measured TFLOP/s" in header and "datasheet TFLOP/s" in header
    assert fp32.startswith("cpu") and " fp32 " in fp32
    assert bf16.startswith("cpu") and " bf16 " in bf16
    assert str(cache_dir / "peak.json") in out
    assert float(fp32.split("  fp32  ")[1].split()[0]) > 0


@pytest.mark.parametrize("argv, message", [
    (["peak", "--devices", "tpu"], "unknown device 'tpu'"),
    (["peak", "--devices", ","], "empty list"),
    (["peak", "--devices", "cpu", "--dtypes", "fp8"], "unknown dtype 'fp8'"),
    (["peak", "--devices", "cpu", "--dtypes", "tf32"], "only on CUDA"),
    (["peak", "--devices", "cpu", "--budget", "0"], "--budget"),
])
def test_cli_peak_bad_input_is_one_line_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
