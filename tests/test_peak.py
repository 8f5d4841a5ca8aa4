"""Peak FLOP/s: the datasheet table, the measured (and cached) GEMM peak, ``trainmark peak``."""

from __future__ import annotations

import json
import socket
from types import SimpleNamespace

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
    assert peak.lookup_gpu("Tesla T4").tflops["bf16"] is None


# Peaks derived independently of the datasheets' rounded figures, from each architecture's
# published make-up: SMs x boost clock x FLOPs per clock per SM (an FMA is 2 FLOPs).
#   Volta GV100 / Turing TU104 whitepapers: 64 FP32 cores per SM (128 FLOP/clk); 8 tensor cores
#     of 64 FP16 FMA/clk each (1,024 FLOP/clk). V100 SXM2: 80 SMs at 1,530 MHz; T4: 40 at 1,590.
#   A100 whitepaper: 64 FP32 cores per SM; 4 tensor cores, 1,024 dense FP16/BF16 FMA/clk per SM
#     (2,048 FLOP/clk), TF32 at half that. A100 SXM4: 108 SMs at 1,410 MHz.
#   GA10x / Ada whitepapers: 128 FP32 cores per SM (256 FLOP/clk); 4 tensor cores, 512 dense
#     FP16 FMA/clk per SM (1,024 FLOP/clk), TF32 at half; GeForce cards run FP32-accumulate
#     FP16/BF16 and TF32 at half rate again. A10: 72 SMs at 1,695 MHz; L4: 58 at 2,040;
#     RTX 3090: 82 at 1,695; RTX 4090: 128 at 2,520.
ARCHITECTURE = [  # device name, SMs, boost MHz, FLOP per clock per SM by GEMM dtype
    ("Tesla V100-SXM2-16GB", 80, 1530, {"fp32": 128, "fp16": 1024}),
    ("Tesla T4", 40, 1590, {"fp32": 128, "fp16": 1024}),
    ("NVIDIA A100-SXM4-80GB", 108, 1410, {"fp32": 128, "tf32": 1024, "bf16": 2048,
                                           "fp16": 2048}),
    ("NVIDIA A10", 72, 1695, {"fp32": 256, "tf32": 512, "bf16": 1024, "fp16": 1024}),
    ("NVIDIA L4", 58, 2040, {"fp32": 256, "bf16": 1024, "fp16": 1024}),
    ("NVIDIA GeForce RTX 3090", 82, 1695, {"fp32": 256, "tf32": 256, "bf16": 512,
                                           "fp16": 512}),
    ("NVIDIA GeForce RTX 4090", 128, 2520, {"fp32": 256, "tf32": 256, "bf16": 512,
                                            "fp16": 512}),
]


@pytest.mark.parametrize("name, sms, mhz, per_clock", ARCHITECTURE,
                         ids=[a[0] for a in ARCHITECTURE])
def test_cuda_peak_matches_the_architecture(monkeypatch, name, sms, mhz, per_clock):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    for dtype, flop_per_clock in per_clock.items():
        value, source = peak.peak_flops_per_s("cuda:0", dtype)
        # datasheets print three significant figures
        assert value == pytest.approx(sms * flop_per_clock * mhz * 1e6, rel=0.01), dtype
        assert source.startswith("table: ") and f" {dtype} dense (" in source


def test_cuda_peak_without_a_fast_path(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    # Turing has no TF32: an fp32 GEMM with the TF32 flag runs at the FP32 rate, 40 x 128 x 1.59
    # GHz; and no BF16 tensor-core path at all.
    assert peak.peak_flops_per_s("cuda:0", "tf32")[0] == pytest.approx(40 * 128 * 1.59e9,
                                                                       rel=0.01)
    value, source = peak.peak_flops_per_s("cuda:0", "bf16")
    assert value is None and "no bf16" in source


def test_precision_names_map_to_gemm_dtypes():
    assert gemm_dtype("fp32", "cpu") == "fp32"
    assert gemm_dtype("amp", "cpu") == "bf16"  # amp means bf16 autocast on the CPU
    assert gemm_dtype("amp-fp16", "cpu") == "fp16"
    assert gemm_dtype("amp", "cuda") == "fp16"  # ... and fp16 with GradScaler on CUDA
    assert gemm_dtype("fp32", "cuda", tf32=False) == "fp32"
    assert gemm_dtype("fp32", "cuda", tf32=True) == "tf32"
    with pytest.raises(ValueError, match="fp4"):
        gemm_dtype("fp4", "cpu")


def test_measured_gemm_peak_is_2n3_flops_per_call_and_escalates_within_the_budget(monkeypatch):
    """A fake device clock, no wall time: an n x n GEMM "takes" 2 n^3 / rate(n) seconds, with
    1 GFLOP/s at n = 256 and 4 GFLOP/s at n = 512. By hand, for a 2 s budget:
    n = 256: 0.0336 s a call; warm-up + 5 repeats of 1 call (0.02 s / 0.0336 s rounds to 1)
    end at 0.201 s. n = 512: predicted 3 x 8 x 0.0336 = 0.81 s fits the 1.80 s left; 0.0671 s a
    call, warm-up + 5 repeats end at 0.604 s. n = 1024: predicted 3 x 8 x 0.0671 = 1.61 s does
    not fit the 1.40 s left, so it is never run. The peak is the best rate: 4 GFLOP/s at 512."""
    rates = {256: 1e9, 512: 4e9}
    clock, calls = [0.0], []

    def matmul(a, b):
        n = a.shape[0]
        calls.append(n)
        clock[0] += 2 * n**3 / rates[n]
        return a

    monkeypatch.setattr(peak, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(torch, "matmul", matmul)
    result = peak.measure_gemm("cpu", "fp32", budget_s=2.0)
    assert calls == [256] * 6 + [512] * 6
    assert result["flops_per_s"] == pytest.approx(4e9) and result["size"] == 512
    assert result["budget_s"] == 2.0


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
