"""Plain-text tables of a results DataFrame (what ``trainmark run`` and ``show`` print)."""

from __future__ import annotations

import pandas as pd

from harness.analysis.report_data import unavailable_reason, unavailable_reasons
from harness.analysis.seeds import seed_summary

MIB = 1024 * 1024


def _fmt(value: object, spec: str) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return "-"
    return format(value, spec)


def _axis_labels(r) -> str:
    """Non-default extra axes of a record, e.g. 'nproc=2 compile'."""
    parts = []
    nproc = getattr(r, "nproc", None)
    if nproc is not None and nproc is not pd.NA and nproc == nproc and int(nproc) > 1:
        parts.append(f"nproc={int(nproc)}")
    for key, default, prefix in (("parallel", "ddp", ""), ("activation_checkpointing", "none",
                                                            "ac=")):
        value = getattr(r, key, None)
        if isinstance(value, str) and value != default:
            parts.append(prefix + value)
    for flag, label in (("compile", "compile"), ("channels_last", "NHWC"),
                        ("deterministic", "determ")):
        if getattr(r, flag, None) is True:
            parts.append(label)
    return " ".join(parts)


def summary_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The columns people read first, formatted for a terminal (missing values as '-')."""
    rows = []
    for r in df.itertuples(index=False):
        mem = r.peak_memory_allocated_bytes
        if mem is pd.NA or mem is None:
            mem = r.peak_rss_bytes  # CPU: the host process's peak is the memory that matters
        unit = "" if r.throughput_unit is pd.NA else str(r.throughput_unit).replace("/s", "")
        rows.append(
            {
                "model": r.model,
                "dataset": r.dataset,
                "device": r.device,
                "bs": r.batch_size,
                "precision": r.precision,
                "optim": r.optimizer,
                "axes": _axis_labels(r),
                "status": r.status,
                "throughput": f"{_fmt(r.throughput, ',.0f')} {unit}".strip(),
                "step ms": _fmt(r.step_time_ms_median, ".1f"),
                "iqr ms": _fmt(r.step_time_ms_iqr, ".1f"),
                "peak MiB": _fmt(None if mem is pd.NA or mem is None else mem / MIB, ".0f"),
                "eval acc": _fmt(r.eval_accuracy, ".3f"),
                "eval loss": _fmt(r.eval_loss, ".3f"),
                "error": "" if r.error is pd.NA or r.error is None else str(r.error)[:60],
            }
        )
    return pd.DataFrame(rows)


def summary_table(df: pd.DataFrame) -> str:
    """The summary; configs that did not run here (``unavailable``) point to one note per
    reason under the table instead of repeating it, cut, on every row."""
    if df.empty:
        return "(no records)"
    table = summary_frame(df)
    reasons = unavailable_reasons(df)
    number = {reason: i for i, (reason, _) in enumerate(reasons, 1)}
    for i, (status, err) in enumerate(zip(df["status"], df["error"], strict=True)):
        if status == "unavailable":
            table.loc[i, "error"] = f"[{number[unavailable_reason(err)]}] see below"
    for col in ("error", "axes"):
        if (table[col] == "").all():
            table = table.drop(columns=col)
    notes = [f"[{number[r]}] {n} config{'s' if n != 1 else ''} not run here: {r}"
             for r, n in reasons]
    return "\n".join([table.to_string(index=False), *([""] + notes if notes else [])])


def seed_table(df: pd.DataFrame) -> str:
    """Terminal table of configs with more than one seed ('' when there are none)."""
    summary = seed_summary(df)
    if summary.empty or (summary["n_seeds"] < 2).all():
        return ""
    summary = summary[summary["n_seeds"] >= 2]
    lines = []
    for r in summary.itertuples(index=False):
        acc = (f"{100 * r.eval_accuracy_mean:.2f}% ± {100 * r.eval_accuracy_std:.2f} "
               f"[{100 * r.eval_accuracy_ci95_low:.2f}, {100 * r.eval_accuracy_ci95_high:.2f}]")
        tp = (f"{r.throughput_mean:,.0f} ± {r.throughput_std:,.0f} "
              f"[{r.throughput_ci95_low:,.0f}, {r.throughput_ci95_high:,.0f}]")
        lines.append(f"{r.model} {r.dataset} bs={r.batch_size} {r.precision} {r.optimizer} "
                     f"(n={r.n_seeds}): accuracy {acc}; throughput {tp}")
    return "across seeds, mean ± std [95% CI]:\n" + "\n".join(lines)


def results_text(df: pd.DataFrame) -> str:
    """What ``trainmark run`` and ``show`` print: the summary, then the across-seed table."""
    seeds = seed_table(df)
    return summary_table(df) + ("\n\n" + seeds if seeds else "")
