"""How a confirmation batch is judged (one-sided, half the threshold) and which inconclusive
verdicts fail the gate. Expected p-values are worked out by hand from the exact null
distributions (signed-rank: 2**n equally likely sign patterns; Mann-Whitney: C(n1+n2, n1)
equally likely orderings), never taken from the code."""

import pytest

from harness.analysis import paired, stats
from harness.analysis.compare import Settings, compare_frames
from harness.analysis.confirmation import CONFIRM_ALPHA, apply_confirmations, confirmation_settings
from harness.render.verdicts import render_markdown, render_text
from harness.store.frame import records_to_frame
from tests.test_compare import record


def _rounds(changes, base=1000.0):
    """One (baseline, candidate) pair of samples per round, the candidate ``1 + change`` as
    fast as the baseline."""
    return [([base], [base * (1 + c)]) for c in changes]


# ------------------------------------------------------------------ the one-sided tests


def test_five_slower_rounds_confirm_one_sided_but_not_two_sided():
    # 5 rounds all slower: one-sided p = P(every sign negative) = 1/2**5 = 0.03125; two-sided
    # doubles it to 0.0625, which cannot pass 0.05.
    rounds = _rounds([-0.04, -0.05, -0.03, -0.06, -0.045])
    one = paired.compare_rounds(rounds, threshold=0.025, alpha=0.05, worse_only=True)
    two = paired.compare_rounds(rounds, threshold=0.025, alpha=0.05)
    assert one.p_value == pytest.approx(1 / 32)
    assert one.verdict == stats.REGRESSION and "one-sided" in one.test
    assert two.verdict == stats.INCONCLUSIVE and two.p_value is None  # min p 0.0625 >= 0.05


def test_eight_rounds_allow_one_small_reversed_round_one_sided():
    # 7 slower rounds and one faster round whose |log ratio| is the smallest (rank 1): W+ = 1.
    # P(W+ <= 1) = #{sign patterns with positive-rank sum 0 or 1} / 256 = 2/256 = 0.0078.
    rounds = _rounds([-0.05, -0.06, -0.07, -0.055, -0.065, -0.045, -0.075, +0.01])
    one = paired.compare_rounds(rounds, threshold=0.025, alpha=0.05, worse_only=True)
    assert one.p_value == pytest.approx(2 / 256)
    two = paired.compare_rounds(rounds, threshold=0.025, alpha=0.01)
    assert two.p_value == pytest.approx(4 / 256)  # two-sided: not below 0.01


def test_a_faster_candidate_never_confirms_a_regression():
    rounds = _rounds([0.05, 0.06, 0.04, 0.07, 0.055, 0.065, 0.045, 0.075])
    one = paired.compare_rounds(rounds, threshold=0.025, alpha=0.05, worse_only=True)
    # every sign positive: P(W+ >= 36) under "worse" is 1 (all 256 patterns have W+ <= 36)
    assert one.p_value == pytest.approx(1.0)
    assert one.verdict != stats.REGRESSION


def test_lower_is_better_metrics_test_the_other_tail():
    # For a lower-is-better metric, "worse" is a higher candidate: all 5 ratios above 1.
    rounds = _rounds([0.04, 0.05, 0.03, 0.06, 0.045])
    worse = paired.compare_rounds(rounds, threshold=0.025, alpha=0.05, worse_only=True,
                                  higher_is_better=False)
    assert worse.p_value == pytest.approx(1 / 32) and worse.verdict == stats.REGRESSION


def test_mann_whitney_one_sided_halves_the_smallest_p():
    # 4 + 4 samples, every candidate below every baseline: one-sided p = 1 / C(8, 4) = 1/70.
    base, cand = [100.0, 101.0, 102.0, 103.0], [90.0, 91.0, 92.0, 93.0]
    one = stats.compare_samples(base, cand, threshold=0.025, alpha=0.05, worse_only=True)
    assert one.p_value == pytest.approx(1 / 70) and one.verdict == stats.REGRESSION
    assert stats.compare_samples(base, cand, alpha=0.05).p_value == pytest.approx(2 / 70)
    # 3 + 3 cannot get below 1 / C(6, 3) = 0.05 even one-sided: inconclusive, not a guess
    small = stats.compare_samples(base[:3], cand[:3], threshold=0.025, alpha=0.05,
                                  worse_only=True)
    assert small.verdict == stats.INCONCLUSIVE and "0.05" in small.reason
    assert stats.min_p_value(3, 3, one_sided=True) == pytest.approx(1 / 20)
    assert paired.min_p(5, one_sided=True) == pytest.approx(1 / 32)


# ------------------------------------------------------------------ confirmation settings


def test_confirmation_settings_halve_the_threshold_and_test_one_sided_at_0_05():
    s = confirmation_settings(Settings(threshold=0.05, alpha=0.01, memory_threshold=0.1))
    assert (s.threshold, s.alpha, s.one_sided, s.memory_threshold) == (0.025, 0.05, True, 0.1)
    assert CONFIRM_ALPHA == 0.05
    # a gate looser than 0.05 is not made stricter by its confirmation
    assert confirmation_settings(Settings(alpha=0.1)).alpha == 0.1


