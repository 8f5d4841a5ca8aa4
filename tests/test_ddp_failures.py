"""A DDP run (``--nproc 2``: torch.distributed.run, gloo on the CPU) whose rank 1 fails after the
last collective, once rank 0 has trained, evaluated and written an ok record: the run as a whole
did not succeed, so the sweep must record a failure and not hang. (That a sweep goes on after a
failed record is tests/test_isolation.py's; a second DDP launch here would double the time.)

(A rank that dies before any collective is tests/test_scaling.py's case.)"""

from __future__ import annotations

from harness.cli import main
from harness.store.jsonl import read_records

TINY = ["--devices", "cpu", "--precisions", "fp32", "--optimizers", "sgd", "--steps", "2",
        "--warmup", "1", "--repeats", "1", "--eval-samples", "32", "--train-samples", "64",
        "--batch-sizes", "4", "--quiet", "--no-report"]


def test_a_rank_failing_after_the_last_collective_is_a_failed_record(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRAINMARK_DIST_TIMEOUT_S", "30")  # a hang would end as a timeout error
    assert main(["run", "--models", "test_rank_exit_late", "--nproc", "2", *TINY,
                 "--out", "d.jsonl"]) == 0
    (late,) = read_records("d.jsonl")
    assert (late["model"], late["nproc"]) == ("test_rank_exit_late", 2)
    # rank 0 alone was fine; torchrun saw rank 1 exit with status 3 (models/faults.py)
    assert late["status"] == "error", late
    assert "rank 1" in late["error"] and "exit code 3" in late["error"], late["error"]
