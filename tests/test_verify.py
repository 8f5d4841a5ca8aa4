"""``trainmark verify``: the throughput judgement (``analysis.verify.compare_throughput``), its
options, its output and the confirmation reruns of a regression. (The end-to-end claim
"record, then verify at once: no false failure" is a timing benchmark run by hand,
``benchmarks/verify_evidence.py``, not a test: it fails whenever the machine is loaded.)

Expected verdicts and p-values are worked out by hand here (the exact two-sided Mann-Whitney U
p of two fully separated samples of 5 is 2 / C(10, 5) = 2/252) or taken from scipy directly.
"""

from __future__ import annotations

import json

import pytest
from scipy import stats as sps

from harness.analysis.verify import Check, compare_throughput
from harness.cli import main
from harness.core.config import RunConfig

RECORDED = [100.0, 101.0, 102.0, 103.0, 104.0]  # median 102


def rec(samples: list[float] | None, status: str = "ok", **extra: object) -> dict:
    return {"status": status, "repeat_throughputs": samples, **extra}


def check(throughput: str, quality: str = "exact") -> Check:
    return Check("id", "label", False, "ok", quality, throughput, "")


# ------------------------------------------------------------------ the judgement

def test_a_separated_20_percent_drop_of_5_repeats_is_a_regression():
    replay = [0.8 * x for x in RECORDED]  # every replay below every recorded repeat
    t = compare_throughput(rec(RECORDED), rec(replay))
    assert t.verdict == "regression"
    assert t.p_value == pytest.approx(2 / 252)  # the only two most extreme of 252 rankings
    assert t.change == pytest.approx(81.6 / 102 - 1)  # -20%
    assert not check(t.verdict).reproduced


def test_the_false_alarm_of_the_issue_is_inconclusive_and_passes():
    # "throughput 1,706 vs recorded [2,307, 2,430]": 2 + 2 repeats can never give p below
    # 2 / C(4, 2) = 1/3, so a 28% drop is too noisy to call, not a failure.
    t = compare_throughput(rec([2307.0, 2430.0]), rec([1690.0, 1722.0]))
    assert t.verdict == "inconclusive" and t.p_value is None
    assert t.change == pytest.approx(1706 / 2368.5 - 1)
    assert "1,706 (n=2) vs recorded" in t.detail and "too few samples" in t.detail
    assert check(t.verdict).reproduced


def test_two_recorded_repeats_against_five_replayed_are_still_inconclusive():
    t = compare_throughput(rec([2307.0, 2430.0]), rec([1700.0, 1703.0, 1706.0, 1710.0, 1712.0]))
    assert t.verdict == "inconclusive"  # smallest p is 2 / C(7, 2) = 0.095 > 0.01
    assert check(t.verdict).reproduced


def test_equal_distributions_reproduce():
    t = compare_throughput(rec(RECORDED), rec(list(RECORDED)))
    assert (t.verdict, t.change, t.p_value) == ("no change", 0.0, 1.0)  # U at its null mean
    interleaved = [101.0, 103.0, 105.0, 107.0, 109.0]
    base = [100.0, 102.0, 104.0, 106.0, 108.0]
    t = compare_throughput(rec(base), rec(interleaved))
    assert t.verdict == "no change"
    assert t.p_value == pytest.approx(sps.mannwhitneyu(base, interleaved, method="exact").pvalue)
    assert t.change == pytest.approx(105 / 104 - 1)
    assert check(t.verdict).reproduced


def test_an_improvement_reproduces():
    t = compare_throughput(rec(RECORDED), rec([1.2 * x for x in RECORDED]))
    assert t.verdict == "improvement" and t.p_value == pytest.approx(2 / 252)
    assert check(t.verdict).reproduced


def test_a_significant_drop_within_the_threshold_is_no_change_until_the_threshold_shrinks():
    replay = [95.0, 95.5, 96.0, 96.5, 97.0]  # below every recorded repeat, median -5.9%
    assert compare_throughput(rec(RECORDED), rec(replay)).verdict == "no change"
    assert compare_throughput(rec(RECORDED), rec(replay), threshold=0.05).verdict == "regression"


def test_alpha_is_honoured():
    # At alpha 0.005 five + five repeats can never be significant (smallest p 0.0079).
    t = compare_throughput(rec(RECORDED), rec([0.8 * x for x in RECORDED]), alpha=0.005)
    assert t.verdict == "inconclusive" and t.p_value is None


