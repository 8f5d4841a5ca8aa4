"""Why is it slower? Line up two profiles of the same config by operator.

Each profile (``core.profiling``, ``trainmark run --profile``) lists every operator's self time
per training step. ``explain_ops`` takes the difference, candidate minus baseline, per operator
and ranks operators by the size of their change; an operator's **share** is its change over the
net change of the whole step (the sum over all operators), so the shares of a slowdown that one
operator caused put that operator near 100%. Self time (time in the operator itself, not in the
operators it calls) is what adds up to the step without double counting. Device time is used
where the profile has it (CUDA kernels), else host time.

``matched_profiles`` pairs the records of two results sets by config (``analysis.compare``'s
matching) and keeps the pairs that both carry a profile.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.matching import match_axes


@dataclass(frozen=True)
class OpChange:
    name: str
    baseline_us: float  # self time per step
    candidate_us: float
    change_us: float  # candidate - baseline
    share: float | None  # change / net change of the step; None when the net change is 0


def _time_key(base: Mapping[str, dict], cand: Mapping[str, dict]) -> str:
    has_device = any(op.get("self_device_us") for op in (*base.values(), *cand.values()))
    return "self_device_us" if has_device else "self_cpu_us"


def explain_ops(base: Mapping[str, dict], cand: Mapping[str, dict]) -> list[OpChange]:
    """Every operator of either profile, largest change of self time first."""
    key = _time_key(base, cand)

    def t(ops: Mapping[str, dict], name: str) -> float:
        return float((ops.get(name) or {}).get(key) or 0.0)

    names = sorted(set(base) | set(cand))
    changes = {n: t(cand, n) - t(base, n) for n in names}
    net = sum(changes.values())
    rows = [OpChange(n, t(base, n), t(cand, n), changes[n], changes[n] / net if net else None)
            for n in names]
    return sorted(rows, key=lambda r: (-abs(r.change_us), r.name))


def load_ops(profile_dir: str | Path) -> dict[str, dict]:
    """A profile's ``ops.json`` (``core.profiling``) as {operator: its row}."""
    data = json.loads((Path(profile_dir) / "ops.json").read_text("utf-8"))
    return {op["name"]: op for op in data["ops"]}


def total_us(ops: Mapping[str, dict], key: str) -> float:
    return sum(float(op.get(key) or 0.0) for op in ops.values())


def _label(row: pd.Series, axes: list[str]) -> str:
    keys = ("model", "batch_size", "precision", "optimizer", "device")
    return " ".join(f"bs{row[a]}" if a == "batch_size" else str(row[a])
                    for a in keys if a in axes and row[a] is not None)


def matched_profiles(base: pd.DataFrame, cand: pd.DataFrame) -> list[dict[str, Any]]:
    """``[{"label", "config", "baseline", "candidate"}]`` with the profile folders of the
    newest profiled record of each config present on both sides."""
    axes, _ = match_axes(base, cand)

    def newest(frame: pd.DataFrame) -> dict[tuple, pd.Series]:
        out: dict[tuple, pd.Series] = {}
        if "profile_dir" not in frame.columns:
            return out
        for _, row in frame[frame["profile_dir"].notna()].iterrows():
            out[tuple(None if pd.isna(row[a]) else row[a] for a in axes)] = row
        return out

    b, c = newest(base), newest(cand)
    return [{"label": _label(b[k], axes), "config": dict(zip(axes, k, strict=True)),
             "baseline": str(b[k]["profile_dir"]), "candidate": str(c[k]["profile_dir"])}
            for k in b if k in c]
