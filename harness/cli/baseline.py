"""``trainmark baseline record|check|path``: this machine's stored baseline.

    trainmark baseline record [--rounds 3] [suite flags]   # run the suite, (re)write the file
    trainmark baseline check  [--rounds 3] [suite flags]   # run it again, compare, exit 0/1/2/3
                                                           # (more runs while inconclusive,
                                                           # regressions confirmed by reruns)
    trainmark baseline path   [RESULTS_FILE]               # which file applies here

Bad input (options, sweep, a missing baseline) fails before any folder is created.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from harness.cli.ab import (
    DEFAULT_CONFIRM,
    DEFAULT_EXTRA_TIME_S,
    DEFAULT_SUITE,
    DEFAULT_THREADS,
    add_run_compat_options,
    check_positive,
)
from harness.cli.paths import writable_dir
from harness.cli.sweep_options import add_sweep_options, configs_from_args, run_arguments, suite_of
from harness.cli.verdict_options import add_verdict_options, emit_verdict, settings_from_args
from harness.errors import UserError

BASELINE_DIR = Path("results") / "baselines"
DEFAULT_ROUNDS = 3  # fresh-process runs of the suite per baseline (or check)


def configure(p: argparse.ArgumentParser) -> None:
    p.description = "Record or check this machine's stored baseline (results/baselines/)."
    p.set_defaults(func=_no_subcommand)
    bsub = p.add_subparsers(dest="baseline_command", parser_class=type(p))

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dir", default=str(BASELINE_DIR),
                       help=f"baseline directory (default {BASELINE_DIR})")
        q.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                       help=f"OMP/MKL threads per run; 0 inherits (default {DEFAULT_THREADS})")

    def rounds(q: argparse.ArgumentParser) -> None:
        q.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                       help=f"fresh-process runs of the suite (default {DEFAULT_ROUNDS})")

    rec = bsub.add_parser("record", allow_abbrev=False,
                          help="run the suite (default: ci) and store it as the baseline for "
                               "this machine")
    rounds(rec)
    common(rec)
    add_sweep_options(rec, default_suite=DEFAULT_SUITE)
    add_run_compat_options(rec)
    rec.set_defaults(func=cmd_record)

    chk = bsub.add_parser("check", allow_abbrev=False,
                          help="run the suite and compare with this machine's baseline")
    rounds(chk)
    chk.add_argument("--out-dir", help="where the runs and verdicts go "
                                       "(default results/baseline-check-<id>)")
    chk.add_argument("--extra-time", type=float, default=DEFAULT_EXTRA_TIME_S,
                     metavar="SECONDS",
                     help="while a verdict is inconclusive, run the suite once more, for up "
                          f"to this long (default {DEFAULT_EXTRA_TIME_S:g}; 0 never)")
    chk.add_argument("--confirm", type=int, default=DEFAULT_CONFIRM, metavar="N",
                     help="on a regression, run the suite --rounds times more, N times, each "
                          "judged alone; a regression stands only if every time confirms it "
                          f"(default {DEFAULT_CONFIRM}; 0 trusts the first)")
    common(chk)
    add_verdict_options(chk)
    add_sweep_options(chk, default_suite=DEFAULT_SUITE)
    add_run_compat_options(chk)
    chk.set_defaults(func=cmd_check)

    pth = bsub.add_parser("path", allow_abbrev=False,
                          help="print the baseline file for this machine")
    pth.add_argument("results", nargs="*", metavar="RESULTS",
                     help="key from these results' provenance instead of this machine's")
    common(pth)
    pth.set_defaults(func=cmd_path)


def _no_subcommand(args: argparse.Namespace) -> int:
    raise UserError("baseline: choose a subcommand: record, check or path")


def _run_flags(args: argparse.Namespace) -> tuple[list[str], int]:
    """Validate rounds, threads, --dir and the sweep; the ``trainmark run`` arguments of a
    round, and how many configs a round runs."""
    from harness.core.data import check_dataset
    from harness.core.suites import suite_path

    check_positive("--rounds", args.rounds)
    check_positive("--threads", args.threads, allow_zero=True)
    writable_dir("--dir", args.dir)
    configs = configs_from_args(args)
    for name in dict.fromkeys(c.dataset for c in configs):
        check_dataset(name, args.data_dir, args.download)
    flags = run_arguments(args, suite_path(suite_of(args)))
    if args.tensorboard:
        flags += ["--tensorboard", str(writable_dir("--tensorboard", args.tensorboard).resolve())]
    return flags, len(configs)


def _announce(args: argparse.Namespace, n_configs: int) -> None:
    print(f"baseline: {n_configs} configs x {args.rounds} runs, threads="
          f"{args.threads or 'inherited'}", file=sys.stderr)


def cmd_record(args: argparse.Namespace) -> int:
    from harness.execution.baselines import (
        baseline_path,
        key_of_records,
        run_rounds,
        write_baseline,
    )
    from harness.probes.provenance import SOURCE_ROOT
    from harness.store.frame import load_side

    flags, n_configs = _run_flags(args)
    _announce(args, n_configs)
    with tempfile.TemporaryDirectory(prefix="trainmark-baseline-") as tmp:
        runs = run_rounds(SOURCE_ROOT, flags, args.rounds, args.threads, Path(tmp))
        frame = load_side(runs, "runs")
        dest = baseline_path(args.dir, key_of_records(frame.to_dict("records"), "the runs"))
        write_baseline(runs, dest)
    failed = int((frame["status"] != "ok").sum())
    commits = ", ".join(sorted({str(c) for c in frame["git_commit"].dropna()})) or "?"
    print(f"recorded {len(frame)} records ({failed} not ok) from {commits} in {dest}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from harness.analysis.compare import compare_frames
    from harness.analysis.confirmation import apply_confirmations, confirmation_settings
    from harness.execution.ab_run import configs_with, confirm_batches
    from harness.execution.baselines import (
        baseline_path,
        key_of_records,
        run_rounds,
        this_machine_key,
    )
    from harness.probes.provenance import SOURCE_ROOT
    from harness.schema import new_run_id
    from harness.store.frame import load_side

    settings = settings_from_args(args)
    flags, n_configs = _run_flags(args)
    check_positive("--confirm", args.confirm, allow_zero=True)
    if not 0 <= args.extra_time < float("inf"):
        raise UserError(f"--extra-time must be a number of seconds >= 0, got {args.extra_time}")
    out_dir = writable_dir("--out-dir",
                           args.out_dir or Path("results") / f"baseline-check-{new_run_id()}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UserError(f"--out-dir {out_dir} is not an empty directory")
    path = baseline_path(args.dir, this_machine_key(args.threads))
    if not path.is_file():
        raise UserError(f"no baseline for this machine ({path}); record one with: "
                        "trainmark baseline record")
    out_dir.mkdir(parents=True, exist_ok=True)  # the first thing written
    _announce(args, n_configs)
    runs = run_rounds(SOURCE_ROOT, flags, args.rounds, args.threads, out_dir)
    cand = load_side(runs, "runs")
    measured = baseline_path(args.dir, key_of_records(cand.to_dict("records"), "the runs"))
    if measured != path and not measured.is_file():  # e.g. a GPU appeared in between
        raise UserError(f"no baseline for this machine ({measured})")
    baseline = load_side([measured], "baseline")

    def judge(paths: list[Path], how=settings) -> dict:
        return compare_frames(baseline, load_side(paths, "runs"), how)

    result = judge(runs)
    # Inconclusive verdicts: more whole runs (a run cannot single configs out), within budget.
    deadline, last = time.monotonic() + args.extra_time, 0.0
    while configs_with(result, "inconclusive") and time.monotonic() + last < deadline:
        print("baseline: inconclusive verdicts; one more run of the suite", file=sys.stderr)
        started = time.monotonic()
        runs += run_rounds(SOURCE_ROOT, flags, 1, args.threads, out_dir, start=len(runs))
        last = time.monotonic() - started
        result = judge(runs)

    def batch(k: int, todo: list[dict]) -> dict:
        print(f"baseline: confirming {len(todo)} regression(s), batch {k}/{args.confirm}",
              file=sys.stderr)
        folder = out_dir / f"confirm-{k}"
        return judge(run_rounds(SOURCE_ROOT, flags, args.rounds, args.threads, folder),
                     confirmation_settings(settings))

    confirmed = confirm_batches(configs_with(result, "regression"), args.confirm, batch)
    return emit_verdict(apply_confirmations(result, confirmed, settings.allow_inconclusive),
                        args.format, args.md_out or str(out_dir / "verdict.md"),
                        args.json_out or str(out_dir / "verdict.json"),
                        title="trainmark baseline check")


def cmd_path(args: argparse.Namespace) -> int:
    from harness.execution.baselines import baseline_path, key_of_records, this_machine_key

    check_positive("--threads", args.threads, allow_zero=True)
    if args.results:
        from harness.store.frame import load_side

        frame = load_side(args.results, "results")
        key = key_of_records(frame.to_dict("records"), "the results")
    else:
        key = this_machine_key(args.threads)
    path = baseline_path(args.dir, key)
    print(path)
    if not path.is_file():
        print("(no baseline recorded yet: trainmark baseline record)", file=sys.stderr)
    return 0
