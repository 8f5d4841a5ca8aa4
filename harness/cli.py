"""The ``trainmark`` command line: one function per subcommand; ``main()`` returns an exit code.

A ``UserError`` (bad input) becomes one line on stderr and exit status 2, before any results file
is created or changed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from harness.errors import UserError

RESULTS_DIR = Path("results")
# Modules adding subcommands: each exposes ``add_parser(subparsers)`` that sets ``func``.
COMMAND_MODULES: tuple[str, ...] = (
    "harness.reproduce",
    "harness.replay",
    "harness.peak",
    "harness.report",
    "harness.compare",
    "harness.ab",
    "harness.baselines",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + message
        raise UserError(f"{self.prog}: {message}")


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UserError(f"empty list {text!r}")
    return items


def _int_list(flag: str, text: str | None) -> list[int] | None:
    items = _split(text)
    if items is None:
        return None
    try:
        return [int(t) for t in items]
    except ValueError:
        raise UserError(f"{flag} takes comma-separated integers, got {text!r}") from None


# ------------------------------------------------------------------------------------- run


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a benchmark sweep (default: the quick suite)")
    p.add_argument("--suite", default=None, help="suite name in benchmarks/suites or a TOML path")
    p.add_argument("--models", help="comma list, e.g. convnet,resnet20")
    p.add_argument("--devices", help="comma list: auto, cpu, cuda, cuda:N, mps")
    p.add_argument("--batch-sizes", help="comma list of integers")
    p.add_argument("--precisions", help="comma list: fp32, amp, amp-fp16, amp-bf16")
    p.add_argument("--optimizers", help="comma list: sgd, adam, adagrad")
    p.add_argument("--dataset", help="comma list: synthetic, cifar10, synthetic-text, text:PATH")
    p.add_argument("--data-dir", default="data", help="where datasets live (default: ./data)")
    p.add_argument("--download", action="store_true", help="download CIFAR-10 if missing")
    p.add_argument("--lr", type=float, help="learning rate for every config (default: per model)")
    p.add_argument("--steps", type=int, help="timed steps per repeat")
    p.add_argument("--warmup", type=int, help="untimed warm-up steps")
    p.add_argument("--repeats", type=int, help="timed repeats (throughput samples)")
    p.add_argument("--seed", type=int, help="seed for model init and batch order")
    p.add_argument("--eval-samples", type=int, help="held-out samples evaluated after timing")
    p.add_argument("--train-samples", type=int, help="cap on training-set size")
    p.add_argument("--seeds", type=int, help="repeat each config over N consecutive seeds")
    p.add_argument("--deterministic", action="store_true", default=None,
                   help="deterministic algorithms: bitwise-repeatable losses (may be slower)")
    p.add_argument("--target-accuracy", type=float,
                   help="time-to-accuracy mode: train until held-out accuracy >= X (a fraction)")
    p.add_argument("--eval-interval", type=int,
                   help="steps between evaluations in time-to-accuracy mode (default 50)")
    p.add_argument("--max-steps", type=int,
                   help="upper bound on steps in time-to-accuracy mode (default 2000)")
    p.add_argument("--nproc", help="comma list of data-parallel process counts (DDP, torchrun)")
    p.add_argument("--compile", action="store_const", const=[True],
                   help="torch.compile each model (compile time recorded separately)")
    p.add_argument("--channels-last", action="store_const", const=[True],
                   help="NHWC memory format for the convolutional models")
    p.add_argument("--tensorboard", metavar="DIR",
                   help="also write loss curves and throughput as TensorBoard event files")
    p.add_argument("--out", help="results file (default: results/<run_id>.jsonl)")
    p.add_argument("--resume", action="store_true",
                   help="skip configs already recorded ok in --out (default: newest results file)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--no-report", action="store_true",
                   help="do not write reports/<run_id>/report.html at the end")
    p.set_defaults(func=cmd_run)


def _sweep_configs(args: argparse.Namespace):
    from harness.config import DEFAULT_SUITE, expand, load_suite, merge_settings

    suite = load_suite(args.suite or DEFAULT_SUITE)
    overrides = {
        "models": _split(args.models),
        "devices": _split(args.devices),
        "batch_sizes": _int_list("--batch-sizes", args.batch_sizes),
        "precisions": _split(args.precisions),
        "optimizers": _split(args.optimizers),
        "datasets": _split(args.dataset),
        "lr": args.lr,
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "seed": args.seed,
        "eval_samples": args.eval_samples,
        "train_samples": args.train_samples,
        "seeds": args.seeds,
        "deterministic": args.deterministic,
        "target_accuracy": args.target_accuracy,
        "eval_interval": args.eval_interval,
        "max_steps": args.max_steps,
        "nproc": _int_list("--nproc", args.nproc),
        "compile": args.compile,
        "channels_last": args.channels_last,
    }
    return expand(merge_settings(suite, overrides))


def _output_path(args: argparse.Namespace, run_id: str) -> Path:
    if args.out:
        out = Path(args.out)
    elif args.resume:
        existing = sorted(RESULTS_DIR.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
        if not existing:
            raise UserError(f"--resume: no results file in {RESULTS_DIR}/; pass --out FILE")
        out = existing[-1]
    else:
        out = RESULTS_DIR / f"{run_id}.jsonl"
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; give a .jsonl file path")
    if out.suffix != ".jsonl":
        raise UserError(f"--out {out}: results files end in .jsonl")
    if out.exists() and not args.resume:
        raise UserError(f"results file {out} exists; pass --resume to continue it or another --out")
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from harness import distributed
    from harness.config import record_key
    from harness.data import check_dataset
    from harness.determinism import prepare_process
    from harness.results import ResultsWriter, load_results, read_records
    from harness.runner import Runner, new_run_id
    from harness.summary import summary_table
    from harness.sweep import for_world, order_for_scaling, run_sweep

    configs = _sweep_configs(args)
    for name in dict.fromkeys(c.dataset for c in configs):
        check_dataset(name, args.data_dir, args.download)
    if args.tensorboard:
        from harness.tboard import check_available

        check_available()
    prepare_process(any(c.deterministic for c in configs))  # before CUDA starts
    run_id = new_run_id()
    dist_env = distributed.init(configs[0].device.split(":")[0])  # under torchrun / srun
    if dist_env is not None:
        configs = for_world(configs, dist_env.world_size)
        run_id = str(distributed.gather(run_id)[0])  # one run id, rank 0's
    is_writer = distributed.rank() == 0
    out = _output_path(args, run_id) if is_writer else Path(os.devnull)

    done: set[tuple] = set()
    previous: list[dict] = []
    if args.resume and is_writer and out.exists():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the torn tail is reported when the writer cuts it
            previous = read_records(out)
        ok_keys = {record_key(r) for r in previous if r.get("status") == "ok"}
        done = {c.key() for c in configs if c.key() in ok_keys}
        if previous and previous[0].get("run_id"):
            run_id = str(previous[0]["run_id"])
    if dist_env is not None:  # every rank must run the same configs, in the same order
        done = set(distributed.gather(done)[0])
    todo = [c for c in configs if c.key() not in done]
    if done:
        print(f"resuming {out}: {len(done)} configs already ok, {len(todo)} to run",
              file=sys.stderr)

    runner = Runner(run_id=run_id, data_dir=args.data_dir, download=args.download,
                    tensorboard_dir=args.tensorboard)
    writer = ResultsWriter(out) if is_writer else None
    finished = 0

    def store(rec: dict) -> None:
        nonlocal finished
        writer.write(rec)
        finished += 1

    try:
        run_sweep(order_for_scaling(todo), runner, store if writer else None,
                  previous=previous, quiet=args.quiet)
    except KeyboardInterrupt:
        print(f"interrupted: {finished} of {len(todo)} configs recorded in {out}; "
              f"continue with: trainmark run --resume --out {out}", file=sys.stderr)
        return 130
    finally:
        distributed.shutdown()
    if not is_writer:
        return 0
    frame = load_results([out])
    print(summary_table(frame))
    _print_seed_table(frame)
    failures = int((frame["status"] != "ok").sum())
    print(f"\n{len(frame)} records ({failures} not ok) in {out}")
    if not args.no_report:  # after the results are on disk: a report failure only warns
        from harness.report import REPORTS_DIR, report_after_run

        report_after_run(out, REPORTS_DIR / run_id)
    return 0


# ------------------------------------------------------------------------ list / env / show


def cmd_list(args: argparse.Namespace) -> int:
    from harness.config import list_suites
    from harness.data import DATASET_CHOICES
    from harness.devices import device_status
    from harness.optim import OPTIMIZERS
    from harness.precision import PRECISIONS
    from models import get_model_info, list_models

    print("models:")
    for name in list_models():
        info = get_model_info(name)
        print(f"  {name:12} {info.task:21} default dataset {info.default_dataset:15} "
              f"{info.description}")
    print("datasets:   " + ", ".join(DATASET_CHOICES))
    print("precisions: " + ", ".join(PRECISIONS) + "  (amp: bf16 on CPU, fp16 on CUDA/MPS)")
    print("optimizers: " + ", ".join(OPTIMIZERS))
    print("suites:     " + ", ".join(list_suites()))
    print("devices:")
    for name, present, detail in device_status():
        print(f"  {name:8} {'present' if present else 'absent ':8} {detail}")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    from harness import provenance
    from harness.devices import best_device, device_status

    info = dict(provenance.collect(best_device()))
    info["devices"] = [
        {"device": n, "present": ok, "detail": d} for n, ok, d in device_status()
    ]
    print(json.dumps(info, indent=2))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from harness.results import export, load_results
    from harness.summary import summary_table

    frame = load_results(args.files)
    if args.csv:
        print(f"wrote {export(frame, args.csv)}", file=sys.stderr)
    if args.parquet:
        print(f"wrote {export(frame, args.parquet)}", file=sys.stderr)
    print(summary_table(frame))
    _print_seed_table(frame)
    return 0


def _print_seed_table(frame) -> None:
    from harness.seeds import seed_table

    table = seed_table(frame)
    if table:
        print("\n" + table)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="trainmark", description="Training benchmark and reproducibility suite.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    _add_run(sub)
    sub.add_parser("list", help="models, datasets, precisions, optimizers, devices").set_defaults(
        func=cmd_list)
    sub.add_parser("env", help="provenance of this machine as JSON").set_defaults(func=cmd_env)
    p = sub.add_parser("show", help="print results files as a table")
    p.add_argument("files", nargs="+", help="results .jsonl files")
    p.add_argument("--csv", help="also export to this CSV file")
    p.add_argument("--parquet", help="also export to this Parquet file")
    p.set_defaults(func=cmd_show)
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv or ["run"])  # no arguments: the default quick suite
        if getattr(args, "func", None) is None:
            args = parser.parse_args(["run", *argv])
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"trainmark: error: {exc}", file=sys.stderr)
        return 2
