"""Statistics of regression verdicts on constructed samples (no timing, no randomness)."""

import inspect
import math
import warnings

import numpy as np
import pytest
from scipy import stats as sps

from harness.analysis import stats

BASE = [1000.0, 1010.0, 990.0, 1005.0, 995.0]


def scaled(values, factor):
    return [v * factor for v in values]


def test_identical_samples_are_no_change():
    r = stats.compare_samples(BASE, list(BASE))
    assert r.verdict == stats.NO_CHANGE
    assert r.change == 0.0 and r.p_value == pytest.approx(1.0)
    assert r.ci_low <= 0.0 <= r.ci_high


def test_all_equal_values_do_not_crash():
    r = stats.compare_samples([5.0] * 6, [5.0] * 6)
    assert r.verdict == stats.NO_CHANGE and r.p_value == 1.0


def test_twenty_percent_drop_without_overlap_is_a_regression_with_five_samples_each():
    r = stats.compare_samples(BASE, scaled(BASE, 0.8))
    assert r.p_value == pytest.approx(2 / math.comb(10, 5))  # 0.0079: exact two-sided
    assert r.verdict == stats.REGRESSION
    assert r.change == pytest.approx(-0.2)
    assert r.ci_high < -0.05  # the whole interval is beyond the threshold


def test_shift_up_is_an_improvement_and_lower_is_better_mirrors():
    assert stats.compare_samples(BASE, scaled(BASE, 1.2)).verdict == stats.IMPROVEMENT
    # step time (lower is better): 20% more time is a regression
    r = stats.compare_samples(BASE, scaled(BASE, 1.2), higher_is_better=False)
    assert r.verdict == stats.REGRESSION


def test_significant_but_smaller_than_threshold_is_no_change():
    r = stats.compare_samples(BASE, scaled(BASE, 0.97))
    assert r.p_value < 0.01 and r.verdict == stats.NO_CHANGE
    assert "within" in r.reason
    # the same data with a 2% threshold is a regression
    assert stats.compare_samples(BASE, scaled(BASE, 0.97), threshold=0.02).verdict == \
        stats.REGRESSION


def test_noisy_samples_with_a_large_but_unsure_change_are_inconclusive():
    base = [1000.0, 600.0, 1400.0, 800.0, 1200.0, 900.0]
    cand = [850.0, 500.0, 1300.0, 650.0, 1100.0, 700.0]  # median -14%, heavily overlapping
    r = stats.compare_samples(base, cand)
    assert r.p_value > 0.01
    assert r.verdict == stats.INCONCLUSIVE and "not significant" in r.reason


def test_noisy_samples_without_a_change_are_no_change():
    base = [1000.0, 980.0, 1030.0, 990.0, 1010.0, 1020.0]
    cand = [1005.0, 985.0, 1025.0, 995.0, 1012.0, 1001.0]
    assert stats.compare_samples(base, cand).verdict == stats.NO_CHANGE


@pytest.mark.parametrize("nb, nc", [(3, 3), (4, 4), (4, 5), (1, 20), (0, 5), (5, 0)])
def test_too_few_samples_are_inconclusive_never_a_crash(nb, nc):
    r = stats.compare_samples([1000.0 + i for i in range(nb)], [500.0 + i for i in range(nc)])
    assert r.verdict == stats.INCONCLUSIVE
    assert r.n_baseline == nb and r.n_candidate == nc


def test_too_few_reason_names_the_smallest_p():
    r = stats.compare_samples([1.0, 1.1, 1.2], [0.5, 0.6, 0.7])
    assert r.verdict == stats.INCONCLUSIVE and "too few samples (3 + 3)" in r.reason
    assert r.change is not None  # the estimate is still reported


def test_missing_and_non_finite_values_are_dropped():
    r = stats.compare_samples([*BASE, None, float("nan"), float("inf"), "x"],
                              scaled(BASE, 0.8) + [None])
    assert (r.n_baseline, r.n_candidate) == (5, 5) and r.verdict == stats.REGRESSION
    assert stats.compare_samples(None, None).verdict == stats.INCONCLUSIVE


