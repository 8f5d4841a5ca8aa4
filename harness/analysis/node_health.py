"""Node health: is one node of a partition slower than its siblings on the same configs?

A throttling GPU, a bad DIMM or a mis-set BIOS makes one node of a partition slow, and a fleet
comparison that happens to land on it blames the whole node type. When several nodes of one
partition ran the same configs (``trainmark fleet --each-node``, or fleets merged), each node's
throughput is divided by the partition's median over its nodes, config by config. A node is
flagged *slow* when its ratios say so as a whole, not one number: a one-sided one-sample
t-test on the logs of its ratios (below 1, across the configs it shares with another node),
Bonferroni-corrected over the partition's nodes, significant at ``alpha`` and with a geometric
mean ratio at least ``threshold`` below 1. The spread of its ratios over configs is the noise
the test weighs the shortfall against: a node 10% slow on every config is flagged; a node that
is 10% slow on one config and level on the rest, or that wanders within a few percent, is not.
A t-test rather than a rank test: with the few configs a fleet runs, a signed-rank test cannot
reach significance at all (its smallest p-value with 3 configs is 0.125).

Pure functions on a results DataFrame (``load_results``; records need ``partition`` and
``node``); ``render.report`` shows the tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from scipy import stats

from harness.analysis.hardware import match_key

ALPHA = 0.05
THRESHOLD = 0.03  # a node at least 3% slower (geometric mean) before it is called slow
MIN_CONFIGS = 3  # configs a node must share with its siblings to be judged
SLOW, OK, TOO_FEW = "slow", "ok", "too few configs"


@dataclass
class NodeHealth:
    summary: pd.DataFrame  # one row per node of a partition with two or more nodes
    detail: pd.DataFrame  # one row per node and config: throughput relative to the median

    @property
    def slow(self) -> list[tuple[str, str]]:
        """(partition, node) of every node flagged slow."""
        flagged = self.summary[self.summary["verdict"] == SLOW]
        return list(zip(flagged["partition"], flagged["node"], strict=True))


def _config_label(row: pd.Series, key: list[str]) -> str:
    return " ".join(str(row[c]) for c in key)


def _one_sided_p(logs: list[float]) -> float:
    """p-value that the mean log ratio is below 0 (t-test); exact 0/1 without spread."""
    mean = sum(logs) / len(logs)
    if max(logs) - min(logs) < 1e-12:
        return 0.0 if mean < 0 else 1.0
    return float(stats.ttest_1samp(logs, 0.0, alternative="less").pvalue)


def node_health(df: pd.DataFrame, alpha: float = ALPHA,
                threshold: float = THRESHOLD) -> NodeHealth:
    """Each node's throughput relative to its partition's median per config, and which nodes
    are slow beyond the noise (see the module docstring)."""
    columns = ["partition", "node", "configs", "relative throughput", "lowest", "highest",
               "p-value", "verdict"]
    empty = NodeHealth(pd.DataFrame(columns=columns),
                       pd.DataFrame(columns=["partition", "node", "config", "throughput",
                                             "partition median", "relative"]))
    if "partition" not in df or "node" not in df or df.empty:
        return empty
    tp = pd.to_numeric(df["throughput"].astype(object), errors="coerce")
    ok = df[(df["status"] == "ok") & (tp > 0) & df["partition"].notna() & df["node"].notna()]
    ok = ok.assign(throughput=tp[ok.index].astype(float),
                   partition=ok["partition"].astype(str), node=ok["node"].astype(str))
    if ok.empty:
        return empty
    key = [c for c in match_key(ok) if c in ok.columns]
    med = (ok.groupby(["partition", "node", *key], dropna=False, sort=False)["throughput"]
             .median().reset_index())
    summary, detail = [], []
    for part, g in med.groupby("partition", sort=False):
        nodes = list(dict.fromkeys(g["node"]))
        if len(nodes) < 2:
            continue
        logs: dict[str, list[float]] = {n: [] for n in nodes}
        for _, c in g.groupby(key, dropna=False, sort=False):
            if c["node"].nunique() < 2:  # a config one node ran alone says nothing
                continue
            middle = float(c["throughput"].median())
            for _, row in c.iterrows():
                rel = row["throughput"] / middle
                logs[row["node"]].append(math.log(rel))
                detail.append({"partition": part, "node": row["node"],
                               "config": _config_label(row, key),
                               "throughput": row["throughput"], "partition median": middle,
                               "relative": rel})
        for node in nodes:
            r = logs[node]
            if len(r) < MIN_CONFIGS:
                summary.append({"partition": part, "node": node, "configs": len(r),
                                "relative throughput": math.exp(sum(r) / len(r)) if r
                                else math.nan, "lowest": math.exp(min(r)) if r else math.nan,
                                "highest": math.exp(max(r)) if r else math.nan,
                                "p-value": math.nan, "verdict": TOO_FEW})
                continue
            geo = math.exp(sum(r) / len(r))
            p = min(1.0, _one_sided_p(r) * len(nodes))  # Bonferroni over the partition's nodes
            slow = p < alpha and geo <= 1.0 - threshold
            summary.append({"partition": part, "node": node, "configs": len(r),
                            "relative throughput": geo, "lowest": math.exp(min(r)),
                            "highest": math.exp(max(r)), "p-value": p,
                            "verdict": SLOW if slow else OK})
    if not summary:
        return empty
    return NodeHealth(pd.DataFrame(summary, columns=columns),
                      pd.DataFrame(detail, columns=list(empty.detail.columns)))
