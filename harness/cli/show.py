"""``trainmark show FILE...``: results files as a terminal table; export to CSV or Parquet."""

from __future__ import annotations

import argparse
import sys

from harness.cli.paths import writable_file


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", help="results .jsonl files")
    p.add_argument("--csv", help="also export to this CSV file")
    p.add_argument("--parquet", help="also export to this Parquet file")
    p.set_defaults(func=cmd_show)


def cmd_show(args: argparse.Namespace) -> int:
    for flag, path in (("--csv", args.csv), ("--parquet", args.parquet)):
        if path:
            writable_file(flag, path, suffixes=(f".{flag[2:]}",))
    from harness.render.tables import results_text
    from harness.store.frame import export, load_results

    frame = load_results(args.files)  # reads (and validates) every file before writing any
    for path in (args.csv, args.parquet):
        if path:
            print(f"wrote {export(frame, path)}", file=sys.stderr)
    print(results_text(frame))
    return 0
