"""Under an external launcher each config's ranks run in fresh workers (issue 29, review item
5): a hung config is a ``timeout`` record at the sweep's ``--timeout`` and a crashed one a
``crashed`` record, and the sweep goes on to the next config, which is measured ``ok``. Before,
every config ran in the launched processes themselves: no timeout, and state carried over."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.store.jsonl import read_records

REPO = Path(__file__).resolve().parent.parent
TINY = ["--devices", "cpu", "--precisions", "fp32", "--optimizers", "sgd", "--steps", "2",
        "--warmup", "1", "--repeats", "1", "--eval-samples", "16", "--train-samples", "64",
        "--batch-sizes", "8", "--quiet"]


@pytest.mark.long
@pytest.mark.slow
def test_external_torchrun_config_timeout_and_crash_are_records(tmp_path):
    """Two ranks under torchrun: a hung config is a timeout record (both ranks' workers
    killed), a crashing one a crashed record, and the next config ok with nproc 2."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "harness", "run", "--models", "test_hang,test_segfault,test_linear", *TINY,
           "--timeout", "15", "--out", "w.jsonl", "--no-report"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-2000:]
    recs = {r["model"]: r for r in read_records(tmp_path / "w.jsonl")}
    assert recs["test_hang"]["status"] == "timeout", recs["test_hang"]
    assert recs["test_segfault"]["status"] == "crashed", recs["test_segfault"]
    assert recs["test_linear"]["status"] == "ok" and recs["test_linear"]["nproc"] == 2
    assert len(recs["test_linear"]["rank_step_time_ms_median"]) == 2
