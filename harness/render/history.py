"""``trainmark history``'s outputs: history.html, history.md and one PNG per metric, from the
series and steps of ``analysis.history``. The same conventions as ``trainmark report``: one
``Section`` list rendered both ways (``render.document``), self-contained HTML, every string
from a results file escaped.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from harness import __version__
from harness.analysis.history import METRICS, SUPPORT, Series, Step, regressions
from harness.errors import UserError
from harness.render.document import Section, Table, write_pages
from harness.render.figures import Chart, history_figure, series_label


def _value(series: Series, value: float) -> float:
    return value / 2**20 if series.unit == "bytes" else value


def _unit(series: Series) -> str:
    return "MiB" if series.unit == "bytes" else series.unit


def steps_table(pairs: Sequence[tuple[Series, object]], hosts: bool = False) -> pd.DataFrame:
    """One row per step: where (the commit range), how large, how sure (``hosts``: and on
    which runner)."""
    rows = [{
        "config": series_label(s.config),
        "machine": f"{s.machine} on {s.host}" if hosts else s.machine, "metric": s.metric,
        "last good": st.last_before[:12], "first changed": st.first_after[:12],
        "may be": (st.first_after[:12] if st.candidates == 1
                   else f"{st.earliest[:12]} .. {st.latest[:12]} ({st.candidates} commits)"),
        "before": _value(s, st.before), "after": _value(s, st.after), "unit": _unit(s),
        "change": f"{st.change:+.1%}", "p (adjusted)": f"{st.p_adjusted:.2g}",
        "verdict": st.verdict,
    } for s, st in pairs]
    return pd.DataFrame(rows, columns=["config", "machine", "metric", "last good",
                                       "first changed", "may be", "before", "after", "unit",
                                       "change",
                                       "p (adjusted)", "verdict"])


def _runs(series: Series) -> str:
    """Records per commit: 1 for CI's one run per commit, the rounds of a backfill."""
    low, high = min(p.records for p in series.points), max(p.records for p in series.points)
    return str(low) if low == high else f"{low}-{high}"


def series_table(history: Sequence[Series]) -> pd.DataFrame:
    rows = [{"config": series_label(s.config), "machine": s.machine, "metric": s.metric,
             "commits": len(s.points), "runs per commit": _runs(s),
             "first": s.points[0].commit[:12], "last": s.points[-1].commit[:12],
             "latest": _value(s, s.points[-1].value), "unit": _unit(s),
             "steps": len(s.steps)} for s in history]
    return pd.DataFrame(rows, columns=["config", "machine", "metric", "commits",
                                       "runs per commit", "first", "last", "latest", "unit",
                                       "steps"])


def history_sections(history: Sequence[Series], charts: Sequence[Chart], threshold: float,
                     alpha: float, min_segment: int,
                     alone: Sequence[tuple[Series, Step]] = ()) -> list[Section]:
    regs = regressions(history)
    steps = [(s, st) for s in history for st in s.steps]
    method = (f"A step is reported where binary segmentation splits a series into two stretches "
              f"whose per-commit values differ by a two-sided Mann-Whitney U test with p below "
              f"{alpha:g} after multiplying by the number of splits tried (Bonferroni), and whose "
              f"medians differ by more than {threshold:.1%}; each side needs at least "
              f"{min_segment} commits. Each commit is one point: the median of its records "
              f"(one per run: CI appends one per commit, `trainmark backfill` one per round). "
              f"Noise near a step can move the best split by a commit or more, so 'may be' gives "
              f"every commit the data do not rule out as the first changed one: split positions "
              f"that the data disfavour by less than {SUPPORT:g} to 1 under Laplace noise (the "
              f"L1 cost's model) with the series' mean absolute deviation as its scale.")
    return [
        Section("Regressions", "regressions", [
            f"{len(regs)} regression step{'s' * (len(regs) != 1)} in {len(history)} series, "
            "largest first. 'first changed' is the first commit measured after the step: the "
            "change landed after 'last good' and no later than it, if that commit's point "
            "is not itself noise; 'may be' is the range the noise allows (bisect it)."],
            [Table(steps_table(regs), empty="No regression step in any series.")]),
        *([Section("Runners", "runners", [
            f"{len(alone)} step{'s' * (len(alone) != 1)} of one runner alone: a runner's own "
            "series stepped where no other runner of the same machine did. Series pool the "
            "runners of one kind of machine, so such a step shows in them at a fraction of its "
            "size, or not at all; it points at the runner (hardware, neighbours), not the "
            "code."], [Table(steps_table(alone, hosts=True))])] if alone else []),
        Section("Method", "method", [method]),
        Section("Series", "series", [], [*charts, Table(series_table(history), "All series")]),
        Section("All steps", "steps", [], [Table(steps_table(steps),
                                                 empty="No step in any series.")],
                collapsed=True),
    ]


def write_history(history: Sequence[Series], out_dir: str | os.PathLike[str], *,
                  threshold: float, alpha: float, min_segment: int,
                  sources: Sequence[str], alone: Sequence[tuple[Series, Step]] = ()) -> Path:
    """history.html, history.md and ``history_METRIC.png`` into ``out_dir``; the HTML's path."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the history report")
    if not history:
        raise UserError("no series: the results hold no ok records with a git commit")
    charts = []
    for metric in METRICS:
        of_metric = [s for s in history if s.metric == metric]
        png = history_figure(of_metric, f"{metric} by commit")
        if png is not None:
            charts.append(Chart(f"history_{metric}", f"{metric.capitalize()} by commit",
                                "Dashed lines: detected steps (red regression, green "
                                "improvement); thin lines: the medians on either side.", png))
    sections = history_sections(history, charts, threshold, alpha, min_segment, alone)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    commits = {p.commit for s in history for p in s.points}
    meta = [f"Generated {now} by trainmark {__version__} from {len(sources)} input(s): "
            f"{len(history)} series over {len(commits)} commits."]
    return write_pages(out, "history", "trainmark history", meta, sections, charts)
