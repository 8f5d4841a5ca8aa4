"""pytest-benchmark JSON files through ``load_results`` and ``compare``."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import UserError
from harness.store.frame import load_results
from harness.store.jsonl import read_records
from tests.test_compare import record

REPO = Path(__file__).resolve().parent.parent
MACHINE = {"node": "ci-1", "python_version": "3.11.7", "cpu": {"brand_raw": "Test CPU"},
           "device_name": "Test CPU", "torch_version": "2.14.1", "num_threads": 1}


def bench_file(path, benches, machine=MACHINE):
    doc = {"machine_info": machine,
           "commit_info": {"id": "f00d", "dirty": True, "branch": "main"},
           "benchmarks": benches, "datetime": "2026-11-29T00:00:00+00:00", "version": "5.2.3"}
    path.write_text(json.dumps(doc, indent=4))  # pretty-printed, as pytest-benchmark writes
    return str(path)


def trainmark_bench(rec):
    return {"group": "convnet", "name": "test_training[convnet-fp32-sgd]",
            "fullname": "benchmarks/test_training.py::test_training[convnet-fp32-sgd]",
            "params": {"grid": ["convnet", "fp32", "sgd"]}, "param": "convnet-fp32-sgd",
            "extra_info": rec, "options": {"rounds": 2},
            "stats": {"min": 1.0, "median": 1.1, "iqr": 0.1, "ops": 0.9, "rounds": 2,
                      "mean": 1.1}}


def test_trainmark_benchmarks_carry_the_harness_record(tmp_path):
    path = bench_file(tmp_path / "0001_x.json", [trainmark_bench(record())])
    (rec,) = read_records(path)
    assert rec["model"] == "convnet" and rec["repeat_throughputs"] == record()["repeat_throughputs"]
    assert rec["benchmark_name"].endswith("test_training[convnet-fp32-sgd]")
    frame = load_results([path])
    assert frame["throughput"].iloc[0] == 1000.0 and frame["status"].iloc[0] == "ok"


def test_compare_reads_benchmark_files_and_jsonl_together(tmp_path, capsys):
    base = bench_file(tmp_path / "0001_base.json", [trainmark_bench(record())])
    cand = tmp_path / "cand.jsonl"
    cand.write_text(json.dumps(record(factor=0.8)) + "\n")
    assert main(["compare", base, str(cand)]) == 1
    assert "regression (throughput)" in capsys.readouterr().out


def test_foreign_benchmarks_become_minimal_records(tmp_path):
    bench = {"name": "test_parse", "fullname": "tests/test_x.py::test_parse", "extra_info": {},
             "stats": {"median": 0.002, "iqr": 0.0001, "ops": 480.0,
                       "data": [0.002, 0.0021, 0.0019, 0.002, 0.00205]}}
    no_data = dict(bench, name="test_other", fullname="tests/test_x.py::test_other",
                   stats={"median": 0.5, "iqr": 0.01})
    path = bench_file(tmp_path / "b.json", [bench, no_data])
    recs = read_records(path)
    assert recs[0]["benchmark"] == "tests/test_x.py::test_parse"
    assert recs[0]["throughput"] == pytest.approx(500.0) and recs[0]["throughput_unit"] == "calls/s"
    assert len(recs[0]["repeat_throughputs"]) == 5
    assert recs[1]["repeat_throughputs"] is None and recs[1]["throughput"] == pytest.approx(2.0)
    # provenance from machine_info and commit_info
    assert recs[0]["host"] == "ci-1" and recs[0]["cpu_model"] == "Test CPU"
    assert recs[0]["git_commit"] == "f00d-dirty"
    assert load_results([path])["benchmark"].tolist() == [
        "tests/test_x.py::test_parse", "tests/test_x.py::test_other"]


def test_foreign_benchmarks_compare_by_name(tmp_path, capsys):
    def doc(name, scale):
        data = [scale * t for t in (0.010, 0.0101, 0.0099, 0.01005, 0.00995)]
        return {"name": "t", "fullname": name, "extra_info": {},
                "stats": {"median": sorted(data)[2], "iqr": 0.0, "data": data}}
    base = bench_file(tmp_path / "a.json", [doc("t::a", 1.0), doc("t::b", 1.0)])
    cand = bench_file(tmp_path / "b.json", [doc("t::a", 1.25), doc("t::b", 1.0)])
    assert main(["compare", base, cand]) == 1  # t::a takes 25% longer: 20% fewer calls/s
    out = capsys.readouterr().out
    assert "REGRESSION t::a" in out and "1 no change" in out


def test_a_json_file_that_is_not_pytest_benchmark_is_read_as_json_lines(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps(record()) + "\n")
    assert read_records(path)[0]["model"] == "convnet"
    bad = tmp_path / "bad.json"
    bad.write_text('{"benchmarks": {"not": "a list"}}')
    with pytest.raises(UserError, match="'benchmarks' is not a list"):
        read_records(bad)
    bad.write_text('{"benchmarks": [{"name": "x"}]}')
    with pytest.raises(UserError, match="has no 'stats' object"):
        read_records(bad)


@pytest.mark.slow
def test_benchmark_suite_saves_files_that_compare_reads(tmp_path, capsys):
    """The real pytest-benchmark run: one generated benchmark, --benchmark-json and
    --benchmark-autosave, machine info from the conftest hook, then ``trainmark compare``."""
    out = tmp_path / "bench.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(REPO / "benchmarks" / "test_training.py"), "-k", "convnet-fp32-sgd",
         "--bench-rounds", "1", f"--benchmark-json={out}", "--benchmark-autosave",
         f"--benchmark-storage=file://{tmp_path / 'storage'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["machine_info"]["torch_version"] and doc["machine_info"]["num_threads"] == 1
    assert "device_name" in doc["machine_info"] and "driver_version" in doc["machine_info"]
    (bench,) = doc["benchmarks"]
    assert bench["extra_info"]["status"] == "ok"
    assert len(bench["extra_info"]["repeat_throughputs"]) == 3  # 1 round x 3 repeats
    saved = list((tmp_path / "storage").rglob("0001_*.json"))
    assert len(saved) == 1
    frame = load_results([saved[0]])
    assert frame["model"].tolist() == ["convnet"] and frame["throughput"].iloc[0] > 0
    # The two files hold the same run: identical samples, 3 a side, so no change at all and
    # no verdict possible (smallest two-sided Mann-Whitney p: 2 / C(6, 3) = 0.1): inconclusive,
    # exit 3 (0 only when inconclusive verdicts are allowed through).
    capsys.readouterr()
    assert main(["compare", str(out), str(saved[0]), "--allow-inconclusive"]) == 0
    capsys.readouterr()
    assert main(["compare", str(out), str(saved[0]), "--format", "json"]) == 3
    result = json.loads(capsys.readouterr().out)
    (row,) = result["rows"]
    assert result["summary"]["exit_status"] == 3 and result["summary"]["inconclusive"] == 1
    assert row["verdict"] == "inconclusive" and row["failed"] == []
    assert row["throughput"]["change"] == 0.0 and row["throughput"]["p_value"] is None
    assert "smallest possible p is 0.1," in row["throughput"]["reason"]
    assert row["memory"]["verdict"] == "no change" and row["accuracy"]["change"] == 0.0


def test_benchmark_grid_comes_from_the_registry():
    from benchmarks import test_training as tt
    from models import list_models

    slow = {"resnet18", "resnet50", "vit_b_16", "gpt2",  # seconds per step on a CPU
            "llama3.2-1b", "llama3.2-3b", "llama3.1-8b", "llama3.1-70b",  # minutes,
            "llama3.1-405b"}  # or no fit
    assert tt.bench_models(None) == [m for m in list_models() if m not in slow]
    assert tt.bench_models("all") == list_models()
    assert tt.bench_models("convnet, transformer") == ["convnet", "transformer"]
    cfg = tt.make_config("transformer", "amp", "adam")
    assert (cfg.model, cfg.optimizer, cfg.batch_size, cfg.repeats) == ("transformer", "adam", 4, 3)
    assert cfg.precision in ("amp-bf16", "amp-fp16") and cfg.dataset == "synthetic-text"
    merged = tt.merge_rounds([record(repeat_throughputs=[1.0, 2.0]),
                              record(repeat_throughputs=[3.0, 4.0, 5.0])])
    assert merged["repeat_throughputs"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert merged["throughput"] == 3.0 and merged["benchmark_rounds"] == 2
    failed = tt.merge_rounds([record(), record(status="oom", error="OOM")])
    assert failed["status"] == "oom" and failed["error"] == "OOM"
