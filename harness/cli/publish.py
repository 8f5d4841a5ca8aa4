"""``trainmark publish RESULTS... --out SITE``: a static, interactive site of every series over
commits, opened from disk (``render.published``): an overview with sparklines and filters, newest
regressions first; a page per series with zoom, steps and their commit ranges; a hardware
matrix; a page per record. Publishing again into the same folder redoes only what new records
changed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.history import add_step_options, step_options
from harness.cli.paths import writable_dir


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
    add_step_options(p)
    p.add_argument("--full", action="store_true",
                   help="rebuild everything, not only what new records changed")
    p.set_defaults(func=cmd_publish)


def cmd_publish(args: argparse.Namespace) -> int:
    metrics, threshold, alpha, min_segment = step_options(args)
    out = writable_dir("--out", args.out)

    from harness.analysis.cost import parse_prices
    from harness.render.published.build import publish
    from harness.store.frame import expand_paths

    prices = parse_prices(args.price)
    paths = expand_paths(args.results)
    summary = publish(paths, Path(out), metrics=metrics, reference=args.reference,
                      prices=prices, threshold=threshold, alpha=alpha,
                      min_segment=min_segment, title=args.title, full=args.full)
    print(f"published {summary.series} series from {summary.records} records in "
          f"{summary.seconds:.1f} s: {summary.groups_rebuilt} of {summary.groups} groups and "
          f"{summary.shards_written} of {summary.shards_written + summary.shards_kept} records "
          f"files redone; {summary.regressions} series with a regression")
    print(f"site: {(Path(out) / 'index.html').resolve().as_uri()}", file=sys.stderr)
    return 0
