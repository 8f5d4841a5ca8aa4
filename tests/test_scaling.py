"""DDP through torch.distributed.run (2 gloo processes), compile, channels-last, FLOPs and MFU."""

import json
import time

import pytest
import torch

from harness.cli import main
from harness.core.config import RunConfig
from harness.core.runner import Runner
from harness.core.suites import expand, merge_settings
from harness.execution.peaks import prepare_peaks
from harness.execution.sweep import ScalingTracker
from harness.store.jsonl import read_records

TINY = ["--devices", "cpu", "--precisions", "fp32", "--optimizers", "sgd", "--steps", "3",
        "--warmup", "1", "--repeats", "2", "--eval-samples", "32", "--train-samples", "64",
        "--batch-sizes", "8", "--quiet", "--no-report"]


def test_two_gloo_processes_record_global_throughput_and_scaling(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--models", "convnet", "--nproc", "2,1", *TINY, "--out", "d.jsonl"]) == 0
    one, two = read_records("d.jsonl")  # the 1-process reference runs first
    assert (one["nproc"], two["nproc"]) == (1, 2)
    assert two["status"] == "ok", two["error"]
    assert (one["dist_backend"], two["dist_backend"]) == (None, "gloo")  # CPU ranks: gloo
    assert len(two["rank_step_time_ms_median"]) == 2
    assert two["throughput"] > 0
    assert two["scaling_efficiency"] == pytest.approx(two["throughput"] / (2 * one["throughput"]))
    assert two["run_id"] == one["run_id"]
    # MFU on every rank too: the sweep's peak is handed to the ranks (torchrun gives them
    # OMP_NUM_THREADS=1, under which a cache lookup of this machine's peak would miss)
    assert one["peak_flops_per_s"] and one["mfu"] > 0
    assert two["peak_flops_per_s"] == pytest.approx(2 * one["peak_flops_per_s"])
    assert two["peak_flops_source"] == one["peak_flops_source"] and two["mfu"] > 0


def test_a_dead_rank_ends_the_run_with_an_error_record_not_a_hang(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRAINMARK_TEST_FAIL_RANK", "1")
    monkeypatch.setenv("TRAINMARK_DIST_TIMEOUT_S", "30")
    assert main(["run", "--models", "convnet", "--nproc", "2", *TINY, "--out", "d.jsonl"]) == 0
    (rec,) = read_records("d.jsonl")
    assert rec["status"] == "error" and rec["nproc"] == 2
    assert rec["error"] == "torchrun exited with status 1: rank 1 failed first with exit code 3"


def test_scaling_tracker_matches_on_everything_but_nproc():
    base = {"model": "convnet", "dataset": "synthetic", "status": "ok", "nproc": 1,
            "throughput": 100.0}
    tracker = ScalingTracker([base])
    rec = {**base, "nproc": 4, "throughput": 300.0}
    tracker.annotate(rec)
    assert rec["scaling_efficiency"] == pytest.approx(0.75)
    other = {**base, "model": "resnet20", "nproc": 4, "throughput": 300.0}
    tracker.annotate(other)
    assert other["scaling_efficiency"] is None


COMPILE_DELAY_S = 1000.0  # what compiling "takes" on the test's clock
SLOW_BACKEND = "trainmark_test_slow_compile"


def test_compile_time_is_recorded_apart_from_steady_state(monkeypatch):
    """A test-only torch.compile backend (eager execution of the traced graph) advances the
    process clock (``time.perf_counter``) by 1000 s each time it compiles. Compile time must
    hold that delay and no timed repeat, nor the warm-up chunk, may: a repeat that paid for a
    compilation would last >= 1000 s, far beyond the whole run's real duration."""
    from torch._dynamo.backends.registry import _COMPILER_FNS, register_backend

    real_clock, skipped, compiles = time.perf_counter, [0.0], []

    def slow_compile(gm, example_inputs):
        skipped[0] += COMPILE_DELAY_S
        compiles.append(len(example_inputs))
        return gm.forward

    if SLOW_BACKEND in _COMPILER_FNS:  # the test ran before in this process
        monkeypatch.setitem(_COMPILER_FNS, SLOW_BACKEND, slow_compile)
    else:
        register_backend(slow_compile, name=SLOW_BACKEND)
    monkeypatch.setattr(time, "perf_counter", lambda: real_clock() + skipped[0])
    monkeypatch.setenv("TRAINMARK_COMPILE_BACKEND", SLOW_BACKEND)
    torch._dynamo.reset()  # no compiled code cached from another test
    rec = Runner().run(RunConfig("convnet", "synthetic", batch_size=8, warmup_steps=2,
                                 timed_steps=3, repeats=3, eval_samples=32, train_samples=64,
                                 compile=True))
    assert rec["status"] == "ok", rec["error"]
    assert rec["compile"] is True and rec["compile_backend"] == SLOW_BACKEND
    assert compiles, "the backend never compiled"
    assert len(rec["repeat_throughputs"]) == 3
    for throughput in rec["repeat_throughputs"]:  # no repeat paid for compiling (8 x 3 samples)
        assert 8 * rec["timed_steps_run"] / throughput < COMPILE_DELAY_S
    assert rec["warmup_time_s"] < COMPILE_DELAY_S  # nor the warm-up chunk
    assert rec["compile_time_s"] >= COMPILE_DELAY_S  # the first step, alone, did
    assert rec["wall_time_s"] >= rec["compile_time_s"]


def test_channels_last_applies_to_conv_models_only():
    configs = expand(merge_settings({}, {"models": ["resnet20", "transformer"],
                                         "devices": ["cpu"], "channels_last": [False, True]}))
    assert [(c.model, c.channels_last) for c in configs] == [
        ("resnet20", False), ("resnet20", True), ("transformer", False)]
    rec = Runner().run(RunConfig("resnet20", "synthetic", batch_size=8, warmup_steps=1,
                                 timed_steps=2, repeats=1, eval_samples=32, train_samples=64,
                                 channels_last=True))
    assert rec["status"] == "ok" and rec["channels_last"] is True


def test_flops_and_mfu_are_recorded():
    cfg = RunConfig("convnet", "synthetic", batch_size=32, warmup_steps=1, timed_steps=3,
                    repeats=2, eval_samples=32, train_samples=64)
    peaks = prepare_peaks([cfg])  # the sweep prepares the CPU's GEMM peak before the first config
    rec = Runner(peaks=peaks).run(cfg)
    assert rec["flops_per_step"] == 1_115_684_352  # conv + linear FLOPs, forward + backward
    assert rec["peak_flops_per_s"] > 0 and rec["peak_flops_source"].startswith("measured")
    assert rec["achieved_flops_per_s"] == pytest.approx(
        rec["flops_per_step"] / (rec["step_time_ms_median"] / 1e3))
    assert 0 < rec["mfu"] == pytest.approx(rec["achieved_flops_per_s"] / rec["peak_flops_per_s"])
    assert rec["energy_j"] is None and "NVML" in rec["telemetry_note"]
    json.dumps(rec)  # the record stays JSON-serialisable


@pytest.mark.long  # ~18 s: torchrun starting two whole `trainmark run` processes
def test_trainmark_run_under_an_external_torchrun_writes_from_rank_0_only(tmp_path):
    """The multi-node entry point: torchrun starts `harness run` itself on every rank."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "harness", "run", "--models", "convnet,transformer", *TINY, "--out", "w.jsonl"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(repo)})
    assert done.returncode == 0, done.stderr[-2000:]
    records = read_records(tmp_path / "w.jsonl")
    assert [r["model"] for r in records] == ["convnet", "transformer"]  # once each, not per rank
    assert all(r["status"] == "ok" and r["nproc"] == 2 for r in records)
    assert all(len(r["rank_step_time_ms_median"]) == 2 for r in records)
