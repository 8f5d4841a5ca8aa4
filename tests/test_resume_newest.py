"""``trainmark run --resume`` without ``--out``: ``--help`` says it continues the newest results
file (``results/*.jsonl``, the ad-hoc runs; committed examples and baselines live in named
subfolders and are never resumed). With no results file at all it is a usage error
(tests/test_bad_input.py, case ``run-resume-nothing``)."""

from __future__ import annotations

import os

from harness.cli import main
from harness.store.jsonl import read_records

TINY = ["--models", "convnet", "--devices", "cpu", "--precisions", "fp32", "--optimizers", "sgd",
        "--steps", "2", "--warmup", "1", "--repeats", "1", "--eval-samples", "32",
        "--train-samples", "64", "--quiet", "--no-report"]


def test_resume_without_out_continues_the_newest_results_file(workdir, capsys):
    results = workdir / "results"
    newest = results / "newest.jsonl"
    assert main(["run", *TINY, "--batch-sizes", "4", "--out", str(newest)]) == 0
    (first,) = read_records(newest)
    assert first["status"] == "ok" and first["batch_size"] == 4

    # An older ad-hoc file, and a committed example that is newer than both.
    older = results / "older.jsonl"
    older.write_text('{"model": "convnet", "status": "ok", "run_id": "older-run"}\n')
    example = results / "examples" / "committed.jsonl"
    example.parent.mkdir()
    example.write_text('{"model": "convnet", "status": "ok", "run_id": "example-run"}\n')
    t = newest.stat().st_mtime
    os.utime(older, (t - 100, t - 100))
    os.utime(example, (t + 100, t + 100))
    before = {p: p.read_bytes() for p in (older, example)}
    capsys.readouterr()

    assert main(["run", *TINY, "--batch-sizes", "4,8", "--resume"]) == 0
    assert f"resuming {newest.relative_to(workdir)}: 1 configs already ok, 1 to run" in (
        capsys.readouterr().err)
    records = read_records(newest)
    assert [(r["batch_size"], r["status"]) for r in records] == [(4, "ok"), (8, "ok")]
    assert {r["run_id"] for r in records} == {first["run_id"]}  # the resumed run's id
    # nothing else was written: not the older file, not the example, no new results file
    assert {p: p.read_bytes() for p in (older, example)} == before
    assert sorted(p.name for p in results.glob("*.jsonl")) == ["newest.jsonl", "older.jsonl"]
