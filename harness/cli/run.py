"""``trainmark run``: a sweep, one record per config appended to a results file, then a summary
and a report. Everything is validated before the results file is created."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from harness.cli.paths import writable_dir, writable_file
from harness.cli.sweep_options import add_sweep_options, configs_from_args, suite_of
from harness.errors import UserError

RESULTS_DIR = Path("results")
ISOLATIONS = ("process", "none")  # execution.isolation.ISOLATIONS, named here for a light --help
DEFAULT_TIMEOUT_S = 1800.0  # execution.isolation.DEFAULT_TIMEOUT_S


def configure(p: argparse.ArgumentParser) -> None:
    add_sweep_options(p, default_suite="quick")
    p.add_argument("--tensorboard", metavar="DIR",
                   help="also write loss curves and throughput as TensorBoard event files")
    p.add_argument("--out", help="results file (default: results/<run_id>.jsonl)")
    p.add_argument("--resume", action="store_true",
                   help="skip configs already recorded ok in --out (default: newest results file)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--no-report", action="store_true",
                   help="do not write reports/<run_id>/report.html at the end")
    p.add_argument("--profile", nargs="?", const="", default=None, metavar="DIR",
                   help="after each config's measurements, profile a few steps with "
                        "torch.profiler: a Chrome/Perfetto trace and per-operator times per "
                        "record in DIR/<record_id>/ (default folder: results/profiles/<run id>)"
                        "; records gain the forward/backward/optimizer split")
    add_isolation_options(p)
    p.set_defaults(func=cmd_run)


def add_isolation_options(p: argparse.ArgumentParser) -> None:
    """``--isolation`` and ``--timeout`` (execution.isolation), shared with rerun/verify."""
    p.add_argument("--isolation", choices=ISOLATIONS, default="process",
                   help="process: each config in a fresh worker process (default: per-config "
                        "memory, timeouts, crashes recorded); none: all in this process "
                        "(debugging)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help="per-config limit with --isolation process; the worker is killed and "
                        f"the config recorded as timeout (default {DEFAULT_TIMEOUT_S:g})")


def check_timeout(args: argparse.Namespace) -> float:
    if not args.timeout > 0:
        raise UserError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    return float(args.timeout)


def output_path(out: str | None, resume: bool, run_id: str) -> Path:
    """Where records go; ``UserError`` rather than touching an existing file by accident."""
    if out:
        path = Path(out)
    elif resume:
        existing = sorted(RESULTS_DIR.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
        if not existing:
            raise UserError(f"--resume: no results file in {RESULTS_DIR}/; pass --out FILE")
        path = existing[-1]
    else:
        path = RESULTS_DIR / f"{run_id}.jsonl"
    writable_file("--out", path, suffixes=(".jsonl",))
    if path.exists() and not resume:
        raise UserError(f"results file {path} exists; pass --resume to continue it or another "
                        "--out")
    return path


def _already_done(out: Path, configs: list) -> tuple[set[tuple], list[dict], str | None]:
    """Keys of configs recorded ok in ``out``, its records, and its run id (for --resume)."""
    from harness.core.config import record_key
    from harness.execution.batch_search import search_key
    from harness.store.jsonl import read_records

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the torn tail is reported when the writer cuts it
        previous = read_records(out)
    # search_key: a --batch-sizes max config is done by a record of any batch size it found
    ok_keys = {search_key(record_key(r)) for r in previous if r.get("status") == "ok"}
    done = {c.key() for c in configs if search_key(c.key()) in ok_keys}
    run_id = str(previous[0]["run_id"]) if previous and previous[0].get("run_id") else None
    return done, previous, run_id


def validated_configs(args: argparse.Namespace) -> list:
    """The sweep, its datasets and optional outputs checked: ``UserError`` before any write."""
    from harness.core.data import check_dataset

    check_timeout(args)
    configs = configs_from_args(args)
    for name in dict.fromkeys(c.dataset for c in configs):
        check_dataset(name, args.data_dir, args.download)
    if args.tensorboard:
        from harness.store.tensorboard import check_available

        writable_dir("--tensorboard", args.tensorboard)
        check_available()
    return configs


def cmd_run(args: argparse.Namespace) -> int:
    from harness.core import dist
    from harness.core.determinism import prepare_process
    from harness.core.suites import suite_name
    from harness.execution.sweep import config_runner, for_world, order_for_scaling, run_sweep
    from harness.schema import new_run_id
    from harness.store.jsonl import ResultsWriter

    configs = validated_configs(args)
    prepare_process(any(c.deterministic for c in configs))  # before CUDA starts
    run_id = new_run_id()
    # Under torchrun / srun. With --isolation process each config's ranks run in workers of
    # their own (execution.isolation.RankIsolation): this process only meets the others, on
    # the CPU, and never opens a GPU.
    device_type = configs[0].device.split(":")[0] if args.isolation == "none" else "cpu"
    dist_env = dist.init(device_type)
    if dist_env is not None:
        configs = for_world(configs, dist_env.world_size)
        run_id = str(dist.gather(run_id)[0])  # one run id, rank 0's
    is_writer = dist.rank() == 0
    out = output_path(args.out, args.resume, run_id) if is_writer else Path(os.devnull)

    done: set[tuple] = set()
    previous: list[dict] = []
    if args.resume and is_writer and out.exists():
        done, previous, resumed_id = _already_done(out, configs)
        run_id = resumed_id or run_id
    if dist_env is not None:  # every rank must run the same configs, in the same order
        done = set(dist.gather(done)[0])
    todo = [c for c in configs if c.key() not in done]
    profile_dir = None
    if args.profile is not None:  # absolute: workers run elsewhere
        profile_dir = str(writable_dir("--profile", args.profile or Path("results") / "profiles"
                                       / run_id).resolve())
    if done:
        print(f"resuming {out}: {len(done)} configs already ok, {len(todo)} to run",
              file=sys.stderr)
    writer = ResultsWriter(out) if is_writer else None
    finished = 0
    suite = suite_name(suite_of(args))

    def store(rec: dict) -> None:
        nonlocal finished
        # Stamped here, where the sweep was expanded, rather than by the worker that measured
        # one config (it never sees the suite): crashed and timeout records get it too.
        rec["suite"] = suite
        writer.write(rec)
        finished += 1
        if args.tensorboard and rec["status"] == "ok":  # from the stored record, off the clock
            from harness.store.tensorboard import write_record

            write_record(args.tensorboard, rec)

    try:  # preparing the runner measures peaks in a worker: an interrupt there resumes too
        measure = config_runner(args.isolation, todo, run_id=run_id, data_dir=args.data_dir,
                                download=args.download, timeout_s=args.timeout,
                                quiet=args.quiet, profile_dir=profile_dir)
        run_sweep(order_for_scaling(todo), measure, store if writer else None,
                  previous=previous, quiet=args.quiet)
    except KeyboardInterrupt:
        print(f"interrupted: {finished} of {len(todo)} configs recorded in {out}; "
              f"continue with: trainmark run --resume --out {out}", file=sys.stderr)
        return 130
    finally:
        dist.shutdown()
    if is_writer:
        summarize(out, run_id, report=not args.no_report)
    return 0


def summarize(out: Path, run_id: str, report: bool) -> None:
    """The summary table, the across-seed table, and (unless told not to) the report."""
    from harness.render.tables import results_text
    from harness.store.frame import load_results

    frame = load_results([out])
    print(results_text(frame))
    failures = int((frame["status"] != "ok").sum())
    print(f"\n{len(frame)} records ({failures} not ok) in {out}")
    if report:  # after the results are on disk: a report failure only warns
        from harness.render.report import REPORTS_DIR, report_after_run

        report_after_run(out, REPORTS_DIR / run_id)