def _ab(changes, **over):
    base = [record(ab_round=r, **over) for r in range(len(changes))]
    cand = [record(factor=1 + c, ab_round=r, **over) for r, c in enumerate(changes)]
    return records_to_frame(base), records_to_frame(cand)


def test_a_fresh_batch_confirms_a_3_percent_slowdown_but_not_a_2_percent_one():
    gate = Settings()  # 5%, two-sided 0.01
    slow3 = _ab([-0.03] * 8)
    # the gate itself would call -3% "no change" (within 5%) ...
    assert compare_frames(*slow3, gate)["rows"][0]["verdict"] == stats.NO_CHANGE
    # ... but as a confirmation of a regression already seen, it reproduces (beyond 2.5%,
    # one-sided p = 1/256)
    row = compare_frames(*slow3, confirmation_settings(gate))["rows"][0]
    assert row["verdict"] == stats.REGRESSION
    assert row["throughput"]["p_value"] == pytest.approx(1 / 256)
    slow2 = _ab([-0.02] * 8)  # significant, but within half the threshold
    assert compare_frames(*slow2, confirmation_settings(gate))["rows"][0]["verdict"] == \
        stats.NO_CHANGE


# ------------------------------------------------------------------ what blocks the gate


def test_an_inconclusive_possible_improvement_does_not_fail_the_gate():
    # +8.8% median over 8 rounds, but two rounds slower: not significant at 0.01; the bootstrap
    # interval of the median ratio stays above -5%, so no regression beyond 5% is plausible.
    up = _ab([0.12, 0.10, 0.09, 0.088, 0.088, 0.07, -0.01, -0.02])
    result = compare_frames(*up, Settings())
    (row,) = result["rows"]
    assert row["verdict"] == stats.INCONCLUSIVE and row["blocking"] is False
    assert row["throughput"]["ci_low"] > -0.05
    assert result["summary"]["exit_status"] == 0 and result["summary"]["blocking"] == 0
    assert "does not fail the gate" in render_text(result)
    assert "**OK**" in render_markdown(result)


def test_an_inconclusive_possible_regression_still_exits_3():
    down = _ab([-0.12, -0.10, -0.09, -0.094, -0.094, -0.07, 0.01, 0.02])
    result = compare_frames(*down, Settings())
    (row,) = result["rows"]
    assert row["verdict"] == stats.INCONCLUSIVE and row["blocking"] is True
    assert result["summary"]["exit_status"] == 3 and result["summary"]["blocking"] == 1
    assert "does not fail the gate" not in render_text(result)
    assert "**INCONCLUSIVE**" in render_markdown(result)


def test_an_inconclusive_improvement_with_too_few_rounds_to_bound_still_blocks():
    # 2 rounds: no interval at all (fewer than 3 rounds), so nothing rules a regression out
    result = compare_frames(*_ab([0.2, 0.25]), Settings())
    assert result["rows"][0]["blocking"] is True and result["summary"]["exit_status"] == 3


def test_noisy_memory_that_shrank_does_not_block_but_grown_memory_does():
    mib = 1024 * 1024

    def judge(cand_mib):
        base = [record(train_rss_bytes=m * mib) for m in (100, 140, 120)]
        cand = [record(train_rss_bytes=m * mib) for m in cand_mib]
        return compare_frames(records_to_frame(base), records_to_frame(cand), Settings())

    # medians 120 -> 60 MiB (and 120 -> 180 MiB): beyond the threshold and the 32 MiB floor,
    # but 3 + 3 runs that vary cannot reach p < 0.01, so memory is inconclusive either way
    shrank, grew = judge([50, 60, 80]), judge([160, 180, 200])
    assert shrank["rows"][0]["memory"]["verdict"] == stats.INCONCLUSIVE
    assert (shrank["rows"][0]["blocking"], shrank["summary"]["exit_status"]) == (False, 0)
    assert (grew["rows"][0]["blocking"], grew["summary"]["exit_status"]) == (True, 3)


def test_an_unconfirmed_regression_blocks_and_the_why_quotes_each_batch():
    base, cand = _ab([-0.2] * 8)
    result = compare_frames(base, cand, Settings())
    assert result["rows"][0]["verdict"] == stats.REGRESSION
    config = result["rows"][0]["config"]
    fresh = {"change": -0.013, "p_value": 0.27, "strata": 8, "n_candidate": 40, "test": "t"}
    out = apply_confirmations(result, [{"config": config, "verdicts": ["no change"],
                                        "throughput": [fresh]}])
    row = out["rows"][0]
    assert (row["verdict"], row["blocking"], out["summary"]["exit_status"]) == (
        stats.INCONCLUSIVE, True, 3)
    assert row["why"].endswith("not confirmed when measured again in fresh rounds "
                               "(no change): -1.3% p=0.27")
    assert (out["summary"]["blocking"], out["summary"]["confirmed"]) == (1, 0)
