"""What the memory fields of a record mean, checked against allocations of known size.

docs/method/isolation.md: ``peak_rss_bytes`` is the worker's own high-water
mark (Linux ``VmHWM``), ``rss_before_model_bytes`` the RSS once the data was in, and
``train_rss_bytes`` what building and training the model added to it; on accelerators
``dataset_device_bytes`` is the resident data and ``train_memory_allocated_bytes`` the
allocator's peak without it.

The expected figures come from the test's own arithmetic: ``test_ballast`` is ``test_linear``
holding ``BALLAST_MIB`` MiB more (written) from its first step (models/faults.py); a synthetic
image is 3x32x32 float32 with an int64 label. Host memory is noisy (allocator arenas, page
granularity), so the allocations are hundreds of MiB against a tolerance of tens.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.core.config import RunConfig
from harness.core.runner import Runner
from harness.probes.memory import (
    current_rss_bytes,
    peak_rss_bytes,
    reset_peak_rss,
    trim_host_heap,
)
from harness.store.jsonl import read_records
from models.faults import BALLAST_MIB

MiB = 2**20
BALLAST = BALLAST_MIB * MiB
NOISE = 24 * MiB  # host-memory tolerance: a tenth of the ballast
IMAGE_SAMPLE_BYTES = 3 * 32 * 32 * 4 + 8  # a synthetic image (float32) and its int64 label

TINY = ["--devices", "cpu", "--precisions", "fp32", "--optimizers", "sgd", "--batch-sizes", "4",
        "--steps", "2", "--warmup", "1", "--repeats", "1", "--eval-samples", "32", "--quiet",
        "--no-report"]

linux_proc = pytest.mark.skipif(not Path("/proc/self/status").exists(),
                                reason="reads VmHWM/VmRSS from Linux's /proc/self/status")


def status_bytes(field: str) -> int:
    """``field`` of /proc/self/status (``VmHWM:   123 kB``) in bytes, parsed here."""
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB$", text, re.MULTILINE)
    assert match, f"{field} missing from /proc/self/status"
    return int(match.group(1)) * 1024


@linux_proc
def test_peak_rss_is_vmhwm_and_reset_restarts_it_from_the_current_rss():
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("/proc/self/clear_refs is not writable here: the peak cannot be reset")
    ballast = torch.ones(BALLAST // 4)  # written: every page resident
    del ballast
    # Handed back to the OS: RSS falls, the high-water mark not. Explicitly: under the steady
    # heap policy (probes.host_heap, set by any earlier Runner here) a freed block stays.
    trim_host_heap()
    hwm, rss = status_bytes("VmHWM"), status_bytes("VmRSS")
    assert hwm - rss > BALLAST - NOISE  # the test's own premise

    # The probes read the same numbers (bracketed: reading may move them a little).
    assert hwm <= peak_rss_bytes() <= status_bytes("VmHWM")
    assert current_rss_bytes() == pytest.approx(rss, abs=4 * MiB)

    assert reset_peak_rss() is True
    hwm_after, rss_after = status_bytes("VmHWM"), status_bytes("VmRSS")
    assert hwm_after < hwm - (BALLAST - NOISE)  # the old peak is gone ...
    assert hwm_after - rss_after < 8 * MiB  # ... and the new one starts where the RSS is
    assert peak_rss_bytes() == pytest.approx(hwm_after, abs=4 * MiB)


@linux_proc
def test_record_memory_fields_measure_the_model_and_the_data_apart(tmp_path, monkeypatch):
    """Three isolated workers: the control model and the ballast model on a small dataset, and
    the control model on a dataset 10,000 samples (~117 MiB) large."""
    monkeypatch.chdir(tmp_path)
    small, large = 64, 10_000
    assert main(["run", "--models", "test_linear,test_ballast", *TINY,
                 "--train-samples", str(small), "--out", "small.jsonl"]) == 0
    assert main(["run", "--models", "test_linear", *TINY,
                 "--train-samples", str(large), "--out", "large.jsonl"]) == 0
    linear, ballast = read_records("small.jsonl")
    (big_data,) = read_records("large.jsonl")
    assert (linear["model"], ballast["model"]) == ("test_linear", "test_ballast")
    for rec in (linear, ballast, big_data):
        assert rec["status"] == "ok", rec["error"]
        assert rec["isolation"] == "process"
        # the worker's high-water mark holds at least what it held before the model plus
        # what building and training the model added
        assert rec["peak_rss_bytes"] >= rec["rss_before_model_bytes"] + rec["train_rss_bytes"]
        # on the CPU the data is host memory: no device figures (null, never 0)
        assert rec["dataset_device_bytes"] is None
        assert rec["train_memory_allocated_bytes"] is None

    # The ballast comes with the model's first step: training's addition, not the RSS before.
    assert ballast["train_rss_bytes"] - linear["train_rss_bytes"] == pytest.approx(BALLAST,
                                                                                  abs=NOISE)
    assert ballast["rss_before_model_bytes"] == pytest.approx(linear["rss_before_model_bytes"],
                                                              abs=NOISE)
    assert ballast["peak_rss_bytes"] - linear["peak_rss_bytes"] == pytest.approx(BALLAST,
                                                                                abs=NOISE)

    # The data is in the RSS before the model, and not in what training added, although
    # generating it briefly needed several times its size (which the fresh mark forgets).
    data_bytes = (large - small) * IMAGE_SAMPLE_BYTES
    assert big_data["rss_before_model_bytes"] - linear["rss_before_model_bytes"] == (
        pytest.approx(data_bytes, abs=NOISE))
    assert big_data["train_rss_bytes"] == pytest.approx(linear["train_rss_bytes"], abs=NOISE)


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="device-memory fields exist on accelerators only; no CUDA device here")
def test_cuda_records_the_data_apart_from_what_training_allocated():
    runner = Runner(run_id="memory-test")
    base = dict(device="cuda:0", batch_size=4, warmup_steps=1, timed_steps=2, repeats=1,
                min_time_s=0.0, eval_samples=32, train_samples=64)
    linear = runner.run(RunConfig(model="test_linear", dataset="synthetic", **base))
    ballast = runner.run(RunConfig(model="test_ballast", dataset="synthetic", **base))
    data_bytes = (64 + 32) * IMAGE_SAMPLE_BYTES  # train and held-out splits, on the device
    for rec in (linear, ballast):
        assert rec["status"] == "ok", rec["error"]
        assert rec["dataset_device_bytes"] == data_bytes
        assert rec["train_memory_allocated_bytes"] == (rec["peak_memory_allocated_bytes"]
                                                       - data_bytes)
    # The ballast is allocated on the device by the first step and held from then on; the
    # allocator counts it to the byte (blocks round to 512 B); all else of the two is the same.
    assert (ballast["train_memory_allocated_bytes"] - linear["train_memory_allocated_bytes"]
            == pytest.approx(BALLAST, abs=1 * MiB))
