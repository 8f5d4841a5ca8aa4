"""The A/B verdict: a paired test on per-round log ratios (Wilcoxon signed-rank) plus a threshold.

``trainmark ab`` measures each config once per *round* on each side, back to back, and starts
fresh worker processes for every round (as asv's ``processes`` does). A round is therefore one
independent sample of "candidate / baseline": the repeats inside one measurement share one
process and are not independent of each other, so they are summarised by their median and never
counted as samples. Load from other processes changes between rounds (it can halve the speed for
tens of seconds) but rarely within a pair, and a ratio cancels it.

For rounds r = 1..n: ``d_r = log(median(candidate_r) / median(baseline_r))``. The change is
``exp(median(d)) - 1``; significance is the two-sided Wilcoxon signed-rank test of ``d`` against
0 (``scipy.stats.wilcoxon``, exact for small n without ties), whose smallest possible p is
``2 / 2**n``: 8 rounds reach 0.0078, below the default alpha of 0.01; 7 rounds cannot (0.016),
and the verdict is then ``inconclusive``, never a guess. The confidence interval of the change is
a percentile bootstrap of the median log ratio over rounds (fixed seed). The decision rule is
``stats.decide``'s: significant AND beyond the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from scipy import stats as sps

from harness.analysis import stats

TEST_NAME = "Wilcoxon signed-rank on per-round log ratios"


def round_log_ratios(rounds: Iterable[tuple[Iterable[object], Iterable[object]]]) -> list[float]:
    """``log(median(candidate) / median(baseline))`` of every round with positive samples on
    both sides (a round missing a side is skipped)."""
    out = []
    for b, c in rounds:
        b_clean, c_clean = stats.clean_samples(b), stats.clean_samples(c)
        if b_clean and c_clean and np.median(b_clean) > 0 and np.median(c_clean) > 0:
            # A difference of logs: the quotient of a tiny and a huge median underflows to 0
            out.append(math.log(float(np.median(c_clean))) - math.log(float(np.median(b_clean))))
    return out


def min_p(n: int, one_sided: bool = False) -> float:
    """The smallest p of the exact signed-rank test with ``n`` non-zero differences (two-sided
    unless ``one_sided``: half of it)."""
    return 1.0 if n <= 0 else min(1.0, (1.0 if one_sided else 2.0) / 2 ** n)


def _ci(d: list[float], confidence: float) -> tuple[float, float] | None:
    if len(d) < 3 or len(set(d)) < 2:
        return None
    res = sps.bootstrap((np.asarray(d),), np.median, confidence_level=confidence,
                        n_resamples=stats.BOOTSTRAP_RESAMPLES, method="percentile",
                        **{stats.BOOTSTRAP_RNG_ARG: np.random.default_rng(0)})
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return (math.exp(low), math.exp(high)) if math.isfinite(low) and math.isfinite(high) else None


def compare_rounds(
    rounds: Iterable[tuple[Iterable[object], Iterable[object]]],
    *,
    threshold: float = stats.DEFAULT_THRESHOLD,
    alpha: float = stats.DEFAULT_ALPHA,
    higher_is_better: bool = True,
    confidence: float = stats.DEFAULT_CONFIDENCE,
    worse_only: bool = False,
) -> stats.SampleComparison:
    """Verdict on A/B rounds: [(baseline samples, candidate samples), ...], one per round.

    ``worse_only``: the test is one-sided, "is the candidate worse?", for confirming a
    regression whose direction was known before these rounds were measured: 5 fresh rounds can
    then reach p < 0.05 (1/32), and with 8 rounds one reversed round of small size is allowed."""
    rounds = [(stats.clean_samples(b), stats.clean_samples(c)) for b, c in rounds]
    b_all = [x for b, _ in rounds for x in b]
    c_all = [x for _, c in rounds for x in c]
    d = round_log_ratios(rounds)

    def result(change, ci, p, verdict, reason):
        return stats.SampleComparison(
            n_baseline=len(b_all), n_candidate=len(c_all),
            baseline_median=float(np.median(b_all)) if b_all else None,
            candidate_median=float(np.median(c_all)) if c_all else None, change=change,
            ci_low=None if ci is None else ci[0] - 1.0, ci_high=None if ci is None else ci[1] - 1.0,
            p_value=p, verdict=verdict, reason=reason, strata=len(d),
            test=TEST_NAME + (" (one-sided: worse)" if worse_only else ""))

    if not d:
        return result(None, None, None, stats.INCONCLUSIVE, "no round with samples on both sides")
    change = math.exp(float(np.median(d))) - 1.0
    ci = _ci(d, confidence)
    if min_p(len(d), worse_only) >= alpha:
        return result(change, ci, None, stats.INCONCLUSIVE,
                      f"too few rounds ({len(d)}): the smallest possible p is "
                      f"{min_p(len(d), worse_only):.3g}, not below alpha {alpha:g}")
    if all(x == 0.0 for x in d):
        return result(change, ci, 1.0, stats.NO_CHANGE, "every round measured the same")
    # Rounds with no difference carry no sign: dropped, as Wilcoxon's own method does.
    # One-sided: a lower ratio is worse for a higher-is-better metric.
    alternative = ("less" if higher_is_better else "greater") if worse_only else "two-sided"
    p = float(sps.wilcoxon(d, alternative=alternative, zero_method="wilcox").pvalue)
    return result(change, ci, p, *stats.decide(change, p, threshold, alpha, higher_is_better))
