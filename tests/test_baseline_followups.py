"""``trainmark baseline check``'s follow-ups, with the suite runs replaced by scripted records
(the runs themselves are tested end to end in test_compare_baselines.py): more runs while a
verdict is inconclusive, and a regression confirmed by fresh runs before it fails the check."""

from __future__ import annotations

import json

import pytest

import harness.execution.baselines as baselines
from harness.cli import main
from harness.execution.ab_run import confirm_batches

BASE = [100.0, 101.0, 102.0, 103.0, 104.0, 105.0]  # 2 runs x 3 repeats in the stored baseline
TINY = ["--models", "convnet", "--batch-sizes", "4", "--precisions", "fp32", "--optimizers",
        "sgd", "--steps", "2", "--warmup", "1", "--repeats", "3"]


def rec(samples: list[float]) -> dict:
    return {"model": "convnet", "dataset": "synthetic", "device": "cpu", "batch_size": 4,
            "precision": "fp32", "optimizer": "sgd", "status": "ok", "repeats": 3,
            "repeat_throughputs": samples, "throughput": sorted(samples)[1],
            "train_rss_bytes": 100 * 2**20, "eval_accuracy": 0.5, "num_threads": 1}


@pytest.fixture
def scripted(tmp_path, monkeypatch):
    """Each call of run_rounds takes the next scripted run(s); returns the call log."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bl").mkdir()
    (tmp_path / "bl" / "k.jsonl").write_text(
        "".join(json.dumps(rec(BASE[i:i + 3])) + "\n" for i in (0, 3)))
    monkeypatch.setattr(baselines, "this_machine_key", lambda threads: "k")
    monkeypatch.setattr(baselines, "key_of_records", lambda records, what: "k")
    script: list[list[float]] = []
    calls: list[tuple[str, int]] = []

    def run_rounds(source, flags, rounds, threads, out_dir, start=0):
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(start, start + rounds):
            path = out_dir / f"run-{i}.jsonl"
            path.write_text(json.dumps(rec(script.pop(0))) + "\n")
            paths.append(path)
        calls.append((out_dir.name, rounds))
        return paths

    monkeypatch.setattr(baselines, "run_rounds", run_rounds)
    return script, calls


def check(*flags: str) -> list[str]:
    return ["baseline", "check", "--dir", "bl", "--out-dir", "out", "--format", "json",
            *flags, *TINY]


def test_inconclusive_verdicts_get_more_runs_until_conclusive(scripted, capsys):
    script, calls = scripted
    # 20% slower every time: 6 + 3 separated samples give p = 2/C(9, 3) = 0.024, not yet below
    # 0.01; one more run (6 + 6: p = 2/C(12, 6) = 0.0022) makes it a regression
    script += [[80.0, 81.0, 82.0], [83.0, 84.0, 85.0]]
    code = main(check("--rounds", "1", "--confirm", "0"))
    result = json.loads(capsys.readouterr().out)
    assert calls == [("out", 1), ("out", 1)]
    assert result["rows"][0]["verdict"] == "regression" and code == 1
    assert result["rows"][0]["throughput"]["n_candidate"] == 6


def test_a_regression_that_fresh_runs_do_not_reproduce_is_inconclusive(scripted, capsys):
    script, calls = scripted
    script += [[80.0, 81.0, 82.0], [83.0, 84.0, 85.0],  # the check: clearly slower
               [101.0, 102.0, 103.0], [104.0, 100.5, 102.5]]  # the confirmation: not
    code = main(check("--rounds", "2", "--extra-time", "0"))
    row = json.loads(capsys.readouterr().out)["rows"][0]
    assert calls == [("out", 2), ("confirm-1", 2)]
    assert row["verdict"] == "inconclusive" and row["confirmed"] is False
    assert row["confirmations"] == ["no change"] and code == 3


def test_a_reproduced_regression_fails_the_check_as_confirmed(scripted, capsys):
    script, calls = scripted
    script += [[80.0, 81.0, 82.0], [83.0, 84.0, 85.0], [79.0, 80.5, 81.5], [82.5, 83.5, 84.5]]
    code = main(check("--rounds", "2", "--extra-time", "0"))
    row = json.loads(capsys.readouterr().out)["rows"][0]
    assert (row["verdict"], row["confirmed"], code) == ("regression", True, 1)
    assert "confirmed by 1 fresh re-measurement(s)" in row["why"]


def test_confirm_batches_stop_for_a_config_at_its_first_miss():
    seen = []

    def measure(k, todo):
        seen.append((k, [c["m"] for c in todo]))
        verdicts = {1: {"a": "regression", "b": "no change"}, 2: {"a": "regression"}}[k]
        # batch 1 measured a's throughput (b's row has none, as a failed config's would not)
        tp = {"change": -0.04, "p_value": 0.02, "strata": 8, "n_candidate": 24, "test": "t",
              "ci_low": -0.06}
        return {"rows": [{"config": {"m": m}, "verdict": v,
                          **({"throughput": tp} if (k, m) == (1, "a") else {})}
                         for m, v in verdicts.items()]}

    found = confirm_batches([{"m": "a"}, {"m": "b"}], 2, measure)
    assert seen == [(1, ["a", "b"]), (2, ["a"])]  # b left after missing batch 1
    # each batch's throughput figures are kept for the verdict's why (no interval: not needed)
    kept = {"change": -0.04, "p_value": 0.02, "strata": 8, "n_candidate": 24, "test": "t"}
    assert found == [{"config": {"m": "a"}, "verdicts": ["regression", "regression"],
                      "throughput": [kept]},
                     {"config": {"m": "b"}, "verdicts": ["no change"], "throughput": []}]
