"""Regression verdicts, baseline vs candidate, per config: speed, memory, accuracy, status.

Pure functions on DataFrames of stored results (``store.frame.load_side``): ``compare_frames``
matches records on their config fields (``analysis.matching``) and judges each matched config,
returning a JSON-ready dict that ``render.verdicts`` prints as text, Markdown or JSON:

- **throughput**: Mann-Whitney U on the per-repeat samples (pooled over all records of the config
  on each side, e.g. the rounds of an A/B run) plus a relative threshold (``analysis.stats``);
- **memory**: the allocator's peak on accelerators, the host RSS training added on the CPU;
  a regression is growth of the median beyond ``--memory-threshold`` (and a floor:
  ``MEMORY_FLOOR``), and, where the figure varies between the runs of one side, a significant
  one (Mann-Whitney U), else inconclusive;
- **accuracy**: held-out accuracy lower by more than ``--accuracy-tolerance`` points;
- **status**: ``ok`` in the baseline but not in the candidate is a regression.

``summary.exit_status`` is 0 (no regression), 1 (a regression) or 3 (an inconclusive verdict
that may hide a regression, unless allowed: ``_blocks``); results that cannot be compared
(nothing matched, or different hardware/software without ``allow_different_machines``) raise
``UserError`` (exit 2 from the CLI).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.analysis import paired, stats
from harness.analysis.matching import (
    EXTRA_AXES,
    column_values,
    describe_differences,
    group_rows,
    machine_differences,
    match_axes,
    plain,
    unmatched_reason,
)
from harness.core.config import CONFIG_FIELDS
from harness.errors import UserError
from harness.schema import CPU_FEATURE_FIELDS, MACHINE_FIELDS

MIB = 1024 * 1024
# Exit statuses of compare, ab and baseline check. An inconclusive verdict (a change beyond the
# threshold that is not significant, or too few samples to tell) has its own status: a 20% drop
# measured on a noisy machine must not pass the gate as "no regression".
EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
# Every record column a comparison reads: the match key (config fields and the extra axes,
# ``ab_round`` for paired A/B rounds), the figures judged, and the machine, CPU and code
# fields it reports. ``trainmark compare`` asks the store for these alone (~60 of ~175
# columns: at a fleet-year of records the rest would be most of its memory);
# tests/test_command_columns.py checks the list against the code and the verdicts.
COMPARE_COLUMNS = tuple(dict.fromkeys((
    *CONFIG_FIELDS, *EXTRA_AXES, *MACHINE_FIELDS, *CPU_FEATURE_FIELDS, "ab_round", "status",
    "error", "throughput", "throughput_unit", "repeat_throughputs",
    "train_memory_allocated_bytes", "peak_memory_allocated_bytes", "train_rss_bytes",
    "peak_rss_bytes", "eval_accuracy", "injected_slowdown", "source", "git_commit",
    "code_digest", "code_identity")))


@dataclass(frozen=True)
class Settings:
    threshold: float = stats.DEFAULT_THRESHOLD  # relative throughput change (0.05 = 5%)
    memory_threshold: float = 0.05  # relative peak-memory growth
    accuracy_tolerance: float = 0.01  # absolute, as a fraction (0.01 = 1 point)
    alpha: float = stats.DEFAULT_ALPHA  # significance level of the two-sided test
    allow_different_machines: bool = False
    allow_inconclusive: bool = False  # inconclusive verdicts exit 0 instead of 3
    # The throughput test asks only "is the candidate slower?" (``analysis.confirmation``).
    one_sided: bool = False


def summarize(rows: list[dict[str, Any]], allow_inconclusive: bool) -> dict[str, int]:
    """The verdict counts, how many inconclusive ones block (``_blocks``), and the exit status:
    1 on any regression; else 3 on a blocking inconclusive verdict unless allowed; else 0."""
    counts = {v: sum(r["verdict"] == v for r in rows) for v in stats.VERDICTS}
    blocking = sum(r["verdict"] == stats.INCONCLUSIVE and r.get("blocking", True) for r in rows)
    code = (EXIT_REGRESSION if counts[stats.REGRESSION] else
            EXIT_INCONCLUSIVE if blocking and not allow_inconclusive else EXIT_OK)
    return {**counts, "blocking": blocking, "exit_status": code}


# ------------------------------------------------------------------------------ analysis


def _throughput_samples(rows: pd.DataFrame) -> list[float]:
    samples: list[float] = []
    for _, r in rows.iterrows():
        if plain(r.get("status")) != "ok":
            continue
        reps = r.get("repeat_throughputs")
        if isinstance(reps, (list, tuple)) and reps:
            samples.extend(stats.clean_samples(reps))
        elif plain(r.get("throughput")) is not None:
            samples.append(float(r["throughput"]))
    return samples


def _throughput(b: pd.DataFrame, c: pd.DataFrame, s: Settings) -> stats.SampleComparison:
    """Throughput test: paired over A/B rounds when every record carries ``ab_round``
    (``trainmark ab``: ``analysis.paired``), else Mann-Whitney U on all per-repeat samples of
    each side pooled."""
    rounds_b, rounds_c = column_values(b, "ab_round"), column_values(c, "ab_round")
    common = sorted(set(rounds_b) & set(rounds_c) - {None})
    if common and None not in rounds_b and None not in rounds_c:
        rounds = [(_throughput_samples(b[[x == r for x in rounds_b]]),
                   _throughput_samples(c[[x == r for x in rounds_c]])) for r in common]
        return paired.compare_rounds(rounds, threshold=s.threshold, alpha=s.alpha,
                                     worse_only=s.one_sided)
    return stats.compare_samples(_throughput_samples(b), _throughput_samples(c),
                                 threshold=s.threshold, alpha=s.alpha, worse_only=s.one_sided)


def _median(values: Iterable[Any]) -> float | None:
    vals = [float(v) for v in values if plain(v) is not None]
    if not vals:
        return None
    vals.sort()
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def _status(rows: pd.DataFrame) -> tuple[str, str | None]:
    """``ok`` when every record of the config is ok, else the first other status and error."""
    for _, r in rows.iterrows():
        status = plain(r.get("status")) or "unknown"
        if status != "ok":
            return status, plain(r.get("error"))
    return "ok", None


# The memory figure judged, the first both sides have, and growth smaller than its floor never
# counts. On accelerators: the allocator's peak without the resident dataset (what training
# added), else with it; the allocator is exact. On the CPU: the host RSS that training added in
# an isolated worker (TRAIN_RSS_FLOOR), else the process's peak RSS, which includes the ~1.2 GiB
# torch runtime, grows over a process's life, and differed by up to 75 MiB between two A/B
# workers running identical code on this project's CPU machine: only gross growth counts.
TRAIN_RSS_FLOOR = 32 * MIB
MEMORY_FLOOR = {"train_memory_allocated_bytes": MIB, "peak_memory_allocated_bytes": MIB,
                "train_rss_bytes": TRAIN_RSS_FLOOR, "peak_rss_bytes": 128 * MIB}


def _memory(b: pd.DataFrame, c: pd.DataFrame, s: Settings) -> dict[str, Any]:
    for field, floor in MEMORY_FLOOR.items():
        vb = stats.clean_samples(column_values(b, field))
        vc = stats.clean_samples(column_values(c, field))
        if vb and vc:
            mb, mc = _median(vb), _median(vc)
            change, verdict = stats.compare_values(
                mb, mc, threshold=s.memory_threshold, higher_is_better=False,
                min_abs_change=floor)
            p = None
            if verdict != stats.NO_CHANGE and len(set(vb)) + len(set(vc)) > 2:
                # The figure differs between runs of one side (host RSS does, by tens of MiB
                # between identical processes): like throughput, a change must then also be
                # significant, or it is inconclusive. An exact figure (the allocator's, one
                # value per side) is judged on the threshold alone.
                if stats.can_be_significant(len(vb), len(vc), s.alpha):
                    p = stats.mann_whitney_p(vb, vc)
                if p is None or p >= s.alpha:
                    verdict = stats.INCONCLUSIVE
            return {"field": field, "baseline": mb, "candidate": mc, "change": change,
                    "p_value": p, "verdict": verdict}
    measured = any(_median(column_values(side, f)) is not None for side in (b, c)
                   for f in MEMORY_FLOOR)
    # Not measured on either side (e.g. a pytest-benchmark of a function): nothing to judge.
    return {"field": None, "baseline": None, "candidate": None, "change": None,
            "p_value": None, "verdict": stats.INCONCLUSIVE if measured else stats.NO_CHANGE}


def _accuracy(b: pd.DataFrame, c: pd.DataFrame, s: Settings) -> dict[str, Any]:
    ab = _median(column_values(b, "eval_accuracy"))
    ac = _median(column_values(c, "eval_accuracy"))
    change, verdict = stats.compare_values(ab, ac, threshold=s.accuracy_tolerance,
                                           higher_is_better=True, absolute=True)
    if ab is None and ac is None:
        verdict = stats.NO_CHANGE  # nothing to judge (e.g. a pytest-benchmark of a function)
    return {"baseline": ab, "candidate": ac, "change": change, "verdict": verdict}


CORE_AXES = ("model", "dataset", "device", "batch_size", "precision", "optimizer")


def _distinguishing(axes: Sequence[str], keys: Sequence[tuple]) -> set[str]:
    """Axes besides the core ones needed to tell the configs apart (labels stay short: lr,
    which follows from model and optimizer, is not shown)."""
    core = [i for i, a in enumerate(axes) if a in CORE_AXES]
    by_core: dict[tuple, list[tuple]] = {}
    for k in keys:
        by_core.setdefault(tuple(k[i] for i in core), []).append(k)
    return {a for i, a in enumerate(axes) if a not in CORE_AXES
            and any(len({k[i] for k in group}) > 1 for group in by_core.values())}


def _label(config: dict[str, Any], varying: set[str]) -> str:
    if config.get("model") is None and config.get("benchmark"):
        return str(config["benchmark"])
    parts = [str(config.get("model")), str(config.get("dataset")), str(config.get("device")),
             f"bs={config.get('batch_size')}", str(config.get("precision")),
             str(config.get("optimizer"))]
    parts += [f"{k}={config[k]}" for k in sorted(varying - set(CORE_AXES)) if k in config]
    return " ".join(parts)


def judge_config(b: pd.DataFrame, c: pd.DataFrame, settings: Settings) -> dict[str, Any]:
    """One matched config's verdict from its baseline records ``b`` and candidate records ``c``:
    a status change decides alone; with both sides ok, throughput, memory and accuracy do."""
    st_b, err_b = _status(b)
    st_c, err_c = _status(c)
    row: dict[str, Any] = {"unit": plain(c["throughput_unit"].iloc[0])
                           or plain(b["throughput_unit"].iloc[0]),
                           "records": [len(b), len(c)],
                           "status": {"baseline": st_b, "candidate": st_c,
                                      "error": err_c or err_b}}
    if st_b == "ok" and st_c != "ok":
        return {**row, "verdict": stats.REGRESSION, "failed": ["status"],
                "why": f"ok -> {st_c}" + (f": {err_c}" if err_c else "")}
    if st_b != "ok" and st_c == "ok":
        return {**row, "verdict": stats.IMPROVEMENT, "failed": [], "why": f"{st_b} -> ok"}
    if st_b == st_c == "unavailable":
        # The config does not run here on either side (emulated bf16 refused on this CPU, fp8
        # without float8 tensor cores): nothing to judge, and nothing that could hide a
        # regression, so it does not block the gate.
        return {**row, "verdict": stats.INCONCLUSIVE, "failed": [], "blocking": False,
                "why": "unavailable on both sides" + (f": {err_c or err_b}"
                                                       if err_c or err_b else "")}
    if st_b != "ok":
        return {**row, "verdict": stats.INCONCLUSIVE, "failed": [],
                "why": f"not ok on both sides ({st_b} / {st_c})"}
    tp = _throughput(b, c, settings)
    mem, acc = _memory(b, c, settings), _accuracy(b, c, settings)
    row.update(throughput=tp.as_dict(), memory=mem, accuracy=acc)
    parts = {"throughput": tp.verdict, "memory": mem["verdict"], "accuracy": acc["verdict"]}
    row["verdict"] = stats.combine(parts.values())
    row["failed"] = [k for k, v in parts.items() if v == stats.REGRESSION]
    row["why"] = _why(row, tp, parts)
    if row["verdict"] == stats.INCONCLUSIVE:
        row["blocking"] = _blocks(row, parts, settings)
    return row


def _blocks(row: dict[str, Any], parts: dict[str, str], s: Settings) -> bool:
    """Whether an inconclusive verdict may hide a regression, and so fails the gate (exit 3).
    It does not when every inconclusive metric is a possible *improvement*: throughput measured
    better by more than the threshold, testable but not significant, whose confidence interval
    excludes a drop beyond the threshold (too few samples to test always block); memory whose
    median shrank. An unchanged tree measured +8.8% (p=0.02) must not block a merge."""
    tp, mem = row["throughput"], row["memory"]
    improved = {"throughput": tp["p_value"] is not None and tp["change"] > s.threshold
                and tp["ci_low"] is not None and tp["ci_low"] > -s.threshold,
                "memory": mem["change"] is not None and mem["change"] < 0}
    return any(v == stats.INCONCLUSIVE and not improved.get(name, False)
               for name, v in parts.items())


def compare_frames(base: pd.DataFrame, cand: pd.DataFrame,
                   settings: Settings = Settings()) -> dict[str, Any]:
    """The whole comparison as a JSON-ready dict (rows, summary, unmatched configs, notes)."""
    knobbed = [v for v in column_values(base, "injected_slowdown") if v]
    if knobbed:
        raise UserError(f"the baseline holds {len(knobbed)} record(s) measured with the test-only "
                        f"slowdown knob (TRAINMARK_INJECT_SLOWDOWN={knobbed[0]:g}); it cannot "
                        "be a baseline")
    diffs = machine_differences(base, cand)
    if diffs and not settings.allow_different_machines:
        raise UserError("baseline and candidate come from different machines or software ("
                        + describe_differences(diffs)
                        + "); pass --allow-different-machines to compare anyway")
    # Same CPU model, different features (a VM that hides AVX-512, ONEDNN_MAX_CPU_ISA): bf16
    # and vectorised kernels differ many-fold, so say so beside every verdict.
    cpu_diffs = machine_differences(base, cand, CPU_FEATURE_FIELDS)
    axes, notes = match_axes(base, cand)
    gb, gc = group_rows(base, axes), group_rows(cand, axes)
    matched = [k for k in gb if k in gc]
    if not matched:
        raise UserError(f"no config matched: the baseline has {len(gb)} configs, the candidate "
                        f"{len(gc)}; " + unmatched_reason(axes, list(gb), list(gc)))
    varying = _distinguishing(axes, matched)
    rows = []
    for key in matched:
        config = {a: v for a, v in zip(axes, key, strict=True) if v is not None}
        row = judge_config(base.iloc[gb[key]], cand.iloc[gc[key]], settings)
        rows.append({"config": config, "label": _label(config, varying), **row})
    unmatched = [k for k in gb if k not in gc] + [k for k in gc if k not in gb]
    shown = _distinguishing(axes, matched + unmatched)
    only_b = [_label(dict(zip(axes, k, strict=True)), shown) for k in gb if k not in gc]
    only_c = [_label(dict(zip(axes, k, strict=True)), shown) for k in gc if k not in gb]
    return {
        "summary": {"configs": len(rows), **summarize(rows, settings.allow_inconclusive)},
        "settings": dataclasses.asdict(settings),
        "matched_on": axes,
        "machine_differences": {k: {"baseline": b, "candidate": c}
                                for k, (b, c) in diffs.items()},
        "cpu_feature_differences": {k: {"baseline": b, "candidate": c}
                                    for k, (b, c) in cpu_diffs.items()},
        "baseline": _side_info(base),
        "candidate": _side_info(cand),
        "rows": rows,
        "only_in_baseline": only_b,
        "only_in_candidate": only_c,
        "notes": notes,
    }


def _why(row: dict[str, Any], tp: stats.SampleComparison, parts: dict[str, str]) -> str:
    bits = []
    mem = row["memory"]
    if parts["memory"] in (stats.REGRESSION, stats.IMPROVEMENT):
        bits.append(f"memory {mem['change']:+.1%} ({parts['memory']})")
    elif parts["memory"] == stats.INCONCLUSIVE and mem.get("change") is not None:
        p = "" if mem.get("p_value") is None else f", p={mem['p_value']:.2g}"
        bits.append(f"memory {mem['change']:+.1%} (inconclusive: varies between runs{p})")
    elif parts["memory"] == stats.INCONCLUSIVE:  # an inconclusive row must say why
        bits.append("memory (inconclusive: measured on one side only)")
    acc = row["accuracy"]
    if parts["accuracy"] in (stats.REGRESSION, stats.IMPROVEMENT):
        bits.append(f"accuracy {100 * acc['change']:+.1f} pt ({parts['accuracy']})")
    elif parts["accuracy"] == stats.INCONCLUSIVE:
        side = "baseline" if acc["baseline"] is not None else "candidate"
        bits.append(f"accuracy (inconclusive: measured on the {side} only)")
    bits.append(f"throughput: {tp.reason}")
    return "; ".join(bits)


def _side_info(frame: pd.DataFrame) -> dict[str, Any]:
    def values(name: str) -> list[Any]:
        return sorted({str(v) for v in column_values(frame, name) if v is not None})

    return {"records": len(frame), "sources": values("source"), "git_commit": values("git_commit"),
            **{k: values(k) for k in (*MACHINE_FIELDS, *CPU_FEATURE_FIELDS)}}
