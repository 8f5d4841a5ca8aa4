"""Statistics for regression verdicts: pure functions on lists of numbers, no I/O.

A throughput change is a **regression** only when it is both *significant* on the per-repeat
samples and *larger than a threshold* (asv's rule: Mann-Whitney U plus a factor). Significance is
a two-sided Mann-Whitney U test (``scipy.stats.mannwhitneyu``: exact for small samples without
ties, normal approximation otherwise) at ``alpha`` (default 0.01). The size of the change is the
ratio of medians, candidate / baseline, with a percentile bootstrap confidence interval
(``scipy.stats.bootstrap``, fixed seed, so the same files give the same report).

Why alpha = 0.01: with 5 + 5 samples the smallest two-sided p a rank test can reach is
2 / C(10, 5) = 0.0079, so a 20% drop whose samples do not overlap is significant at 0.01 but
could never be at asv's 0.002. When the sample sizes cannot reach ``alpha`` at all (e.g. 3 + 3,
whose smallest p is 0.1), the verdict is ``inconclusive``, never a guess and never a crash.

Verdicts (for a higher-is-better metric; ``higher_is_better=False`` mirrors them):

- ``regression``: significant and worse than ``-threshold``;
- ``improvement``: significant and better than ``+threshold``;
- ``no change``: the change is within the threshold, or not significant and within it;
- ``inconclusive``: too few samples to ever be significant, or a change beyond the threshold
  that is not significant (too noisy to tell: rerun with more repeats or rounds).
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps

REGRESSION = "regression"
IMPROVEMENT = "improvement"
NO_CHANGE = "no change"
INCONCLUSIVE = "inconclusive"
VERDICTS = (REGRESSION, IMPROVEMENT, INCONCLUSIVE, NO_CHANGE)  # precedence in combine()

DEFAULT_ALPHA = 0.01
DEFAULT_THRESHOLD = 0.05  # relative change of the median (5%, as Conbench)
DEFAULT_CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
# scipy >= 1.15 takes ``rng``; older releases call the same argument ``random_state``.
BOOTSTRAP_RNG_ARG = ("rng" if "rng" in inspect.signature(sps.bootstrap).parameters
                     else "random_state")


@dataclass(frozen=True)
class SampleComparison:
    """Baseline vs candidate samples of one metric (e.g. per-repeat throughput)."""

    n_baseline: int
    n_candidate: int
    baseline_median: float | None
    candidate_median: float | None
    change: float | None  # candidate median / baseline median - 1 (-0.2 = 20% lower)
    ci_low: float | None  # bootstrap confidence interval of ``change``
    ci_high: float | None
    p_value: float | None  # two-sided (one-sided: see ``test``); None when not computed
    verdict: str
    reason: str  # one short phrase saying why
    test: str = "Mann-Whitney U"  # or analysis.paired's test for A/B rounds
    strata: int = 1  # A/B rounds the samples came in (1: pooled)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def clean_samples(values: Iterable[object] | None) -> list[float]:
    """Finite floats from ``values``; None, NaN, inf and non-numbers are dropped."""
    out: list[float] = []
    for v in values or ():
        if isinstance(v, bool):
            continue
        try:
            x = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if math.isfinite(x):
            out.append(x)
    return out


def min_p_value(n1: int, n2: int, one_sided: bool = False) -> float:
    """Smallest p-value a rank test can give with ``n1`` + ``n2`` samples (two-sided unless
    ``one_sided``: half of it)."""
    if n1 < 1 or n2 < 1:
        return 1.0
    return min(1.0, (1.0 if one_sided else 2.0) / math.comb(n1 + n2, n1))


def can_be_significant(n1: int, n2: int, alpha: float = DEFAULT_ALPHA,
                       one_sided: bool = False) -> bool:
    return min_p_value(n1, n2, one_sided) < alpha


def mann_whitney_p(baseline: list[float], candidate: list[float],
                   alternative: str = "two-sided") -> float:
    """Mann-Whitney U p-value (``alternative`` as scipy's: ``"greater"`` tests whether the
    baseline is the larger); 1.0 when every sample is equal (nothing to rank)."""
    if len(set(baseline) | set(candidate)) == 1:
        return 1.0
    return float(sps.mannwhitneyu(baseline, candidate, alternative=alternative).pvalue)



def ratio_of_medians_ci(
    baseline: list[float], candidate: list[float], confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of median(candidate) / median(baseline); None if n < 2."""
    if len(baseline) < 2 or len(candidate) < 2 or np.median(baseline) <= 0:
        return None

    def ratio(b: np.ndarray, c: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.median(c, axis=axis) / np.median(b, axis=axis)

    # A resample may draw mostly a baseline's zeros (a failed step's 0 throughput): its ratio
    # is inf or nan, and numpy and scipy warn about it. The finiteness check below turns that
    # into "no interval"; the warnings would only reach the user's terminal.
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sps.bootstrap(
            (np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)), ratio,
            confidence_level=confidence, n_resamples=resamples, method="percentile",
            vectorized=True, **{BOOTSTRAP_RNG_ARG: np.random.default_rng(seed)},
        )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return low, high


