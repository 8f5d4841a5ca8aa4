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


@pytest.mark.slow
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

    # 6 baseline samples vs 3 candidate samples: cannot reach p < 0.01, so never a regression
    code = main(["baseline", "check", "--rounds", "1", "--dir", str(base_dir),
                 "--out-dir", str(tmp_path / "check"), "--format", "json", *TINY])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["summary"]["configs"] == 1
    assert result["rows"][0]["throughput"]["n_baseline"] == 6
    assert (tmp_path / "check" / "verdict.md").is_file()
