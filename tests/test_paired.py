"""The A/B verdict (analysis.paired): expected values worked out by hand."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from scipy import stats as sps

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


# --- exact values, boundaries and messages -----------------------------------------------------

FACTORS = [0.80, 0.93, 0.90, 0.84, 0.94, 0.87, 0.91, 0.85]  # every round slower, by 6-20%


def uneven_rounds(levels, factors):
    return [([x * lv for x in REPEATS], [x * lv * f for x in REPEATS])
            for lv, f in zip(levels, factors, strict=True)]


def scipy_median_ci(d, confidence=0.95):
    """The documented recipe, computed here with scipy directly: percentile bootstrap of the
    median log ratio, 2000 resamples, numpy generator seeded with 0, mapped back by exp."""
    rng_arg = "rng" if "rng" in inspect.signature(sps.bootstrap).parameters else "random_state"
    res = sps.bootstrap((np.array(d),), np.median, confidence_level=confidence,
                        n_resamples=2000, method="percentile",
                        **{rng_arg: np.random.default_rng(0)})
    return math.exp(res.confidence_interval.low), math.exp(res.confidence_interval.high)


def test_eight_uneven_rounds_report_the_seeded_bootstrap_interval():
    r = paired.compare_rounds(uneven_rounds(LEVELS, FACTORS))
    d = [math.log(f) for f in FACTORS]
    low, high = scipy_median_ci(d)
    assert r.ci_low == pytest.approx(low - 1.0, rel=1e-12)
    assert r.ci_high == pytest.approx(high - 1.0, rel=1e-12)
    # median of the sorted factors .80 .84 .85 .87 | .90 .91 .93 .94 is sqrt(.87 * .90) in logs
    assert r.change == pytest.approx(math.sqrt(0.87 * 0.90) - 1)
    assert r.p_value == pytest.approx(2 / 256)  # all eight signs negative
    assert r.verdict == stats.REGRESSION
    assert r.reason == "p=0.0078 < 0.01 and |change| > 5.0%"
    # pooled medians by hand: 24 samples each; the levels sorted are .5 .5 .55 .6 | .9 1 1 1,
    # so the 12th and 13th smallest baseline values are 1010 * .6 = 606 and 990 * .9 = 891
    assert (r.n_baseline, r.n_candidate) == (24, 24)
    assert r.baseline_median == pytest.approx((606 + 891) / 2)
    c_all = sorted(x * lv * f for lv, f in zip(LEVELS, FACTORS, strict=True) for x in REPEATS)
    assert r.candidate_median == pytest.approx((c_all[11] + c_all[12]) / 2)


def test_confidence_level_is_passed_to_the_bootstrap():
    r = paired.compare_rounds(uneven_rounds(LEVELS, FACTORS), confidence=0.8)
    low, high = scipy_median_ci([math.log(f) for f in FACTORS], confidence=0.8)
    assert (r.ci_low, r.ci_high) == (pytest.approx(low - 1.0, rel=1e-12),
                                     pytest.approx(high - 1.0, rel=1e-12))


def test_three_rounds_are_inconclusive_but_report_change_and_interval():
    # the median of a 3-value resample is the smallest (largest) value with probability
    # 3 * (1/3)**2 * (2/3) + (1/3)**3 = 7/27 > 2.5%, so the 95% interval spans min..max ratio
    r = paired.compare_rounds(uneven_rounds(LEVELS[:3], [0.8, 0.9, 0.85]))
    assert r.verdict == stats.INCONCLUSIVE and r.p_value is None and r.strata == 3
    assert r.change == pytest.approx(0.85 - 1)
    assert r.ci_low == pytest.approx(0.8 - 1) and r.ci_high == pytest.approx(0.9 - 1)
    assert r.reason == ("too few rounds (3): the smallest possible p is 0.25, "
                        "not below alpha 0.01")  # 2 / 2**3


def test_two_distinct_ratios_still_give_an_interval():
    # ratios 0.8, 0.8, 0.9: a resample median is 0.9 with probability 7/27, 0.8 otherwise
    r = paired.compare_rounds(uneven_rounds(LEVELS[:3], [0.8, 0.9, 0.8]))
    assert r.ci_low == pytest.approx(0.8 - 1) and r.ci_high == pytest.approx(0.9 - 1)


def test_identical_ratios_give_no_interval_and_seven_rounds_keep_the_change():
    r = paired.compare_rounds(rounds(LEVELS[:7], 1 / 1.1))
    assert r.change == pytest.approx(1 / 1.1 - 1)
    assert r.ci_low is None and r.ci_high is None  # nothing to resample


def test_alpha_equal_to_the_smallest_p_is_still_too_few_rounds():
    # 8 rounds reach exactly 2 / 2**8; p must be *below* alpha
    r = paired.compare_rounds(rounds(LEVELS, 1 / 1.1), alpha=2 / 256)
    assert r.verdict == stats.INCONCLUSIVE and r.p_value is None
    assert r.reason.startswith("too few rounds (8)")


def test_unchanged_rounds_say_so_with_p_one():
    r = paired.compare_rounds(rounds(LEVELS, 1.0))
    assert r.p_value == 1.0 and r.reason == "every round measured the same"
    assert r.ci_low is None


def test_no_rounds_reason_and_medians():
    r = paired.compare_rounds([([], [1.0, 3.0]), ([2.0], None)])
    assert r.verdict == stats.INCONCLUSIVE and r.reason == "no round with samples on both sides"
    assert r.change is None and r.strata == 0 and r.p_value is None
    assert (r.n_baseline, r.n_candidate) == (1, 2)
    assert (r.baseline_median, r.candidate_median) == (2.0, 2.0)
    empty = paired.compare_rounds([])
    assert (empty.baseline_median, empty.candidate_median) == (None, None)


def test_rounds_without_a_positive_median_are_skipped():
    # a crashed side (throughput 0) or a missing candidate carries no ratio; values below 1
    # (seconds) are ordinary
    assert paired.round_log_ratios([([1.0], []), ([1.0], [0.0]), ([0.0], [1.0]),
                                    ([0.0, 0.0, 5.0], [2.0]), ([0.5], [0.25])]) == [
        pytest.approx(math.log(0.5))]


def test_min_p_by_hand():
    assert paired.min_p(0) == 1.0
    assert paired.min_p(1) == 1.0  # 2 / 2
    assert paired.min_p(8) == pytest.approx(0.0078125)


def test_a_tiny_and_a_huge_median_give_their_log_ratio_not_an_underflow():
    # 1e-300 / 1e300 is 0 in floating point, whose log raises; the log ratio itself is
    # ln(1e-600) = -600 ln 10, by hand.
    assert paired.round_log_ratios([([1e300], [1e-300])]) == [pytest.approx(-600 * math.log(10))]
