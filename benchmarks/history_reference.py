"""The change-point search as it was before issue 31 (commit a06cbe1), kept verbatim as the
reference that ``benchmarks.history_scale`` and the tests compare the O(n log n) search with:
every candidate split's two medians computed afresh, O(n^2 log n) a segment."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from harness.analysis import stats

SUPPORT = 20.0


def l1_cost(values: Sequence[float]) -> float:
    mid = statistics.median(values)
    return sum(abs(v - mid) for v in values)


def best_split(values: Sequence[float], min_segment: int) -> tuple[int, float, int] | None:
    n = len(values)
    candidates = range(min_segment, n - min_segment + 1)
    if not candidates:
        return None
    k = min(candidates, key=lambda i: (l1_cost(values[:i]) + l1_cost(values[i:]), i))
    return k, stats.mann_whitney_p(list(values[:k]), list(values[k:])), len(candidates)


def detect_steps(values: Sequence[float], *, threshold: float = stats.DEFAULT_THRESHOLD,
                 alpha: float = stats.DEFAULT_ALPHA, min_segment: int = 4,
                 ) -> list[tuple[int, float, float, float]]:
    found: list[tuple[int, float, float, float]] = []

    def search(lo: int, hi: int) -> None:
        split = best_split(values[lo:hi], min_segment)
        if split is None:
            return
        k, p, candidates = split
        left, right = values[lo:lo + k], values[lo + k:hi]
        before, after = statistics.median(left), statistics.median(right)
        if before <= 0:
            return
        change = after / before - 1
        adjusted = min(1.0, p * candidates)
        if adjusted < alpha and abs(change) > threshold:
            found.append((lo + k, change, p, adjusted))
            search(lo, lo + k)
            search(lo + k, hi)

    search(0, len(values))
    return sorted(found)


def location_range(values: Sequence[float], k: int, lo: int, hi: int) -> tuple[int, int]:
    before, after = statistics.median(values[lo:k]), statistics.median(values[k:hi])
    residuals = [abs(v - before) for v in values[lo:k]] + [abs(v - after) for v in values[k:hi]]
    scale = statistics.fmean(residuals)
    if scale <= 0:
        return k, k

    def cost(i: int) -> float:
        return (sum(abs(v - before) for v in values[lo:i])
                + sum(abs(v - after) for v in values[i:hi]))

    limit = cost(k) + scale * math.log(SUPPORT)
    first = k
    while first - 1 > lo and cost(first - 1) <= limit:
        first -= 1
    last = k
    while last + 1 < hi and cost(last + 1) <= limit:
        last += 1
    return first, last
