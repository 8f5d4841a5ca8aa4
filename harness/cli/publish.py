"""``trainmark publish RESULTS... --out SITE``: a static, interactive site of every series over
commits, opened from disk (``render.published``): an overview with sparklines and filters, newest
regressions first; a page per series with zoom, steps and their commit ranges; a hardware
matrix; a page per record. Publishing again into the same folder redoes only what new records
changed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.history import METRIC_NAMES
from harness.cli.paths import writable_dir
from harness.cli.verdict_options import parse_percent
from harness.errors import UserError


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="+",
                   help="results files or folders of them, from many commits and machines")
    p.add_argument("--out", default="reports/site",
                   help="the site's folder (default reports/site); "
                   "publishing into it again updates it")
    p.add_argument("--title", default="trainmark", help="the site's name in its pages")
    p.add_argument("--reference", metavar="MACHINE",
                   help="the hardware matrix's reference machine, until a reader picks "
                        "another (a machine, host or device name; default the first)")
    p.add_argument("--price", action="append", default=[], metavar="LABEL=USD_PER_HOUR",
                   help="hourly price of a machine (a machine, host or device name), for the "
                        "matrix's cost per million items; repeat per machine")
    p.add_argument("--metrics", default=",".join(METRIC_NAMES),
                   help=f"comma list of {', '.join(METRIC_NAMES)} (default all)")
    p.add_argument("--threshold", default="5%",
                   help="smallest change of the median that is a step (default 5%%)")
    p.add_argument("--alpha", default="0.01",
                   help="significance level after the Bonferroni correction (default 0.01)")
    p.add_argument("--min-segment", type=int, default=4, metavar="N",
                   help="commits needed on each side of a step (default 4)")
    p.add_argument("--full", action="store_true",
                   help="rebuild everything, not only what new records changed")
    p.set_defaults(func=cmd_publish)


def _metrics(text: str) -> list[str]:
    chosen = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in chosen if m not in METRIC_NAMES]
    if bad or not chosen:
        raise UserError(f"--metrics: unknown metric {', '.join(map(repr, bad)) or repr(text)}; "
                        f"valid: {', '.join(METRIC_NAMES)}")
    return chosen


def _alpha(text: str) -> float:
    try:
        alpha = float(text)
    except ValueError:
        alpha = -1.0
    if not 0 < alpha < 1:
        raise UserError(f"--alpha must be a probability in (0, 1), got {text!r}")
    return alpha


def cmd_publish(args: argparse.Namespace) -> int:
    metrics = _metrics(args.metrics)
    threshold = parse_percent(args.threshold, "--threshold")
    alpha = _alpha(args.alpha)
    if args.min_segment < 1:
        raise UserError(f"--min-segment must be >= 1, got {args.min_segment}")
    out = writable_dir("--out", args.out)

    from harness.analysis.cost import parse_prices
    from harness.render.published.build import publish
    from harness.store.frame import expand_paths

    prices = parse_prices(args.price)
    paths = expand_paths(args.results)
    summary = publish(paths, Path(out), metrics=metrics, reference=args.reference,
                      prices=prices, threshold=threshold, alpha=alpha,
                      min_segment=args.min_segment, title=args.title, full=args.full)
    print(f"published {summary.series} series from {summary.records} records in "
          f"{summary.seconds:.1f} s: {summary.groups_rebuilt} of {summary.groups} groups and "
          f"{summary.shards_written} of {summary.shards_written + summary.shards_kept} records "
          f"files redone; {summary.regressions} series with a regression")
    print(f"site: {(Path(out) / 'index.html').resolve().as_uri()}", file=sys.stderr)
    return 0
