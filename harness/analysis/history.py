"""Performance history: each config's metrics over commits, and the steps in those series.

A **series** is one metric of one config on one machine (``schema.machine_key``), ordered by
commit time (``git_commit_time``; records without it fall back to the earliest timestamp of
their commit). Each commit is one **point**: the median of its records' values. A record is its
own worker process, so points are independent samples; repeats inside one record are not and
are summarised by the record's own figure.

**Change points** are found by binary segmentation, a documented statistical method rather than
a black box: in a segment of n points, every split with at least ``min_segment`` points on each
side is a candidate; the best split is the one that leaves the least absolute deviation from
each side's median (the L1 cost). It is a step when

- the two-sided Mann-Whitney U test of its two sides' point values gives a p-value that, times
  the number of candidate splits (Bonferroni: scanning many splits must not manufacture a step
  out of noise), is below ``alpha``, and
- the change of medians, right / left - 1, is beyond ``threshold`` (as ``compare``'s rule);

and then both sides are searched again. With 20 points and ``min_segment`` 4 the smallest
adjusted p of a split 4 | 16 is 2 / C(20, 4) x 13 = 0.005 < 0.01, so a step needs at least four
commits on each side before it can be told from noise: a step in the last three commits is not
reported until more history arrives.

**Where exactly** is as uncertain as the points next to the step are noisy: a commit just after
a 10% step measured 6% fast on a busy machine reads as unchanged, and the best split lands one
commit late (the evidence did so in 7 of 12 series). So each step also gives the *range* of
commits that may be the first changed one: a likelihood support interval of the split under
the L1 cost's own noise model (Laplace, scale ``b`` = the mean absolute deviation of every point
from its stretch's median). Moving the split from the best position to another one costs
``delta`` more absolute deviation; positions with ``delta / b <= log(SUPPORT)`` (``SUPPORT`` =
20: the data favour the best position by less than 20 to 1) stay in the range. A clean step
(noise far below its size) gives a single commit; a step as large as the noise gives several,
and ``trainmark bisect`` over that range settles it.

The noise model assumes that points are independent. One run per commit in commit order (what
CI appends) breaks that on a shared machine, whose speed shifts for minutes at a time: a shift
can lie between two commits and read as a step. ``trainmark backfill`` measures a range so that
the assumption holds (``execution.backfill``): several runs per commit, in shuffled order; each
point is then the median of its commit's runs.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from harness.analysis import stats
from harness.core.config import CONFIG_FIELDS
from harness.schema import machine_key

DEFAULT_MIN_SEGMENT = 4
# Likelihood ratio within which another split position stays in a step's commit range.
SUPPORT = 20.0
# metric name -> (candidate columns, first present wins; higher is better; unit)
METRICS: dict[str, tuple[tuple[str, ...], bool, str]] = {
    "throughput": (("throughput",), True, "samples/s"),
    "memory": (("train_memory_allocated_bytes", "peak_memory_allocated_bytes",
                "train_rss_bytes", "peak_rss_bytes"), False, "bytes"),
    "accuracy": (("eval_accuracy",), True, "fraction"),
}
# Fields that say what was measured but not what the config is (seed stays: a different seed is
# a different series only if the user swept seeds, which then are separate configs anyway).
_NOT_CONFIG = ("warmup_steps", "timed_steps", "repeats", "min_time_s")


@dataclass(frozen=True)
class Point:
    commit: str
    time: str  # ISO-8601, the commit's time (or its first record's)
    value: float  # median over the commit's records
    records: int


@dataclass(frozen=True)
class Step:
    index: int  # the first point after the step
    last_before: str  # commit of the last point before it
    first_after: str  # commit of the first point after it: the suspect
    before: float  # median of the points of the segment before
    after: float  # median of the points of the segment after
    change: float  # after / before - 1
    p_value: float  # Mann-Whitney U of the split
    p_adjusted: float  # times the candidate splits of its segment, at most 1
    verdict: str  # stats.REGRESSION or stats.IMPROVEMENT
    # The commits that may be the first changed one (``location_range``), earliest and latest;
    # both ``first_after`` when the step's place is clear.
    earliest: str = ""
    latest: str = ""
    candidates: int = 1  # how many commits the range holds


@dataclass(frozen=True)
class Series:
    metric: str
    column: str  # the record field the values come from
    unit: str
    higher_is_better: bool
    config: dict[str, object]  # the config fields that identify the series
    machine: str
    points: list[Point]
    steps: list[Step]


def _l1_cost(values: Sequence[float]) -> float:
    mid = statistics.median(values)
    return sum(abs(v - mid) for v in values)


def best_split(values: Sequence[float], min_segment: int) -> tuple[int, float, int] | None:
    """(index, p, candidates) of the split of ``values`` that best explains them as two flat
    stretches, or None when the segment is too short to split.

    The split minimises the summed absolute deviation from each side's median (the L1 cost of
    change-point detection, robust to an outlier); choosing by the smallest p instead would
    favour uneven splits, whose exact p-values are smaller for the same separation."""
    n = len(values)
    candidates = range(min_segment, n - min_segment + 1)
    if not candidates:
        return None
    k = min(candidates, key=lambda i: (_l1_cost(values[:i]) + _l1_cost(values[i:]), i))
    return k, stats.mann_whitney_p(list(values[:k]), list(values[k:])), len(candidates)


def detect_steps(values: Sequence[float], *, threshold: float = stats.DEFAULT_THRESHOLD,
                 alpha: float = stats.DEFAULT_ALPHA, min_segment: int = DEFAULT_MIN_SEGMENT,
                 ) -> list[tuple[int, float, float, float]]:
    """Steps in ``values`` (ordered): ``(index of the first point after, change, p, adjusted
    p)``, by binary segmentation (module docstring). Sorted by index."""
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
    """The first and last index that may be the first point after a step found at ``k`` in
    the flat stretches ``values[lo:k]`` and ``values[k:hi]`` (module docstring: a likelihood
    support interval under Laplace noise). Each side keeps at least one point."""
    before, after = statistics.median(values[lo:k]), statistics.median(values[k:hi])
    residuals = [abs(v - before) for v in values[lo:k]] + [abs(v - after) for v in values[k:hi]]
    scale = statistics.fmean(residuals)
    if scale <= 0:
        return k, k  # noiseless stretches: the step is exactly where it is

    def cost(i: int) -> float:  # absolute deviation with the split at i, levels held fixed
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


def _metric_column(frame: pd.DataFrame, metric: str) -> str | None:
    columns, _, _ = METRICS[metric]
    for col in columns:
        if col in frame.columns and frame[col].notna().any():
            return col
    return None


def points_of(rows: pd.DataFrame, column: str) -> list[Point]:
    """One point per commit of ``rows`` (one config, one machine), in commit-time order."""
    ok = rows[(rows["status"] == "ok") & rows[column].notna() & rows["git_commit"].notna()]
    points = []
    for commit, g in ok.groupby("git_commit", sort=False):
        if "git_commit_time" in g.columns and g["git_commit_time"].notna().any():
            when = str(g["git_commit_time"].dropna().min())
        else:
            when = str(g["timestamp"].dropna().min()) if g["timestamp"].notna().any() else ""
        points.append(Point(str(commit), when, float(statistics.median(g[column].astype(float))),
                            len(g)))
    return sorted(points, key=lambda pt: (pt.time, pt.commit))


def _config_of(row: pd.Series, fields: Sequence[str]) -> dict[str, object]:
    return {f: (None if pd.isna(row[f]) else row[f]) for f in fields}


def build_history(frame: pd.DataFrame, metrics: Sequence[str] = tuple(METRICS), *,
                  threshold: float = stats.DEFAULT_THRESHOLD, alpha: float = stats.DEFAULT_ALPHA,
                  min_segment: int = DEFAULT_MIN_SEGMENT) -> list[Series]:
    """Every (config, machine, metric) series of ``frame`` with its steps."""
    if frame.empty:
        return []
    fields = [f for f in CONFIG_FIELDS if f in frame.columns and f not in _NOT_CONFIG]
    frame = frame.assign(_machine=[machine_key(r) for r in frame.to_dict("records")])
    out = []
    for _, rows in frame.groupby([*fields, "_machine"], dropna=False, sort=False):
        config = _config_of(rows.iloc[0], fields)
        for metric in metrics:
            column = _metric_column(rows, metric)
            if column is None:
                continue
            points = points_of(rows, column)
            if not points:
                continue
            _, higher, unit = METRICS[metric]
            unit = str(rows["throughput_unit"].dropna().iloc[0]) if (
                metric == "throughput" and rows["throughput_unit"].notna().any()) else unit
            out.append(Series(metric, column, unit, higher, config,
                              str(rows["_machine"].iloc[0]), points,
                              _steps(points, higher, threshold, alpha, min_segment)))
    return out


def _steps(points: list[Point], higher_is_better: bool, threshold: float, alpha: float,
           min_segment: int) -> list[Step]:
    values = [pt.value for pt in points]
    found = detect_steps(values, threshold=threshold, alpha=alpha, min_segment=min_segment)
    bounds = [0, *[k for k, *_ in found], len(values)]
    steps = []
    # The test's p as found; the size from the medians of the whole flat stretches on either
    # side, the best estimate once every step is known.
    for j, (k, _, p, adjusted) in enumerate(found, start=1):
        before = statistics.median(values[bounds[j - 1]:k])
        after = statistics.median(values[k:bounds[j + 1]])
        change = after / before - 1
        better = change if higher_is_better else -change
        first, last = location_range(values, k, bounds[j - 1], bounds[j + 1])
        steps.append(Step(k, points[k - 1].commit, points[k].commit, before, after, change, p,
                          adjusted, stats.IMPROVEMENT if better > 0 else stats.REGRESSION,
                          earliest=points[first].commit, latest=points[last].commit,
                          candidates=last - first + 1))
    return steps


def regressions(history: Sequence[Series]) -> list[tuple[Series, Step]]:
    """Every regression step, largest first."""
    found = [(s, st) for s in history for st in s.steps if st.verdict == stats.REGRESSION]
    return sorted(found, key=lambda pair: -abs(pair[1].change))
