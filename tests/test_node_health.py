"""Node health on synthetic records: a node slow on every config is flagged, nodes within the
noise are not, and the report shows the section only where a partition has several nodes."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from harness.analysis.node_health import node_health
from harness.render.report import write_report
from harness.store.frame import records_to_frame

MODELS = ("convnet", "resnet20", "transformer")
BATCHES = (8, 32)  # 3 models x 2 batch sizes: 6 configs per node


def records(speeds: dict[tuple[str, str], float], noise: float, seed: int = 0,
            only: dict[tuple[str, str], tuple[str, int]] | None = None) -> pd.DataFrame:
    """One ok record per (partition, node) x config: a base throughput per config, times the
    node's speed factor, times (1 + uniform noise). ``only`` slows one config of a node."""
    rng = random.Random(seed)
    rows = []
    for (part, node), speed in speeds.items():
        for i, model in enumerate(MODELS):
            for bs in BATCHES:
                tp = (100.0 + 50 * i + bs) * speed * (1 + rng.uniform(-noise, noise))
                if only and only.get((part, node)) == (model, bs):
                    tp *= 0.9
                rows.append({"model": model, "dataset": "synthetic", "batch_size": bs,
                             "precision": "fp32", "optimizer": "sgd", "device": "cuda:0",
                             "status": "ok", "throughput": tp, "throughput_unit": "samples/s",
                             "host": node, "node": node, "partition": part,
                             "device_name": f"GPU-{part}", "job_id": f"{node}-job"})
    return records_to_frame(rows)


def nodes(part: str, n: int, slow: dict[str, float] | None = None) -> dict:
    return {(part, f"{part}-n{i}"): (slow or {}).get(f"{part}-n{i}", 1.0) for i in range(n)}


def test_a_node_ten_percent_slow_on_every_config_is_flagged():
    health = node_health(records(nodes("h100", 4, slow={"h100-n2": 0.9}), noise=0.015))
    assert health.slow == [("h100", "h100-n2")]
    row = health.summary.set_index("node").loc["h100-n2"]
    assert row["configs"] == 6 and row["relative throughput"] == pytest.approx(0.9, abs=0.03)


@pytest.mark.parametrize("seed", range(5))
def test_nodes_within_the_noise_are_not_flagged(seed):
    health = node_health(records(nodes("h100", 4), noise=0.02, seed=seed))
    assert len(health.summary) == 4 and health.slow == []


def test_a_shortfall_within_the_nodes_own_scatter_is_not_flagged():
    """5% slow on average, but its ratios scatter by +-15%: a rule on the mean alone would
    flag it; the test weighs the shortfall against the scatter and does not."""
    health = node_health(records(nodes("h100", 4, slow={"h100-n2": 0.95}), noise=0.15))
    row = health.summary.set_index("node").loc["h100-n2"]
    assert row["relative throughput"] <= 0.97  # beyond the 3% threshold ...
    assert health.slow == []  # ... yet within the noise


def test_one_slow_config_is_not_a_slow_node():
    health = node_health(records(nodes("h100", 4), noise=0.01,
                                 only={("h100", "h100-n1"): ("resnet20", 32)}))
    assert health.slow == []
    detail = health.detail.set_index(["node", "config"])
    assert detail.loc[("h100-n1", "resnet20 synthetic 32 fp32 sgd"), "relative"] < 0.93


def test_partitions_are_judged_apart_and_a_lone_node_is_not_judged():
    speeds = {**nodes("a100", 3), **{k: 2.0 for k in nodes("h100", 3)},
              ("l4", "l4-n0"): 0.5}
    health = node_health(records(speeds, noise=0.01))
    assert health.slow == []  # h100 is twice as fast as a100: another partition, not a node
    assert set(health.summary["partition"]) == {"a100", "h100"}  # l4 has one node


def test_records_without_partitions_have_no_node_health(tmp_path):
    frame = records(nodes("h100", 4, slow={"h100-n3": 0.85}), noise=0.01)
    write_report(frame, tmp_path / "with")
    md = (tmp_path / "with" / "report.md").read_text()
    assert "## Node health" in md and "Slow beyond the noise: h100-n3 (h100)" in md
    plain = frame.drop(columns=["partition", "node"])
    write_report(plain, tmp_path / "without")
    assert "Node health" not in (tmp_path / "without" / "report.md").read_text()
    assert node_health(plain).slow == []
