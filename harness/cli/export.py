"""``trainmark export mlflow RESULTS... --tracking-uri URI``: every stored record as an MLflow
run (``store.mlflow_export``): config as params, results as metrics, provenance and code
identity as tags, the loss curve as a metric history; one experiment per suite unless
``--experiment`` names one. Exporting again adds only new records."""

from __future__ import annotations

import argparse
import sys

from harness.errors import UserError

TARGETS = ("mlflow",)


def configure(p: argparse.ArgumentParser) -> None:
    p.description = "Export stored records into another tool (MLflow)."
    p.set_defaults(func=_no_target)
    sub = p.add_subparsers(dest="export_target", parser_class=type(p))
    ml = sub.add_parser("mlflow", allow_abbrev=False,
                        help="each record as an MLflow run; needs pip install "
                             "'trainmark[mlflow]'")
    ml.add_argument("results", nargs="+", help="results files or folders of them")
    ml.add_argument("--tracking-uri", required=True, metavar="URI",
                    help="any URI MLflow accepts: a tracking server's http:// URL, or a "
                         "sqlite:/// store")
    ml.add_argument("--experiment", metavar="NAME",
                    help="the MLflow experiment for every run (default: one per suite, "
                         "trainmark/SUITE, from each record's suite field; records without "
                         "one go to trainmark). A record already exported, into any "
                         "experiment, is not exported again")
    ml.set_defaults(func=cmd_mlflow)


def _no_target(args: argparse.Namespace) -> int:
    raise UserError(f"export: choose a target: {', '.join(TARGETS)}")


def cmd_mlflow(args: argparse.Namespace) -> int:
    if args.experiment is not None and not args.experiment.strip():
        raise UserError("--experiment must name an experiment, got ''")
    from harness.store.frame import expand_paths
    from harness.store.jsonl import iter_records
    from harness.store.mlflow_export import client, export_records

    paths = expand_paths(args.results)
    client(args.tracking_uri)  # mlflow missing: one line naming the extra, before any work
    summary = export_records(iter_records(paths), args.tracking_uri, args.experiment)
    names = ", ".join(f"{n} (id {i})" for n, i in summary.experiments.items()) or "no experiment"
    where = ", ".join(f"{n}: {k}" for n, k in summary.found_in.items())
    print(f"exported {summary.created} runs, {summary.skipped} already there"
          f"{f' ({where})' if where else ''}, into {names} in {summary.seconds:.1f} s")
    if not summary.created and not summary.skipped:
        print("no records in the files given", file=sys.stderr)
    return 0