def test_min_p_value_and_feasibility():
    assert stats.min_p_value(5, 5) == pytest.approx(0.0079, abs=1e-4)
    assert stats.can_be_significant(5, 5, 0.01)
    assert not stats.can_be_significant(5, 5, 0.002)  # why alpha is not asv's 0.002
    assert not stats.can_be_significant(3, 3, 0.05)
    assert stats.min_p_value(0, 3) == 1.0


def test_ci_covers_the_true_ratio():
    lo, hi = stats.ratio_of_medians_ci([100.0, 101, 99, 102, 98, 100],
                                       [90.0, 91, 89, 92, 88, 90])
    assert lo <= 0.9 <= hi
    assert stats.ratio_of_medians_ci([1.0], [2.0]) is None


def test_compare_values_for_memory_and_accuracy():
    assert stats.compare_values(100.0, 110.0, threshold=0.05, higher_is_better=False) == \
        (pytest.approx(0.1), stats.REGRESSION)
    assert stats.compare_values(100.0, 104.0, threshold=0.05, higher_is_better=False)[1] == \
        stats.NO_CHANGE
    # 1.5 points of accuracy lost with a 1-point tolerance
    change, verdict = stats.compare_values(0.90, 0.885, threshold=0.01, higher_is_better=True,
                                           absolute=True)
    assert verdict == stats.REGRESSION and change == pytest.approx(-0.015)
    # below the absolute floor: no change even though relative growth is large
    assert stats.compare_values(1000.0, 2000.0, threshold=0.05, higher_is_better=False,
                                min_abs_change=4096)[1] == stats.NO_CHANGE
    assert stats.compare_values(None, 1.0, threshold=0.05, higher_is_better=True)[1] == \
        stats.INCONCLUSIVE


def test_combine_precedence():
    assert stats.combine([stats.NO_CHANGE, stats.REGRESSION, stats.IMPROVEMENT]) == \
        stats.REGRESSION
    assert stats.combine([stats.NO_CHANGE, stats.INCONCLUSIVE]) == stats.INCONCLUSIVE
    assert stats.combine([]) == stats.NO_CHANGE


# --- exact values, boundaries and messages -----------------------------------------------------

def scipy_ratio_ci(b, c, confidence=0.95):
    """The documented recipe, computed here with scipy directly: a percentile bootstrap of
    median(c) / median(b), 2000 resamples, numpy generator seeded with 0."""
    rng_arg = "rng" if "rng" in inspect.signature(sps.bootstrap).parameters else "random_state"
    res = sps.bootstrap((np.array(b), np.array(c)),
                        lambda x, y, axis=-1: np.median(y, axis=axis) / np.median(x, axis=axis),
                        confidence_level=confidence, n_resamples=2000, method="percentile",
                        vectorized=True, **{rng_arg: np.random.default_rng(0)})
    return res.confidence_interval.low, res.confidence_interval.high


NOISY_B = [1000.0, 930.0, 1080.0, 960.0, 1050.0, 990.0, 1120.0, 900.0]
NOISY_C = [870.0, 940.0, 800.0, 910.0, 850.0, 990.0, 820.0, 880.0]


def test_reported_interval_is_the_seeded_percentile_bootstrap():
    # the same samples always give the same interval: scipy's bootstrap with seed 0
    r = stats.compare_samples(NOISY_B, NOISY_C)
    low, high = scipy_ratio_ci(NOISY_B, NOISY_C)
    assert r.ci_low == pytest.approx(low - 1.0, rel=1e-12)
    assert r.ci_high == pytest.approx(high - 1.0, rel=1e-12)
    assert stats.ratio_of_medians_ci(NOISY_B, NOISY_C) == (pytest.approx(low, rel=1e-12),
                                                           pytest.approx(high, rel=1e-12))
    # medians by hand: sorted B ... 960, 990 | 1000, 1050 ... -> 995; C ... 870, 880 ... -> 875
    assert (r.baseline_median, r.candidate_median) == (995.0, 875.0)
    assert r.change == pytest.approx(875 / 995 - 1)


def test_confidence_level_is_passed_to_the_bootstrap():
    r = stats.compare_samples(NOISY_B, NOISY_C, confidence=0.8)
    low, high = scipy_ratio_ci(NOISY_B, NOISY_C, confidence=0.8)
    assert (r.ci_low, r.ci_high) == (pytest.approx(low - 1.0, rel=1e-12),
                                     pytest.approx(high - 1.0, rel=1e-12))


