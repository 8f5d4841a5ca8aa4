"""Across-seed statistics: mean, standard deviation and 95% confidence interval per config.

A config run with ``--seeds N`` gives N records that differ only in ``seed``. Accuracy from one
seed is an anecdote (airbench reports means over hundreds of runs); these helpers group records
by every config field except the seed and summarise accuracy and throughput with Student-t
intervals, which are right for the small N typical here.
"""

from __future__ import annotations

import math

import pandas as pd
from scipy import stats

from harness.core.config import CONFIG_FIELDS

METRICS = ("eval_accuracy", "throughput")


def mean_ci(values: list[float], confidence: float = 0.95) -> tuple[float, float, float, float]:
    """``(mean, std, ci_low, ci_high)``; std and the interval are NaN for fewer than 2 values."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.5 + confidence / 2, df=n - 1) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half


def seed_summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per config (all seeds pooled) with n and mean/std/95% CI of each metric."""
    ok = df[df["status"] == "ok"]
    keys = [c for c in CONFIG_FIELDS if c != "seed" and c in ok.columns]
    rows = []
    if ok.empty:
        return pd.DataFrame()
    for group_key, group in ok.groupby(keys, dropna=False, sort=False):
        row = dict(zip(keys, group_key if isinstance(group_key, tuple) else (group_key,),
                       strict=True))
        row["n_seeds"] = int(group["seed"].nunique())
        for metric in METRICS:
            values = [float(v) for v in group[metric].dropna()]
            if values:
                mean, std, lo, hi = mean_ci(values)
                row.update({f"{metric}_mean": mean, f"{metric}_std": std,
                            f"{metric}_ci95_low": lo, f"{metric}_ci95_high": hi})
        rows.append(row)
    return pd.DataFrame(rows)
