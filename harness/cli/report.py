"""``trainmark report FILE...``: HTML + Markdown report of results files, with a hardware
comparison when they come from several machines (``render.report``)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness.cli.paths import writable_dir


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", help="results .jsonl files (one or more machines), or "
                                            "folders of them (a `trainmark fleet` --out-dir)")
    p.add_argument("--out", help="report folder (default: reports/<results file name>)")
    p.add_argument("--baseline", metavar="FILE_OR_LABEL",
                   help="reference machine for the hardware comparison: a results file, "
                        "machine label, host or device name (default: the first machine)")
    p.add_argument("--price", action="append", default=[], metavar="LABEL=USD_PER_HOUR",
                   help="hourly price of a machine (machine label, host or device name), e.g. "
                        "h200=3.49; repeatable. Adds cost per million samples (tokens for "
                        "language models)")
    p.add_argument("--allow-different-code", action="store_true",
                   help="report records produced by different code together (refused by "
                        "default: their code identities differ)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from harness.analysis.cost import parse_prices
    from harness.analysis.matching import check_same_code
    from harness.render.report import default_out_dir, load_inputs, write_report
    from harness.store.frame import expand_paths

    started = time.perf_counter()
    prices = parse_prices(args.price)  # a malformed price fails before any file is read
    if args.out:
        writable_dir("--out", args.out)
    files = [f for name in args.files  # a folder stands for its results files
             for f in (expand_paths([name]) if Path(name).is_dir() else [name])]
    frame, skipped = load_inputs(files)
    check_same_code(frame, "the report", args.allow_different_code)
    for line in skipped:
        print(f"trainmark: warning: {line} (skipped)", file=sys.stderr)
    _warn_one_machine(frame)
    out = Path(args.out) if args.out else default_out_dir(args.files)
    path = write_report(frame, out, baseline=args.baseline, skipped=skipped, prices=prices)
    print(f"report: {path} and {path.with_name('report.md')} "
          f"({len(frame)} records, {time.perf_counter() - started:.1f} s)")
    return 0


def _warn_one_machine(frame) -> None:  # noqa: ANN001 (a results DataFrame)
    """Several files from what the report takes for one machine (same host and device name:
    e.g. two machines both called ``vm``) get no hardware comparison: say so, not only by the
    comparison's absence."""
    from harness.analysis.report_data import machine_labels

    labels = machine_labels(frame)
    if frame["source"].nunique() > 1 and labels.nunique() == 1:
        print(f"trainmark: warning: {frame['source'].nunique()} files, all from one machine "
              f"({labels.iloc[0]} on host {frame['host'].iloc[0]}): no hardware comparison. "
              "A machine is its host and device name; give two machines different host names",
              file=sys.stderr)