def test_two_samples_each_give_the_extreme_ratios_as_interval():
    # With 2 + 2 samples a resample's median is b1, (b1+b2)/2 or b2 (prob 1/4, 1/2, 1/4).
    # min(c)/max(b) has probability 1/4 * 1/4 = 6.25% > 2.5%, so the 95% percentile interval is
    # [min(c) / max(b), max(c) / min(b)] = [0.8 / 1.2, 1.0 / 0.9] whatever the seed.
    lo, hi = stats.ratio_of_medians_ci([0.9, 1.2], [0.8, 1.0])
    assert lo == pytest.approx(0.8 / 1.2) and hi == pytest.approx(1.0 / 0.9)


def test_too_few_samples_still_report_the_interval():
    # 3 + 3: a resample median equals the smallest (largest) value with probability
    # 3 * (1/3)**2 * (2/3) + (1/3)**3 = 7/27; the joint extreme 49/729 = 6.7% > 2.5%, so the
    # interval is [0.5 / 1.2, 0.7 / 1.0] - 1 (step times in seconds: medians below 1 are fine)
    r = stats.compare_samples([1.0, 1.1, 1.2], [0.5, 0.6, 0.7])
    assert r.verdict == stats.INCONCLUSIVE and r.p_value is None
    assert r.change == pytest.approx(0.6 / 1.1 - 1)
    assert r.ci_low == pytest.approx(0.5 / 1.2 - 1) and r.ci_high == pytest.approx(0.7 / 1.0 - 1)
    assert r.reason == ("too few samples (3 + 3): the smallest possible p is 0.1, "
                        "not below alpha 0.01")  # 2 / C(6, 3) = 2 / 20


def test_samples_below_one_are_compared_like_any_other():
    # step times in seconds: a 20% drop (of throughput = 1/time) must not be mistaken for
    # "baseline median <= 0"
    base = [0.10, 0.101, 0.099, 0.1005, 0.0995]
    r = stats.compare_samples(base, scaled(base, 1.25), higher_is_better=False)
    assert r.verdict == stats.REGRESSION and r.change == pytest.approx(0.25)
    assert r.ci_low is not None and r.p_value == pytest.approx(2 / math.comb(10, 5))


def test_zeros_that_make_the_ratio_unbounded_give_no_interval():
    # baseline median 1, but 3 of 5 zeros come out in a resample with probability
    # 10*.4**3*.6**2 + 5*.4**4*.6 + .4**5 = 0.317: the upper end is infinite -> no interval
    with np.errstate(divide="ignore", invalid="ignore"):
        r = stats.compare_samples([0.0, 0.0, 1.0, 1.0, 1.0], [1.0, 1.1, 0.9, 1.0, 1.0])
    assert r.change == 0.0 and r.ci_low is None and r.ci_high is None


def test_a_non_positive_baseline_median_is_refused_before_dividing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero along the way
        assert stats.ratio_of_medians_ci([0.0, 0.0, 1.0], [1.0, 2.0, 3.0]) is None
        r = stats.compare_samples([0.0, 0.0, 0.0, 1.0, 1.0], [2.0, 3.0, 4.0, 5.0, 6.0])
    assert r.verdict == stats.INCONCLUSIVE and r.change is None and r.p_value is None
    assert r.reason == "baseline median <= 0"
    assert (r.baseline_median, r.candidate_median) == (0.0, 4.0)
    assert stats.ratio_of_medians_ci([-1.0, -2.0, -3.0], [1.0, 2.0, 3.0]) is None


@pytest.mark.parametrize("b, c", [([], []), (BASE, []), ([], BASE), (None, [1.0, 2.0])])
def test_a_missing_side_says_no_samples(b, c):
    r = stats.compare_samples(b, c)
    assert r.verdict == stats.INCONCLUSIVE and r.reason == "no samples"
    assert r.change is None and r.ci_low is None and r.ci_high is None and r.p_value is None
    assert r.baseline_median == (1000.0 if b else None)  # median of BASE by hand
    assert r.candidate_median == (1000.0 if c == BASE else 1.5 if c else None)


