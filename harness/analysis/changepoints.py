"""Change points of one series: binary segmentation under the L1 cost, in O(n log n) a split.

The method is ``analysis.history``'s (its docstring says what a step is and why); this module is
its arithmetic. A split of a segment minimises the summed absolute deviation of each side from
its own median. Computing that for every candidate split from scratch, as the first version
did, costs a median per side per candidate: O(n^2 log n) a segment, six minutes for a year of
per-push history. Here the L1 cost of every prefix comes from one pass with two heaps (the
lower half of the values seen so far and the upper half): with ``S_low`` and ``S_high`` their
sums, the cost is ``S_high - S_low``, plus the median itself when the count is odd (the lower
half holds it). The suffixes are the prefixes of the reversed segment. So one split is
O(n log n), and the whole segmentation O(n log n) per level of recursion.

The choice is the old one: the least cost, ties to the earliest split. Two costs that differ by
less than the rounding of the sums (a billionth of a millionth of the values' total) count as a
tie, so the split chosen never hangs on the order of a floating-point sum.
"""

from __future__ import annotations

import heapq
import math
import statistics
from collections.abc import Sequence

import numpy as np

from harness.analysis import stats

# Likelihood ratio within which another split position stays in a step's commit range.
SUPPORT = 20.0
# Costs closer than this share of the values' absolute total are a tie (rounding, not data).
_TIE = 1e-12


def prefix_costs(values: Sequence[float]) -> list[float]:
    """``out[i]`` = the L1 cost of ``values[:i]`` around its median, for i = 0 .. n."""
    low: list[float] = []  # max-heap of the lower half (negated); holds the median when odd
    high: list[float] = []  # min-heap of the upper half
    s_low = s_high = 0.0
    out = [0.0]
    for v in values:
        if low and v > -low[0]:
            heapq.heappush(high, v)
            s_high += v
        else:
            heapq.heappush(low, -v)
            s_low += v
        if len(low) > len(high) + 1:
            x = -heapq.heappop(low)
            s_low -= x
            heapq.heappush(high, x)
            s_high += x
        elif len(high) > len(low):
            x = heapq.heappop(high)
            s_high -= x
            heapq.heappush(low, -x)
            s_low += x
        out.append(s_high - s_low + (-low[0] if len(low) > len(high) else 0.0))
    return out


def best_split(values: Sequence[float], min_segment: int) -> tuple[int, float, int] | None:
    """(index, p, candidates) of the split of ``values`` that best explains them as two flat
    stretches, or None when the segment is too short to split.

    The split minimises the summed absolute deviation from each side's median (the L1 cost of
    change-point detection, robust to an outlier); choosing by the smallest p instead would
    favour uneven splits, whose exact p-values are smaller for the same separation."""
    n = len(values)
    first, last = min_segment, n - min_segment
    if last < first:
        return None
    left = prefix_costs(values)
    right = prefix_costs(values[::-1])[::-1]  # right[i]: cost of values[i:]
    costs = [left[i] + right[i] for i in range(first, last + 1)]
    least = min(costs)
    tie = _TIE * (sum(abs(v) for v in values) + 1.0)
    k = first + next(j for j, c in enumerate(costs) if c <= least + tie)
    return k, stats.mann_whitney_p(list(values[:k]), list(values[k:])), last - first + 1


def detect_steps(values: Sequence[float], *, threshold: float = stats.DEFAULT_THRESHOLD,
                 alpha: float = stats.DEFAULT_ALPHA, min_segment: int = 4,
                 ) -> list[tuple[int, float, float, float]]:
    """Steps in ``values`` (ordered): ``(index of the first point after, change, p, adjusted
    p)``, by binary segmentation (``analysis.history``'s docstring). Sorted by index."""
    values = [float(v) for v in values]
    found: list[tuple[int, float, float, float]] = []
    todo = [(0, len(values))]
    while todo:  # a stack, not recursion: a long history must not meet the recursion limit
        lo, hi = todo.pop()
        split = best_split(values[lo:hi], min_segment)
        if split is None:
            continue
        k, p, candidates = split
        before = statistics.median(values[lo:lo + k])
        after = statistics.median(values[lo + k:hi])
        if before <= 0:
            continue
        change = after / before - 1
        adjusted = min(1.0, p * candidates)
        if adjusted < alpha and abs(change) > threshold:
            found.append((lo + k, change, p, adjusted))
            todo += [(lo + k, hi), (lo, lo + k)]
    return sorted(found)


def location_range(values: Sequence[float], k: int, lo: int, hi: int) -> tuple[int, int]:
    """The first and last index that may be the first point after a step found at ``k`` in
    the flat stretches ``values[lo:k]`` and ``values[k:hi]`` (``analysis.history``'s
    docstring: a likelihood support interval under Laplace noise). Each side keeps at least one
    point."""
    v = np.asarray(values[lo:hi], dtype=float)
    before, after = statistics.median(values[lo:k]), statistics.median(values[k:hi])
    to_before, to_after = np.abs(v - before), np.abs(v - after)
    scale = float(np.concatenate([to_before[:k - lo], to_after[k - lo:]]).mean())
    if scale <= 0:
        return k, k  # noiseless stretches: the step is exactly where it is
    # cost[i]: absolute deviation with the split at lo + i, the two levels held fixed
    cost = (np.concatenate([[0.0], np.cumsum(to_before)])
            + np.concatenate([np.cumsum(to_after[::-1])[::-1], [0.0]]))
    limit = cost[k - lo] + scale * math.log(SUPPORT)
    first = k
    while first - 1 > lo and cost[first - 1 - lo] <= limit:
        first -= 1
    last = k
    while last + 1 < hi and cost[last + 1 - lo] <= limit:
        last += 1
    return first, last
