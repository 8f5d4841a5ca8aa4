"""The A/B verdict (analysis.paired): expected values worked out by hand."""

from __future__ import annotations

import math

import pytest

from harness.analysis import paired, stats

REPEATS = [1000.0, 1010.0, 990.0]
LEVELS = [1.0, 0.5, 0.55, 1.0, 0.9, 0.5, 1.0, 0.6]  # machine load that halves the speed at times


def rounds(levels, factor):
    return [([x * lv for x in REPEATS], [x * lv * factor for x in REPEATS]) for lv in levels]


def test_unchanged_rounds_are_no_change_whatever_the_load():
    r = paired.compare_rounds(rounds(LEVELS, 1.0))
    assert r.verdict == stats.NO_CHANGE and r.change == pytest.approx(0.0, abs=1e-12)
    assert r.strata == 8 and r.n_baseline == 24 and "Wilcoxon" in r.test


def test_eight_rounds_all_slower_is_a_regression_at_the_smallest_exact_p():
    r = paired.compare_rounds(rounds(LEVELS, 1 / 1.1))
    # every log ratio is log(1/1.1) < 0: the exact two-sided p is 2 / 2**8
    assert r.p_value == pytest.approx(2 / 256)
    assert r.verdict == stats.REGRESSION and r.change == pytest.approx(1 / 1.1 - 1)


def test_pooling_the_same_samples_cannot_see_that_drop():
    data = rounds(LEVELS, 1 / 1.1)
    pooled = stats.compare_samples([x for b, _ in data for x in b],
                                   [x for _, c in data for x in c])
    assert pooled.verdict != stats.REGRESSION  # the load swings drown the change


def test_a_few_disturbed_rounds_do_not_fake_a_change():
    # three of eight baselines hit by a neighbour's burst (60% speed): the candidate looks 67%
    # faster in those rounds, unchanged in the other five
    data = rounds(LEVELS, 1.0)
    for i in (1, 4, 6):
        data[i] = ([x * 0.6 for x in data[i][0]], data[i][1])
    r = paired.compare_rounds(data)
    assert r.verdict == stats.NO_CHANGE and r.change == pytest.approx(0.0, abs=1e-12)


def test_seven_rounds_cannot_reach_alpha_and_say_so():
    r = paired.compare_rounds(rounds(LEVELS[:7], 1 / 1.1))
    assert r.verdict == stats.INCONCLUSIVE and r.p_value is None
    assert "smallest possible p is 0.0156" in r.reason  # 2 / 2**7


def test_mixed_rounds_by_hand():
    # log ratios -0.01 ... -0.07 and +0.08: W+ = 8 (the largest |d| is the positive one);
    # 25 of the 256 sign patterns of ranks 1..8 have a positive-rank sum <= 8, so p = 50/256.
    d = [-0.01, -0.02, -0.03, -0.04, -0.05, -0.06, -0.07, 0.08]
    data = [([1000.0], [1000.0 * math.exp(x)]) for x in d]
    r = paired.compare_rounds(data)
    assert r.p_value == pytest.approx(50 / 256)
    assert r.change == pytest.approx(math.exp(-0.035) - 1)  # median of the eight log ratios
    assert r.verdict == stats.NO_CHANGE  # -3.4% is within the 5% threshold


def test_repeats_within_one_round_are_not_independent_samples():
    # one round, many repeats, a 30% drop: one round is one sample, never significant
    r = paired.compare_rounds([([1000.0] * 50, [700.0] * 50)])
    assert r.verdict == stats.INCONCLUSIVE and r.strata == 1


def test_rounds_missing_a_side_are_skipped_and_no_rounds_is_inconclusive():
    assert paired.round_log_ratios([([], [1.0]), ([1.0], [2.0]), (None, None)]) == [
        pytest.approx(math.log(2.0))]
    assert paired.compare_rounds([]).verdict == stats.INCONCLUSIVE
