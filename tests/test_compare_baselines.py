"""Stored baselines: ``trainmark baseline record | check | path`` and the machine key."""

import json

import pytest

from harness.cli import main
from harness.execution.baselines import machine_key

TINY = ["--models", "convnet", "--batch-sizes", "4", "--precisions", "fp32", "--optimizers",
        "sgd", "--steps", "2", "--warmup", "1", "--repeats", "3", "--eval-samples", "32",
        "--train-samples", "64"]


def test_machine_key_is_file_name_safe_and_names_device_torch_and_threads():
    assert machine_key({"device_name": "NVIDIA H100 80GB HBM3", "torch_version": "2.14.1+cu130",
                        "num_threads": 8}) == "nvidia-h100-80gb-hbm3-torch2.14.1-cu130-8t"
    assert machine_key({"cpu_model": "AMD EPYC 7B13 / x", "torch_version": None}) == \
        "amd-epyc-7b13-x-torchunknown"


@pytest.mark.long  # ~35 s: three recording runs, then a check with its own runs
def test_record_then_check_then_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base_dir = tmp_path / "baselines"
    assert main(["baseline", "check", "--dir", str(base_dir), *TINY]) == 2
    assert "no baseline for this machine" in capsys.readouterr().err

    assert main(["baseline", "record", "--rounds", "2", "--dir", str(base_dir), *TINY]) == 0
    out = capsys.readouterr().out
    (path,) = base_dir.glob("*.jsonl")
    assert path.name.endswith("-1t.jsonl") and f"in {path}" in out
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 2 and {r["num_threads"] for r in records} == {1}

    assert main(["baseline", "path", "--dir", str(base_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(path)
    assert main(["baseline", "path", "--dir", str(base_dir), str(path)]) == 0
    assert capsys.readouterr().out.strip() == str(path)

    # 6 baseline samples (2 rounds x 3 repeats) vs 3 candidate samples: the smallest two-sided
    # Mann-Whitney p is 2 / C(9, 3) = 2 / 84 = 0.024, never below alpha 0.01: inconclusive,
    # which fails the gate with its own status (no extra runs asked for).
    code = main(["baseline", "check", "--rounds", "1", "--extra-time", "0", "--dir",
                 str(base_dir), "--out-dir", str(tmp_path / "check"), "--format", "json", *TINY])
    result = json.loads(capsys.readouterr().out)
    assert code == 3 and result["summary"]["configs"] == 1
    throughput = result["rows"][0]["throughput"]
    assert (throughput["n_baseline"], throughput["n_candidate"]) == (6, 3)
    assert throughput["verdict"] == "inconclusive" and throughput["p_value"] is None
    assert "smallest possible p is 0.0238" in throughput["reason"]
    assert (tmp_path / "check" / "verdict.md").is_file()

    # A clear regression with samples enough to show it: 6 repeats in one round against the
    # baseline's 6 reach p = 2 / C(12, 6) = 2 / 924 = 0.0022 when no sample overlaps (and stay
    # below 0.01 with up to two of the 36 pairs swapped: 8 / 924 = 0.0087). The test-only knob
    # sleeps 3x each timed step, so the candidate runs at <= 1/4 of the baseline's pace.
    monkeypatch.setenv("TRAINMARK_INJECT_SLOWDOWN", "3")
    code = main(["baseline", "check", "--rounds", "1", "--extra-time", "0", "--confirm", "0",
                 "--dir", str(base_dir), "--out-dir", str(tmp_path / "slow"), "--format", "json",
                 *TINY, "--repeats", "6"])
    result = json.loads(capsys.readouterr().out)
    assert code == 1 and result["summary"]["exit_status"] == 1
    (row,) = result["rows"]
    # (twice the timed steps may also move the accuracy of 32 eval samples: not judged here)
    assert row["verdict"] == "regression" and "throughput" in row["failed"]
    throughput = row["throughput"]
    assert throughput["verdict"] == "regression"
    assert (throughput["n_baseline"], throughput["n_candidate"]) == (6, 6)
    assert 2 / 924 - 1e-12 <= throughput["p_value"] < 0.01
    assert throughput["change"] < -0.5
