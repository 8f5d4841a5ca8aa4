"""Every record names the suite its sweep was expanded from (``suite``): ``trainmark run``
stamps it, a dead fleet job's records and A/B records get it from the side that knows it,
older records load with null, and it never splits one config into two for ``compare``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd

from harness.cli import main
from harness.core.config import RunConfig
from harness.core.suites import load_suite, merge_settings
from harness.execution.ab import Sweep
from harness.execution.executor import JobRequest, JobState, Partition
from harness.execution.fleet import settle
from harness.execution.fleet_plan import FleetRequest, load_jobs, plan, record_submitted
from harness.store.frame import load_results
from harness.store.jsonl import fill_missing, read_records

# One convnet config of a few steps, in this process: a run takes about a second.
TINY = ["--models", "convnet", "--batch-sizes", "4", "--precisions", "fp32", "--optimizers",
        "sgd", "--devices", "cpu", "--steps", "2", "--warmup", "1", "--repeats", "2",
        "--eval-samples", "32", "--train-samples", "64", "--isolation", "none", "--no-report",
        "--quiet"]


def test_a_run_records_the_suite_it_was_run_with(workdir: Path) -> None:
    out = workdir / "default.jsonl"
    assert main(["run", *TINY, "--out", str(out)]) == 0  # run's default suite is quick
    assert [r["suite"] for r in read_records(out)] == ["quick"]

    out = workdir / "ci.jsonl"
    assert main(["run", "--suite", "ci", *TINY, "--out", str(out)]) == 0
    assert [r["suite"] for r in read_records(out)] == ["ci"]

    # A suite of one's own, given by path: named by its file, not by the folder it is in
    own = workdir / "conf" / "nightly-gpu.toml"
    own.parent.mkdir()
    own.write_text('description = "ours"\nmodels = ["convnet"]\n')
    out = workdir / "own.jsonl"
    assert main(["run", "--suite", str(own), *TINY, "--out", str(out)]) == 0
    (rec,) = read_records(out)
    assert rec["suite"] == "nightly-gpu" and rec["status"] == "ok"


def _record(**over: object) -> dict:
    rec = {"schema_version": 1, "run_id": "r", "record_id": "a",
           "timestamp": "2026-01-01T00:00:00+00:00", "model": "convnet",
           "dataset": "synthetic", "device": "cpu", "batch_size": 8, "status": "ok",
           "throughput": 100.0}
    rec.update(over)
    return rec


def test_records_from_before_the_field_load_with_null(tmp_path: Path) -> None:
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps(_record()) + "\n")
    frame = load_results([old])
    assert str(frame["suite"].dtype) == "string"
    assert frame["suite"].isna().all()
    new = tmp_path / "new.jsonl"
    new.write_text(json.dumps(_record(record_id="b", suite="ci")) + "\n")
    both = load_results([old, new]).set_index("record_id")
    assert pd.isna(both.loc["a", "suite"]) and both.loc["b", "suite"] == "ci"


def test_one_config_from_two_suites_is_still_one_config_for_compare(
        tmp_path: Path, capsys) -> None:
    samples = [100.0, 101.0, 99.0, 100.5, 99.5]
    common = {"repeat_throughputs": samples, "throughput_unit": "samples/s", "repeats": 5,
              "device_name": "Test CPU", "cpu_model": "Test CPU", "torch_version": "2.0",
              "num_threads": 1}
    base, cand = tmp_path / "base.jsonl", tmp_path / "cand.jsonl"
    base.write_text(json.dumps(_record(suite="quick", **common)) + "\n")
    cand.write_text(json.dumps(_record(record_id="b", suite="ci", **common)) + "\n")
    assert main(["compare", str(base), str(cand)]) == 0
    out = capsys.readouterr().out
    assert "1 no change" in out and "unmatched" not in out.lower()


def test_a_dead_fleet_jobs_records_name_the_suite_through_the_manifest(tmp_path: Path) -> None:
    settings = merge_settings(load_suite("smoke"), {"devices": ["cpu"], "nproc": [1]})
    request = FleetRequest(out_dir=tmp_path, partitions=("cpu",), settings=settings,
                           run_argv=("--suite", "smoke"), job=JobRequest("t", ""),
                           suite="smoke")
    (slot,) = plan(request, {"cpu": Partition("cpu", ("n1",), 0, None)})
    record_submitted(tmp_path, "41", "slurm", slot, {"code_digest": "d", "code_identity": "i"})
    (job,) = load_jobs(tmp_path)  # as a later `fleet status` reads it back
    lost = settle(tmp_path, "slurm", job, JobState("41", "NODE_FAIL", "", "n1"))
    records = read_records(slot.results)
    assert len(records) == len(lost) == len(slot.todo) > 0
    assert {r["suite"] for r in records} == {"smoke"}
    assert {r["recorded_by"] for r in records} == {"fleet"}


def test_a_manifest_from_before_the_field_settles_with_a_null_suite(tmp_path: Path) -> None:
    cfg = RunConfig(model="convnet", dataset="synthetic")
    manifest = tmp_path / "fleet" / "jobs.jsonl"
    manifest.parent.mkdir()
    manifest.write_text(json.dumps({
        "event": "submitted", "job_id": "7", "executor": "slurm", "slot": "cpu",
        "partition": "cpu", "results": "cpu.jsonl", "submitted": "2026-01-01T00:00:00+00:00",
        "configs": [dataclasses.asdict(cfg)]}) + "\n")
    (job,) = load_jobs(tmp_path)
    settle(tmp_path, "slurm", job, JobState("7", "CANCELLED", "", None))
    (rec,) = read_records(tmp_path / "cpu.jsonl")
    assert rec["suite"] is None and rec["model"] == "convnet"


def test_ab_names_the_suite_by_its_file_whichever_tree_runs_it() -> None:
    # ab hands both trees the suite's absolute path; the records carry its name
    sweep = Sweep({"suite": "/somewhere/harness/suites/ci.toml"}, ["--suite", "x"])
    assert sweep.suite == "ci"
    assert Sweep({}, []).suite is None  # a request without a suite file names none


def test_records_of_an_older_tree_get_the_suite_it_did_not_record(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    lines = [_record(record_id="a"), _record(record_id="b", suite="ci"),
             _record(record_id="c", suite=None)]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert fill_missing(path, {"suite": "quick"}) == 2
    assert [(r["record_id"], r["suite"]) for r in read_records(path)] == \
        [("a", "quick"), ("b", "ci"), ("c", "quick")]
    before = path.read_bytes()
    assert fill_missing(path, {"suite": "other"}) == 0  # nothing lacking: left as it was
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.jsonl"]