def test_a_large_drop_that_is_not_significant_is_inconclusive():
    base, replay = [90.0, 100.0, 110.0, 120.0, 130.0], [70.0, 80.0, 95.0, 125.0, 135.0]
    t = compare_throughput(rec(base), rec(replay))
    assert t.change == pytest.approx(95 / 110 - 1)  # -13.6%, beyond 10%
    assert t.p_value == pytest.approx(sps.mannwhitneyu(base, replay, method="exact").pvalue)
    assert t.verdict == "inconclusive" and check(t.verdict).reproduced


def test_no_samples_is_not_applicable_and_failed_runs_have_none():
    assert compare_throughput(rec(None), rec(RECORDED)).verdict == "n/a"
    assert compare_throughput(rec(RECORDED), rec(RECORDED, status="oom")).verdict == "n/a"
    both_failed = compare_throughput(rec(None, status="oom"), rec(None, status="oom"))
    assert both_failed.verdict == "n/a" and check(both_failed.verdict).reproduced


def test_a_record_without_repeats_falls_back_to_its_median():
    old = {"status": "ok", "throughput": 102.0}  # an older record: the median only
    t = compare_throughput(old, rec([0.8 * x for x in RECORDED]))
    assert t.verdict == "inconclusive" and t.change == pytest.approx(81.6 / 102 - 1)


def test_quality_still_decides_on_its_own():
    assert not check("no change", quality="differs").reproduced
    assert check("no change", quality="within tolerance").reproduced


# ------------------------------------------------------------------ the command

CFG = RunConfig(model="convnet", dataset="synthetic")


class FakeReplays(list):
    """The record pairs ``replay()`` returns, in order; ``reruns[record_id]`` holds the new
    records that confirmation reruns of that record get, one per call (by default the pair's
    own new record again: a persistent change)."""

    def __init__(self) -> None:
        super().__init__()
        self.reruns: dict[str, list[dict]] = {}
        self.calls: list[str | None] = []

    def replay(self, path: str, rid: str | None, *args: object) -> list:
        self.calls.append(rid)
        if rid is None:
            return list(self)
        [(old, new, cfg)] = [p for p in self if p[0]["record_id"] == rid]
        queue = self.reruns.get(rid)
        return [(old, queue.pop(0) if queue else new, cfg)]


@pytest.fixture
def fake_replay(monkeypatch):
    """verify without training: replay() returns the record pairs a test sets."""
    import harness.execution.replay as replay_mod

    fake = FakeReplays()
    monkeypatch.setattr(replay_mod, "replayable", lambda path, rid: [])
    monkeypatch.setattr(replay_mod, "replay", fake.replay)
    return fake


def pair(rid: str, old: list[float], new: list[float]) -> tuple[dict, dict, RunConfig]:
    quality = {"deterministic": False, "eval_accuracy": 0.5, "eval_loss": 1.0}
    return ({**rec(old), "record_id": rid, **quality}, {**rec(new), **quality}, CFG)


