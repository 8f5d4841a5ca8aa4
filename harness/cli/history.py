"""``trainmark history RESULTS...``: every config's throughput, memory and accuracy over
commits, with detected steps (``analysis.history``), as history.html, history.md and PNGs
(``render.history``); a summary of the regression steps on stdout."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NamedTuple

from harness.cli.paths import writable_dir
from harness.cli.verdict_options import parse_percent
from harness.errors import UserError

METRIC_NAMES = ("throughput", "memory", "accuracy")  # analysis.history.METRICS, kept light


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="+",
                   help="results files or folders of them, from many commits (e.g. what CI "
                        "appends on every push to main)")
    p.add_argument("--out", default="reports/history", help="report folder "
                   "(default reports/history)")
    add_step_options(p)
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="what to print: the regression steps as text, or every step as JSON")
    p.set_defaults(func=cmd_history)


def add_step_options(p: argparse.ArgumentParser) -> None:
    """The change-point options ``history`` and ``publish`` share."""
    p.add_argument("--metrics", default=",".join(METRIC_NAMES),
                   help=f"comma list of {', '.join(METRIC_NAMES)} (default all)")
    p.add_argument("--threshold", default="5%",
                   help="smallest change of the median that is a step (default 5%%)")
    p.add_argument("--alpha", default="0.01",
                   help="significance level after the Bonferroni correction (default 0.01)")
    p.add_argument("--min-segment", type=int, default=4, metavar="N",
                   help="commits needed on each side of a step (default 4)")


class StepOptions(NamedTuple):
    metrics: list[str]
    threshold: float  # relative change of the median (0.05 = 5%)
    alpha: float
    min_segment: int


def step_options(args: argparse.Namespace) -> StepOptions:
    """The shared change-point options, checked: ``UserError`` naming a bad value."""
    chosen = [m.strip() for m in args.metrics.split(",") if m.strip()]
    bad = [m for m in chosen if m not in METRIC_NAMES]
    if bad or not chosen:
        raise UserError(f"--metrics: unknown metric "
                        f"{', '.join(map(repr, bad)) or repr(args.metrics)}; "
                        f"valid: {', '.join(METRIC_NAMES)}")
    threshold = parse_percent(args.threshold, "--threshold")
    try:
        alpha = float(args.alpha)
    except ValueError:
        alpha = -1.0  # reported below with the out-of-range message
    if not 0 < alpha < 1:
        raise UserError(f"--alpha must be a probability in (0, 1), got {args.alpha!r}")
    if args.min_segment < 1:
        raise UserError(f"--min-segment must be >= 1, got {args.min_segment}")
    return StepOptions(chosen, threshold, alpha, args.min_segment)


def cmd_history(args: argparse.Namespace) -> int:
    metrics, threshold, alpha, min_segment = step_options(args)
    writable_dir("--out", args.out)

    from harness.analysis.history import HISTORY_COLUMNS, build_history, regressions, runner_steps
    from harness.render.history import write_history
    from harness.store.frame import expand_paths, load_results

    paths = expand_paths(args.results)
    # Runners of one kind of machine are pooled; each one's own series shows a runner that
    # alone got slower (analysis.history, "Runners are pooled").
    everything = build_history(load_results(paths, HISTORY_COLUMNS), metrics,
                               threshold=threshold, alpha=alpha, min_segment=min_segment,
                               by_runner=True)
    history = [s for s in everything if s.host is None]
    alone = runner_steps(everything)
    path = write_history(history, Path(args.out), threshold=threshold, alpha=alpha,
                         min_segment=min_segment, sources=[str(p) for p in paths],
                         alone=alone)
    regs = regressions(history)
    if args.format == "json":  # every step, improvements too, for tools
        steps = [(s, st) for s in history for st in s.steps] + alone
        print(json.dumps([{"config": s.config, "machine": s.machine, "host": s.host,
                           "metric": s.metric,
                           "verdict": st.verdict, "last_good": st.last_before,
                           "first_changed": st.first_after,
                           "first_changed_range": [st.earliest, st.latest],
                           "range_commits": st.candidates, "before": st.before,
                           "after": st.after, "change": st.change, "p_value": st.p_value,
                           "p_adjusted": st.p_adjusted}
                          for s, st in steps], indent=2, default=str))
    else:
        from harness.render.figures import series_label

        for s, st in regs:
            where = ("" if st.candidates == 1 else
                     f"; the first changed commit may be any of {st.candidates} from "
                     f"{st.earliest[:12]} to {st.latest[:12]} (bisect them, or measure them "
                     "again with `trainmark backfill`)")
            print(f"REGRESSION {series_label(s.config)} {s.metric} {st.change:+.1%} between "
                  f"{st.last_before[:12]} and {st.first_after[:12]} (p={st.p_adjusted:.2g})"
                  + where)
        for s, st in alone:
            print(f"RUNNER {s.host}: {series_label(s.config)} {s.metric} {st.change:+.1%} "
                  f"between {st.last_before[:12]} and {st.first_after[:12]} "
                  f"(p={st.p_adjusted:.2g}) on this runner alone: the other runners of "
                  f"{s.machine} did not change (the runner, not the code?)")
        print(f"{len(regs)} regression steps in {len(history)} series"
              + (f"; {len(alone)} steps of one runner alone" if alone else ""))
    print(f"history: {path} and {path.with_name('history.md')}", file=sys.stderr)
    return 0
