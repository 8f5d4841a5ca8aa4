"""Performance history: each config's metrics over commits, and the steps in those series.

A **series** is one metric of one config on one machine (``schema.machine_key``), ordered by
commit time (``git_commit_time``; records without it fall back to the earliest timestamp of
their commit). Each commit is one **point**: the median of its records' values. A record is its
own worker process, so points are independent samples; repeats inside one record are not and
are summarised by the record's own figure.

**Change points** are found by binary segmentation (``analysis.changepoints``: each split in
O(n log n), so a year of per-push history takes seconds), a documented statistical method
rather than a black box: in a segment of n points, every split with at least ``min_segment``
points on each side is a candidate; the best split is the one that leaves the least absolute
deviation from each side's median (the L1 cost). It is a step when

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

**Runners are pooled**: a series is keyed by hardware (``machine_key``), not by host, so every
runner of one kind of machine adds its records to the same points (a point is their median).
That is right for the question history answers, "did the code get slower on this hardware?": a
change in the code moves every runner, and more runs per commit make a steadier point. But a
runner that alone got slower (a failing fan, a noisy neighbour) moves the median of two runners
by half its step and the pooled series hides it. With ``by_runner`` each such machine's series
is also built per host, and ``runner_steps`` lists the steps of one runner that the pooled
series does not have: a sick runner, not a code change (``analysis.node_health`` asks the same
question of a fleet's nodes at one moment; this asks it over commits).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from harness.analysis import stats
from harness.analysis.changepoints import SUPPORT, best_split, detect_steps, location_range
from harness.core.config import CONFIG_FIELDS
from harness.schema import machine_key

__all__ = ["SUPPORT", "best_split", "detect_steps", "location_range", "build_history",
           "regressions", "runner_steps", "points_of", "HISTORY_COLUMNS", "METRICS"]

DEFAULT_MIN_SEGMENT = 4
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
_KEY_FIELDS = tuple(f for f in CONFIG_FIELDS if f not in _NOT_CONFIG)
_MACHINE = ("device_name", "cpu_model", "torch_version", "num_threads")  # what machine_key reads
# Every column build_history reads: what ``load_results(paths, HISTORY_COLUMNS)`` should fetch.
HISTORY_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys([
    *_KEY_FIELDS, *_MACHINE, "host", "status", "git_commit", "git_commit_time", "timestamp",
    "throughput_unit", *(c for cols, _, _ in METRICS.values() for c in cols)]))


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
    host: str | None = None  # one runner's own series (``by_runner``); None: runners pooled


def points_of(rows: pd.DataFrame, column: str) -> list[Point]:
    """One point per commit of ``rows`` (one config, one machine), in commit-time order."""
    ok = rows[(rows["status"] == "ok") & rows[column].notna() & rows["git_commit"].notna()]
    return _points(ok.assign(_series=0), column).get(0, [])


def _points(ok: pd.DataFrame, column: str) -> dict[int, list[Point]]:
    """Points of every series of ``ok`` (its ``_series`` column) at once: one groupby."""
    if ok.empty:
        return {}
    missing = pd.Series(pd.NA, index=ok.index, dtype="string")
    frame = pd.DataFrame({
        "s": ok["_series"].to_numpy(), "commit": ok["git_commit"].astype("string"),
        "value": ok[column].astype(float).to_numpy(),
        "ctime": (ok["git_commit_time"].astype("string") if "git_commit_time" in ok.columns
                  else missing),
        "ts": ok["timestamp"].astype("string")})
    g = frame.groupby(["s", "commit"], sort=False)
    agg = pd.DataFrame({"value": g["value"].median(), "records": g["value"].size(),
                        "ctime": g["ctime"].min(), "ts": g["ts"].min()}).reset_index()
    # The commit's time, else its earliest record's timestamp, else nothing (as before).
    agg["time"] = agg["ctime"].fillna(agg["ts"]).fillna("")
    agg = agg.sort_values(["s", "time", "commit"], kind="stable")
    out: dict[int, list[Point]] = {}
    for s, commit, when, value, n in zip(*(agg[c].tolist() for c in (
            "s", "commit", "time", "value", "records")), strict=True):
        out.setdefault(int(s), []).append(Point(str(commit), str(when), float(value), int(n)))
    return out


def _config_of(row: pd.Series, fields: Sequence[str]) -> dict[str, object]:
    return {f: (None if pd.isna(row[f]) else row[f]) for f in fields}


def _machines(frame: pd.DataFrame) -> pd.Series:
    """``machine_key`` of every row, computed once per distinct machine."""
    present = [c for c in _MACHINE if c in frame.columns]
    if not present:
        return pd.Series(machine_key({}), index=frame.index)
    keys = frame[present].astype(object).where(frame[present].notna(), None)
    distinct = keys.drop_duplicates()
    names = {tuple(r): machine_key(dict(zip(present, r, strict=True)))
             for r in distinct.itertuples(index=False, name=None)}
    return pd.Series([names[tuple(r)] for r in keys.itertuples(index=False, name=None)],
                     index=frame.index)


def build_history(frame: pd.DataFrame, metrics: Sequence[str] = tuple(METRICS), *,
                  threshold: float = stats.DEFAULT_THRESHOLD, alpha: float = stats.DEFAULT_ALPHA,
                  min_segment: int = DEFAULT_MIN_SEGMENT, by_runner: bool = False,
                  ) -> list[Series]:
    """Every (config, machine, metric) series of ``frame`` with its steps; with ``by_runner``,
    also one series per host of every machine that several hosts measured (after them)."""
    if frame.empty:
        return []
    fields = [f for f in _KEY_FIELDS if f in frame.columns]
    frame = frame.assign(_machine=_machines(frame))
    frame["_series"] = frame.groupby([*fields, "_machine"], dropna=False,
                                     sort=False).ngroup()
    out = _series_of(frame, fields, metrics, threshold, alpha, min_segment, None)
    if by_runner and "host" in frame.columns:
        hosts = frame["host"].astype(object).where(frame["host"].notna(), "unknown-host")
        several = hosts.groupby(frame["_series"]).transform("nunique") > 1
        if several.any():
            sub = frame[several].assign(_host=hosts[several])
            sub["_series"] = sub.groupby(["_series", "_host"], sort=False).ngroup()
            out += _series_of(sub, fields, metrics, threshold, alpha, min_segment, "_host")
    return out


def _series_of(frame: pd.DataFrame, fields: list[str], metrics: Sequence[str],
               threshold: float, alpha: float, min_segment: int,
               host_column: str | None) -> list[Series]:
    groups = frame.groupby("_series", sort=True)
    first = groups.head(1).set_index("_series").sort_index()
    found: dict[tuple[int, str], Series] = {}
    for metric in metrics:
        columns, higher, unit = METRICS[metric]
        present = [c for c in columns if c in frame.columns]
        if not present:
            continue
        # Per series, the first candidate column that has any value in it (as before).
        has = frame[present].notna().groupby(frame["_series"]).any()
        chosen = has.idxmax(axis=1).where(has.any(axis=1))
        for column in present:
            ids = chosen.index[chosen == column]
            rows = frame[frame["_series"].isin(ids)]
            ok = rows[(rows["status"] == "ok") & rows[column].notna()
                      & rows["git_commit"].notna()]
            for s, points in _points(ok, column).items():
                row = first.loc[s]
                unit_ = unit
                if metric == "throughput":
                    units = frame.loc[frame["_series"] == s, "throughput_unit"].dropna()
                    unit_ = str(units.iloc[0]) if len(units) else unit
                found[(s, metric)] = Series(
                    metric, column, unit_, higher, _config_of(row, fields), str(row["_machine"]),
                    points, _steps(points, higher, threshold, alpha, min_segment),
                    host=None if host_column is None else str(row[host_column]))
    return [found[key] for key in sorted(found, key=lambda k: (k[0], list(metrics).index(k[1])))]


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
    """Every regression step of the pooled series, largest first (``runner_steps``: one
    runner's own)."""
    found = [(s, st) for s in history if s.host is None for st in s.steps
             if st.verdict == stats.REGRESSION]
    return sorted(found, key=lambda pair: -abs(pair[1].change))


def runner_steps(history: Sequence[Series]) -> list[tuple[Series, Step]]:
    """Steps of one runner's own series (``by_runner``) that none of the other runners of the
    same machine, config and metric has: no step of the same verdict whose commit range meets
    this one's in any sibling's series. Largest first. A code change moves every runner; a
    step of one runner alone is the runner (the pooled series may show it at half size)."""
    siblings: dict[tuple, list[Series]] = {}
    for s in history:
        if s.host is not None:
            siblings.setdefault((s.metric, s.machine, tuple(s.config.items())), []).append(s)
    out = []
    for group in siblings.values():
        for s in group:
            when = {p.commit: p.time for p in s.points}
            for st in s.steps:
                lo, hi = when[st.earliest], when[st.latest]
                shared = any(
                    other.verdict == st.verdict and _time_of(o, other.earliest) <= hi
                    and lo <= _time_of(o, other.latest)
                    for o in group if o is not s for other in o.steps)
                if not shared:
                    out.append((s, st))
    return sorted(out, key=lambda pair: -abs(pair[1].change))


def _time_of(series: Series, commit: str) -> str:
    return next(p.time for p in series.points if p.commit == commit)