def test_clean_samples_keeps_going_after_a_bad_value():
    assert stats.clean_samples([1.0, True, 2, "x", None, "3.5", float("nan"), 4.0]) == [
        1.0, 2.0, 3.5, 4.0]
    assert stats.clean_samples(None) == []


def test_mann_whitney_with_two_tied_groups_matches_the_normal_approximation():
    # 5 x 1.0 vs 5 x 2.0: U = 25 (or 0), mean 12.5; tie-corrected variance
    # 5*5/12 * (11 - (2 * (5**3 - 5)) / (10 * 9)) = 25/12 * 25/3 = 17.36, sd = 25/6;
    # with the continuity correction z = (12.5 - 0.5) / (25/6) = 2.88, p = erfc(2.88 / sqrt 2)
    p = stats.mann_whitney_p([1.0] * 5, [2.0] * 5)
    assert p == pytest.approx(math.erfc(2.88 / math.sqrt(2)), rel=1e-9)
    assert p == pytest.approx(sps.mannwhitneyu([1.0] * 5, [2.0] * 5).pvalue)
    r = stats.compare_samples([1.0] * 5, [2.0] * 5)
    assert r.verdict == stats.IMPROVEMENT and r.p_value == pytest.approx(p)


def test_min_p_value_by_hand():
    assert stats.min_p_value(1, 20) == pytest.approx(2 / 21)  # C(21, 1) = 21
    assert stats.min_p_value(20, 1) == pytest.approx(2 / 21)
    assert stats.min_p_value(1, 1) == 1.0  # 2 / C(2, 1)
    assert stats.min_p_value(3, 0) == 1.0
    # alpha is a strict bound: 3 + 3 reaches exactly 2 / 20 = 0.1, which is not below 0.1
    assert not stats.can_be_significant(3, 3, 0.1)
    assert stats.can_be_significant(3, 3, 0.11)


def test_decide_at_the_thresholds():
    # p equal to alpha is not significant; a change equal to the threshold is within it
    assert stats.decide(-0.2, 0.01, 0.05, 0.01, True) == (
        stats.INCONCLUSIVE, "change beyond 5.0% but not significant (p=0.01); "
        "rerun with more repeats or rounds")
    assert stats.decide(0.05, 0.001, 0.05, 0.01, True) == (
        stats.NO_CHANGE, "significant (p=0.001) but within 5.0%")
    assert stats.decide(0.05, 0.5, 0.05, 0.01, True) == (stats.NO_CHANGE, "within 5.0%, p=0.5")
    assert stats.decide(-0.2, 0.001, 0.05, 0.01, False) == (
        stats.IMPROVEMENT, "p=0.001 < 0.01 and |change| > 5.0%")


def test_compare_values_boundaries():
    # exactly at the threshold (10 / 100 = 0.1) is within it
    assert stats.compare_values(100.0, 110.0, threshold=0.1, higher_is_better=True) == (
        pytest.approx(0.1), stats.NO_CHANGE)
    # an improvement smaller than 100% is still an improvement
    assert stats.compare_values(100.0, 110.0, threshold=0.05, higher_is_better=True) == (
        pytest.approx(0.1), stats.IMPROVEMENT)
    # a difference exactly at the absolute floor counts
    assert stats.compare_values(4096.0, 8192.0, threshold=0.05, higher_is_better=False,
                                min_abs_change=4096)[1] == stats.REGRESSION
    # a baseline below 1 (0.5 s) is an ordinary relative change: 0.1 / 0.5 = 20%
    assert stats.compare_values(0.5, 0.6, threshold=0.05, higher_is_better=False) == (
        pytest.approx(0.2), stats.REGRESSION)
    # no relative change from a zero baseline
    assert stats.compare_values(0.0, 5.0, threshold=0.05, higher_is_better=False) == (
        None, stats.INCONCLUSIVE)


def test_resamples_of_a_baseline_with_zeros_give_no_numpy_warning():
    """Baseline median 1 (three ones, two zeros): some resamples draw three zeros and their
    ratio divides by 0. That is no interval's business to print."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = stats.ratio_of_medians_ci([0.0, 0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0, 1.0])
    assert got is None  # the upper percentile is inf: no finite interval
