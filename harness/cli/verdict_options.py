"""Verdict options and output shared by ``compare``, ``ab`` and ``baseline check``.

``settings_from_args`` validates the thresholds before anything runs or is read;
``emit_verdict`` prints one rendering and writes the Markdown/JSON files asked for.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from harness.cli.paths import writable_file
from harness.errors import UserError

FORMATS = ("json", "md", "text")  # render.verdicts.RENDERERS, named here to keep --help light


def parse_percent(text: str, flag: str) -> float:
    """``5%`` or ``5`` -> 0.05 (a bare number is in percent too)."""
    raw = str(text).strip()
    number = raw[:-1] if raw.endswith("%") else raw
    try:
        value = float(number)
    except ValueError:
        raise UserError(f"{flag} takes a percentage such as 5% or 2.5, got {text!r}") from None
    if not (math.isfinite(value) and 0 <= value < 100):
        raise UserError(f"{flag} must be a percentage in [0, 100), got {text!r}")
    return value / 100


# `ab` and `bisect` measure both trees in the same job, pair by pair in fresh workers, so they
# resolve a smaller change than a stored baseline against a run made later can (compare,
# baseline check). The evidence for 3%: docs/evidence.md, "The A/B gate".
SAME_JOB_THRESHOLD = "3%"


def add_verdict_options(p: argparse.ArgumentParser, threshold: str = "5%") -> None:
    p.add_argument("--threshold", default=threshold,
                   help="smallest throughput change that counts (default "
                        + threshold.replace("%", "%%") + ")")  # argparse formats help with %
    p.add_argument("--memory-threshold", default="5%",
                   help="smallest peak-memory growth that counts (default 5%%)")
    p.add_argument("--accuracy-tolerance", default="1.0",
                   help="accuracy drop in percentage points that counts (default 1.0)")
    p.add_argument("--alpha", default="0.01",
                   help="significance level of the Mann-Whitney U test (default 0.01)")
    p.add_argument("--format", choices=FORMATS, default="text",
                   help="what to print: text table, Markdown, or JSON")
    p.add_argument("--md-out", metavar="FILE", help="also write the Markdown verdict here")
    p.add_argument("--json-out", metavar="FILE", help="also write the JSON verdict here")
    p.add_argument("--allow-different-machines", action="store_true",
                   help="compare results from different hardware or software anyway")
    p.add_argument("--allow-inconclusive", action="store_true",
                   help="exit 0, not 3, when a verdict stays inconclusive (a change beyond the "
                        "threshold that is not significant, or too few samples to tell)")


def settings_from_args(args: argparse.Namespace):
    """``analysis.compare.Settings`` from the options; ``UserError`` naming a bad value.
    Also refuses output paths that cannot be written, so a long run cannot end in a traceback."""
    from harness.analysis.compare import Settings

    try:
        tolerance = float(str(args.accuracy_tolerance).rstrip("%").removesuffix("pt"))
        alpha = float(args.alpha)
    except ValueError:
        raise UserError(f"--accuracy-tolerance takes points (e.g. 1.0) and --alpha a "
                        f"probability; got {args.accuracy_tolerance!r}, {args.alpha!r}") from None
    if not (math.isfinite(tolerance) and 0 <= tolerance <= 100):
        raise UserError(f"--accuracy-tolerance must be in [0, 100] points, got {tolerance}")
    if not 0 < alpha < 1:
        raise UserError(f"--alpha must be in (0, 1), got {args.alpha!r}")
    for flag, path in (("--md-out", args.md_out), ("--json-out", args.json_out)):
        if path:
            writable_file(flag, path)
    return Settings(threshold=parse_percent(args.threshold, "--threshold"),
                    memory_threshold=parse_percent(args.memory_threshold, "--memory-threshold"),
                    accuracy_tolerance=tolerance / 100, alpha=alpha,
                    allow_different_machines=bool(args.allow_different_machines),
                    allow_inconclusive=bool(args.allow_inconclusive))


def emit_verdict(result: dict[str, Any], fmt: str, md_out: str | None, json_out: str | None,
                 title: str) -> int:
    """Print ``result`` in ``fmt``, write ``md_out``/``json_out`` if given; the exit status."""
    from harness.render.verdicts import render_json, render_markdown, render_text

    renderers = {"text": render_text, "json": render_json,
                 "md": lambda r: render_markdown(r, title)}
    for path, render in ((md_out, renderers["md"]), (json_out, render_json)):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(render(result), encoding="utf-8")
    print(renderers[fmt](result), end="" if fmt == "md" else "\n")
    return int(result["summary"]["exit_status"])