def test_text_output_is_one_line_per_config_and_fails_only_on_a_regression(fake_replay,
                                                                          capsys):
    fake_replay += [pair("slow", RECORDED, [0.8 * x for x in RECORDED]),
                    pair("noisy", [2307.0, 2430.0], [1690.0, 1722.0]),
                    pair("same", RECORDED, RECORDED)]
    assert main(["verify", "r.jsonl"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and lines[3] == ""  # three configs, a blank line, the count
    assert lines[0].startswith("FAIL slow") and "throughput regression" in lines[0]
    assert lines[1].startswith("OK   noisy") and "throughput inconclusive" in lines[1]
    assert lines[2].startswith("OK   same") and "throughput no change" in lines[2]
    assert lines[4] == "2 of 3 configs reproduce (1 with inconclusive throughput)"


def test_json_output_carries_verdict_p_value_and_change(fake_replay, capsys):
    fake_replay += [pair("slow", RECORDED, [0.8 * x for x in RECORDED]),
                    pair("noisy", [2307.0, 2430.0], [1690.0, 1722.0])]
    assert main(["verify", "r.jsonl", "--format", "json"]) == 1
    slow, noisy = json.loads(capsys.readouterr().out)
    assert slow["throughput"] == "regression" and slow["reproduced"] is False
    assert slow["throughput_p_value"] == pytest.approx(2 / 252)
    assert slow["throughput_change"] == pytest.approx(-0.2)
    assert (slow["throughput_threshold"], slow["alpha"]) == (0.10, 0.01)
    assert noisy["throughput"] == "inconclusive" and noisy["reproduced"] is True
    assert noisy["throughput_p_value"] is None and "too few samples" in noisy["throughput_reason"]


@pytest.mark.parametrize("flags, code", [([], 0), (["--throughput-threshold", "5%"], 1),
                                         (["--throughput-threshold", "5"], 1),
                                         (["--throughput-tolerance", "0.05"], 1),
                                         (["--alpha", "0.005"], 0)])
def test_threshold_alpha_and_the_deprecated_tolerance(fake_replay, capsys, flags, code):
    fake_replay.append(pair("a", RECORDED, [95.0, 95.5, 96.0, 96.5, 97.0]))  # -5.9%, p=2/252
    assert main(["verify", "r.jsonl", *flags]) == code
    err = capsys.readouterr().err
    assert ("deprecated" in err) == ("--throughput-tolerance" in flags)


@pytest.mark.parametrize("flags, names", [
    (["--throughput-threshold", "150%"], ["--throughput-threshold", "150%"]),
    (["--throughput-threshold", "fast"], ["--throughput-threshold", "'fast'"]),
    (["--alpha", "0"], ["--alpha", "'0'"]),
    (["--alpha", "x"], ["--alpha", "'x'"]),
    (["--throughput-tolerance", "nan"], ["--throughput-tolerance", "nan"]),
    (["--throughput-tolerance", "0.1", "--throughput-threshold", "10%"],
     ["--throughput-tolerance", "--throughput-threshold"]),
])
def test_bad_throughput_options_are_user_errors(fake_replay, capsys, flags, names):
    assert main(["verify", "r.jsonl", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(n in err for n in names), err


# ------------------------------------------------------------------ confirmation reruns

SLOWER = [0.8 * x for x in RECORDED]  # -20%, p = 2/252: a regression on its own


def test_a_regression_that_does_not_reproduce_in_a_fresh_worker_passes(fake_replay, capsys):
    # The issue's false alarm: one replayed process ran slow. The rerun (a second, independent
    # process) runs at the recorded speed, so the tree is not slower and verify passes.
    fake_replay.append(pair("cold", RECORDED, SLOWER))
    fake_replay.reruns["cold"] = [rec(list(RECORDED))]
    assert main(["verify", "r.jsonl"]) == 0
    out = capsys.readouterr().out
    assert fake_replay.calls == [None, "cold"]  # the sweep, then that one config again
    assert out.startswith("OK   cold") and "regression, not confirmed (1 rerun: no change)" in out
    assert "1 of 1 configs reproduce" in out


def test_a_regression_that_reproduces_fails_and_says_so(fake_replay, capsys):
    fake_replay += [pair("slow", RECORDED, SLOWER), pair("same", RECORDED, RECORDED)]
    assert main(["verify", "r.jsonl", "--confirm", "2", "--format", "json"]) == 1
    slow, same = json.loads(capsys.readouterr().out)
    assert fake_replay.calls == [None, "slow", "slow"]  # only the regressed config reruns
    assert slow["confirmations"] == ["regression", "regression"] and not slow["reproduced"]
    assert slow["regression_confirmed"] is True
    assert same["confirmations"] == [] and same["reproduced"]


def test_reruns_stop_at_the_first_that_does_not_regress(fake_replay, capsys):
    fake_replay.append(pair("flaky", RECORDED, SLOWER))
    fake_replay.reruns["flaky"] = [rec(list(RECORDED)), rec(SLOWER)]
    assert main(["verify", "r.jsonl", "--confirm", "3", "--format", "json"]) == 0
    [flaky] = json.loads(capsys.readouterr().out)
    assert flaky["confirmations"] == ["no change"] and flaky["regression_confirmed"] is False


def test_confirm_zero_trusts_the_first_replay(fake_replay, capsys):
    fake_replay.append(pair("cold", RECORDED, SLOWER))
    fake_replay.reruns["cold"] = [rec(list(RECORDED))]
    assert main(["verify", "r.jsonl", "--confirm", "0"]) == 1
    assert fake_replay.calls == [None]
    assert capsys.readouterr().out.startswith("FAIL cold")


def test_a_quality_failure_is_not_rerun(fake_replay, capsys):
    old, new, cfg = pair("bad", RECORDED, SLOWER)
    fake_replay.append((old, {**new, "eval_accuracy": 0.1}, cfg))
    assert main(["verify", "r.jsonl"]) == 1
    assert fake_replay.calls == [None]  # it fails on quality whatever the rerun's speed


# ------------------------------------------------------------------ the run-wide shift

def scaled(factor: float) -> list[float]:
    return [factor * x for x in RECORDED]


def test_a_machine_that_slowed_every_config_together_is_reported_not_failed(fake_replay,
                                                                            capsys):
    # The evidence's round 10: every config 11-18% slower, each rerun too. The shared change
    # is the geometric median of 0.88, 0.85, 0.83, 0.82: sqrt(0.85 x 0.83) = 0.83994, -16.0%;
    # relative to it the configs move +4.8%, +1.2%, -1.2%, -2.4%: within 10%. (0.83 x 102 = 84.7)
    fake_replay += [pair(f"c{i}", RECORDED, scaled(f)) for i, f in
                    enumerate((0.88, 0.85, 0.83, 0.82))]
    assert main(["verify", "r.jsonl", "--format", "json"]) == 0
    checks = json.loads(capsys.readouterr().out)
    assert [c["shift"] for c in checks] == [pytest.approx((0.85 * 0.83) ** 0.5 - 1)] * 4
    assert [round(c["throughput_change"], 3) for c in checks] == [0.048, 0.012, -0.012, -0.024]
    assert fake_replay.calls == [None]  # nothing looked like a regression: no rerun
    assert main(["verify", "r.jsonl"]) == 0
    out = capsys.readouterr().out
    assert "SHIFT: every config slowed down together, by -16.0%" in out
    assert "throughput 85 (n=5) vs recorded 102 (n=5), -1.2% relative to the run's -16.0%" in out


def test_one_config_slower_than_the_rest_of_a_shifted_run_still_fails(fake_replay, capsys):
    # Shift: sqrt(0.94 x 0.95) - 1 = -5.5% (within the threshold: no SHIFT mark); the 0.70
    # config is 0.70 / 0.94499 - 1 = -25.9% relative to it, beyond 10%, p = 2/252.
    fake_replay += [pair("slow", RECORDED, scaled(0.70))]
    fake_replay += [pair(f"c{i}", RECORDED, scaled(f)) for i, f in enumerate((0.94, 0.95, 0.96))]
    assert main(["verify", "r.jsonl"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL slow") and "-25.9% relative to the run's -5.5%" in out
    assert "confirmed by 1 rerun" in out and "SHIFT" not in out


@pytest.mark.parametrize("factors", [
    (1.02, 0.85, 0.85, 0.84),  # one config did not slow down: the others did on their own
    (0.85, 0.84),  # two configs cannot separate a shared change from their own
])
def test_no_shift_unless_at_least_three_configs_all_moved_the_same_way(fake_replay, capsys,
                                                                       factors):
    fake_replay += [pair(f"c{i}", RECORDED, scaled(f)) for i, f in enumerate(factors)]
    assert main(["verify", "r.jsonl", "--format", "json"]) == 1
    checks = json.loads(capsys.readouterr().out)
    assert all(c["shift"] == 0.0 for c in checks)
    assert [c["throughput"] for c in checks if c["throughput_change"] < -0.1] == (
        ["regression"] * sum(f < 0.9 for f in factors))


def test_a_faster_run_is_not_held_against_a_config_that_gained_less(fake_replay, capsys):
    # The evidence's round 9: the run +28%, one config +11%. Relative to the run's geometric
    # median, sqrt(1.28 x 1.25) = 1.2649, the 1.11 config would be 1.11 / 1.2649 - 1 = -12.2%,
    # a regression; but it is 11% faster than recorded, and that is what verify judges.
    fake_replay += [pair(f"c{i}", RECORDED, scaled(f)) for i, f in
                    enumerate((1.30, 1.28, 1.25, 1.11))]
    assert main(["verify", "r.jsonl", "--format", "json"]) == 0
    checks = json.loads(capsys.readouterr().out)
    assert [c["shift"] for c in checks] == [0.0] * 4
    assert checks[3]["throughput"] == "improvement"
    assert checks[3]["throughput_change"] == pytest.approx(0.11)
