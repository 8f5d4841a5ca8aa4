"""Statistics of regression verdicts on constructed samples (no timing, no randomness)."""

import math

import pytest

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