def compare_samples(
    baseline: Iterable[object] | None,
    candidate: Iterable[object] | None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
    higher_is_better: bool = True,
    confidence: float = DEFAULT_CONFIDENCE,
    worse_only: bool = False,
) -> SampleComparison:
    """Verdict on two samples of one metric. Never raises on short or empty input.

    ``worse_only``: the test is one-sided, "is the candidate worse?" (a confirmation of a
    regression already seen, whose direction is known before it is measured)."""
    b, c = clean_samples(baseline), clean_samples(candidate)
    nb, nc = len(b), len(c)
    change = None
    if b and c and np.median(b) > 0:
        change = float(np.median(c) / np.median(b)) - 1.0

    if change is None:
        return _result(b, c, None, None, None, INCONCLUSIVE,
                       "no samples" if not (b and c) else "baseline median <= 0")
    ci = ratio_of_medians_ci(b, c, confidence)
    test = "Mann-Whitney U" + (" (one-sided: worse)" if worse_only else "")
    if not can_be_significant(nb, nc, alpha, worse_only):
        return _result(b, c, change, ci, None, INCONCLUSIVE,
                       f"too few samples ({nb} + {nc}): the smallest possible p is "
                       f"{min_p_value(nb, nc, worse_only):.3g}, not below alpha {alpha:g}",
                       test=test)
    # scipy's "greater" asks whether the first sample (the baseline) is the larger one: a
    # candidate worse at a higher-is-better metric.
    alternative = ("greater" if higher_is_better else "less") if worse_only else "two-sided"
    p = mann_whitney_p(b, c, alternative)
    return _result(b, c, change, ci, p, *decide(change, p, threshold, alpha, higher_is_better),
                   test=test)


def _result(b: list[float], c: list[float], change: float | None,
            ci: tuple[float, float] | None, p: float | None, verdict: str, reason: str,
            **extra: object) -> SampleComparison:
    return SampleComparison(
        n_baseline=len(b), n_candidate=len(c),
        baseline_median=float(np.median(b)) if b else None,
        candidate_median=float(np.median(c)) if c else None,
        change=change, ci_low=None if ci is None else ci[0] - 1.0,
        ci_high=None if ci is None else ci[1] - 1.0, p_value=p, verdict=verdict, reason=reason,
        **extra,  # type: ignore[arg-type]
    )


def decide(change: float, p: float, threshold: float, alpha: float,
            higher_is_better: bool) -> tuple[str, str]:
    better = change if higher_is_better else -change
    significant = p < alpha
    beyond = abs(change) > threshold
    if significant and beyond:
        return (IMPROVEMENT if better > 0 else REGRESSION,
                f"p={p:.2g} < {alpha:g} and |change| > {threshold:.1%}")
    if beyond:
        return (INCONCLUSIVE, f"change beyond {threshold:.1%} but not significant "
                f"(p={p:.2g}); rerun with more repeats or rounds")
    if significant:
        return NO_CHANGE, f"significant (p={p:.2g}) but within {threshold:.1%}"
    return NO_CHANGE, f"within {threshold:.1%}, p={p:.2g}"


def compare_values(
    baseline: float | None, candidate: float | None, *, threshold: float,
    higher_is_better: bool, absolute: bool = False, min_abs_change: float = 0.0,
) -> tuple[float | None, str]:
    """Verdict on one deterministic value per side (memory, accuracy): threshold only.

    ``absolute``: ``threshold`` is a difference (accuracy points as a fraction), else relative.
    ``min_abs_change``: differences smaller than this never count (e.g. 1 MiB of memory).
    Returns (change, verdict); change is relative, or absolute when ``absolute``.
    """
    if baseline is None or candidate is None:
        return None, INCONCLUSIVE
    diff = candidate - baseline
    if absolute:
        change: float | None = diff
    elif baseline > 0:
        change = diff / baseline
    else:
        return None, INCONCLUSIVE
    if abs(diff) < min_abs_change or abs(change) <= threshold:
        return change, NO_CHANGE
    better = change if higher_is_better else -change
    return change, IMPROVEMENT if better > 0 else REGRESSION


def combine(verdicts: Iterable[str]) -> str:
    """One verdict for several metrics: any regression, else any improvement, else any
    inconclusive, else no change."""
    seen = set(verdicts)
    for v in VERDICTS:
        if v in seen:
            return v
    return NO_CHANGE
