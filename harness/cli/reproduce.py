"""``trainmark reproduce article``: the article's ConvNet-on-CIFAR-10 experiment
(``execution.reproduce``): per-epoch lines, one record per epoch, and a Markdown report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.paths import writable_file
from harness.errors import UserError

EXPERIMENTS = ("article",)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", help="which experiment: article")
    p.add_argument("--data-dir", default="data", help="where CIFAR-10 lives (default ./data)")
    p.add_argument("--download", action="store_true", help="download CIFAR-10 if missing")
    p.add_argument("--epochs", type=int, default=10, help="epochs (the article: 10)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    p.add_argument("--seed", type=int, default=0, help="seed for init and shuffling")
    p.add_argument("--deterministic", action="store_true", help="deterministic algorithms")
    p.add_argument("--dataset", default="cifar10",
                   help="cifar10 (the article) or synthetic (offline stand-in, 50,000 images)")
    p.add_argument("--train-samples", type=int,
                   help="cap on training images (for quick checks; default: all of them)")
    p.add_argument("--out", help="results file (default results/reproduce-article-<id>.jsonl)")
    p.add_argument("--report",
                   help="report path (default reports/reproduce-article-<id>/report.md)")
    p.set_defaults(func=cmd_reproduce)


def _check(args: argparse.Namespace) -> None:
    from harness.core.data import IMAGE_DATASETS

    if args.experiment not in EXPERIMENTS:
        raise UserError(f"unknown experiment {args.experiment!r}; valid: "
                        f"{', '.join(EXPERIMENTS)}")
    if args.epochs <= 0:
        raise UserError(f"--epochs must be > 0, got {args.epochs}")
    if args.train_samples is not None and args.train_samples <= 0:
        raise UserError(f"--train-samples must be > 0, got {args.train_samples}")
    if args.dataset not in IMAGE_DATASETS:
        raise UserError(f"unknown dataset {args.dataset!r}; valid: {', '.join(IMAGE_DATASETS)}")
    if args.report:
        writable_file("--report", args.report)
    if args.out:
        writable_file("--out", args.out, suffixes=(".jsonl",))


def cmd_reproduce(args: argparse.Namespace) -> int:
    from harness.core.data import check_dataset
    from harness.core.determinism import prepare_process
    from harness.core.devices import resolve_device
    from harness.execution.reproduce import run_article, write_report
    from harness.schema import new_run_id

    _check(args)
    device = resolve_device(args.device)
    check_dataset(args.dataset, args.data_dir, args.download)
    run_tag = new_run_id()
    out = Path(args.out or f"results/reproduce-article-{run_tag}.jsonl")
    if out.exists():
        raise UserError(f"results file {out} exists; choose another --out")
    prepare_process(args.deterministic)
    records = run_article(data_dir=args.data_dir, download=args.download, epochs=args.epochs,
                          device=device, seed=args.seed, dataset=args.dataset,
                          train_samples=args.train_samples, out=out,
                          deterministic=args.deterministic)
    report = write_report(records, Path(args.report or f"reports/reproduce-article-{run_tag}/"
                                                      "report.md"), args.dataset)
    print(f"\n{len(records)} epochs recorded in {out}; report: {report}", file=sys.stderr)
    return 0
