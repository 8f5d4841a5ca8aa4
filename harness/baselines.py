"""Stored baselines: ``results/baselines/<machine-key>.jsonl``, one file per machine.

A same-job A/B (``trainmark ab``) is the reliable gate; a stored baseline is the cheap one for a
dedicated, quiet machine (a self-hosted GPU runner): record it on the main branch, check pull
requests against it. The machine key names what makes numbers comparable: device, torch build
and thread count, e.g. ``nvidia-h100-80gb-hbm3-torch2.14.1-cu130-1t``; ``compare`` also refuses a
baseline whose driver, CUDA or cuDNN version differs (exit 2), so re-record after an upgrade.

    trainmark baseline record [--rounds 3] [suite flags]   # run the suite, (re)write the file
    trainmark baseline check  [--rounds 3] [suite flags]   # run it again, compare, exit 0/1/2
    trainmark baseline path   [RESULTS_FILE]               # which file applies here
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import UserError

BASELINE_DIR = Path("results") / "baselines"
DEFAULT_ROUNDS = 3  # fresh-process runs of the suite per baseline (or check)


def machine_key(prov: Mapping[str, Any]) -> str:
    """File-name-safe key from provenance fields (a record or ``provenance.collect()``)."""
    def get(name: str) -> Any:
        value = prov.get(name)
        return None if value is None or pd.isna(value) else value

    device = str(get("device_name") or get("cpu_model") or "unknown-device")
    parts = [device, f"torch{get('torch_version') or 'unknown'}"]
    if get("num_threads") is not None:
        parts.append(f"{int(get('num_threads'))}t")
    slug = re.sub(r"[^a-z0-9.+]+", "-", "-".join(parts).lower()).replace("+", "-")
    return re.sub(r"-{2,}", "-", slug).strip("-.")


def key_of_frame(frame: pd.DataFrame, what: str) -> str:
    keys = {machine_key(row) for row in frame.to_dict("records")}
    if len(keys) != 1:
        raise UserError(f"{what} hold results from {len(keys)} machines "
                        f"({', '.join(sorted(keys))}); a baseline is for one machine")
    return keys.pop()


def this_machine_key(threads: int) -> str:
    from harness import provenance
    from harness.devices import best_device

    prov = dict(provenance.collect(best_device()))
    if threads > 0:
        prov["num_threads"] = threads
    return machine_key(prov)


def _run_rounds(args: argparse.Namespace, out_dir: Path) -> pd.DataFrame:
    """``--rounds`` runs of the working tree's suite, each a fresh process, into ``out_dir``."""
    from harness.ab import Side, run_block, sweep_flags
    from harness.compare import load_side
    from harness.provenance import REPO_ROOT

    if args.rounds < 1:
        raise UserError(f"--rounds must be > 0, got {args.rounds}")
    flags, n_configs = sweep_flags(args)
    side = Side("candidate", REPO_ROOT, "working tree")
    print(f"baseline: {n_configs} configs x {args.rounds} runs, threads="
          f"{args.threads or 'inherited'}", file=sys.stderr)
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="trainmark-cwd-") as cwd:
            seconds = run_block(side, flags, out_dir / f"run-{i}.jsonl", args.threads, Path(cwd))
        print(f"  [{i + 1}/{args.rounds}] {seconds:.1f} s", file=sys.stderr)
    return load_side(sorted(out_dir.glob("run-*.jsonl")), "runs")


def cmd_record(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="trainmark-baseline-") as tmp:
        frame = _run_rounds(args, Path(tmp))
        key = key_of_frame(frame, "the runs")
        dest = Path(args.dir) / f"{key}.jsonl"
        dest.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for path in sorted(Path(tmp).glob("run-*.jsonl")):
            lines += [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        partial = dest.with_suffix(".jsonl.partial")
        partial.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(partial, dest)  # atomic: a reader never sees half a baseline
    failed = int((frame["status"] != "ok").sum())
    commits = ", ".join(sorted({str(c) for c in frame["git_commit"].dropna()})) or "?"
    print(f"recorded {len(frame)} records ({failed} not ok) from {commits} in {dest}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from harness.compare import load_side, report, settings_from_args
    from harness.runner import new_run_id

    settings_from_args(args)
    out_dir = Path(args.out_dir or Path("results") / f"baseline-check-{new_run_id()}")
    out_dir.mkdir(parents=True, exist_ok=True)
    args.md_out = args.md_out or str(out_dir / "verdict.md")
    args.json_out = args.json_out or str(out_dir / "verdict.json")
    key = this_machine_key(args.threads)
    path = Path(args.dir) / f"{key}.jsonl"
    if not path.is_file():
        raise UserError(f"no baseline for this machine ({path}); record one with: "
                        "trainmark baseline record")
    cand = _run_rounds(args, out_dir)
    if key_of_frame(cand, "the runs") != key:  # e.g. a GPU appeared between the two
        path = Path(args.dir) / f"{key_of_frame(cand, 'the runs')}.jsonl"
        if not path.is_file():
            raise UserError(f"no baseline for this machine ({path})")
    return report(load_side([path], "baseline"), cand, args, title="trainmark baseline check")


def cmd_path(args: argparse.Namespace) -> int:
    if args.results:
        from harness.compare import load_side

        key = key_of_frame(load_side(args.results, "results"), "the results")
    else:
        key = this_machine_key(args.threads)
    path = Path(args.dir) / f"{key}.jsonl"
    print(path)
    if not path.is_file():
        print("(no baseline recorded yet: trainmark baseline record)", file=sys.stderr)
    return 0


def _no_subcommand(args: argparse.Namespace) -> int:
    raise UserError("baseline: choose a subcommand: record, check or path")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from harness.ab import DEFAULT_THREADS, add_suite_options
    from harness.compare import add_compare_options

    p = sub.add_parser("baseline", help="record or check this machine's stored baseline",
                       description=__doc__.splitlines()[0])
    p.set_defaults(func=_no_subcommand)
    bsub = p.add_subparsers(dest="baseline_command", parser_class=type(p))

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dir", default=str(BASELINE_DIR),
                       help=f"baseline directory (default {BASELINE_DIR})")
        q.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                       help=f"OMP/MKL threads per run; 0 inherits (default {DEFAULT_THREADS})")

    rec = bsub.add_parser("record", allow_abbrev=False,
                          help="run the suite (default: ci) and store it as the baseline for "
                               "this machine")
    rec.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                     help=f"fresh-process runs of the suite (default {DEFAULT_ROUNDS})")
    common(rec)
    add_suite_options(rec)
    rec.set_defaults(func=cmd_record)

    chk = bsub.add_parser("check", allow_abbrev=False,
                          help="run the suite and compare with this machine's baseline")
    chk.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                     help=f"fresh-process runs of the suite (default {DEFAULT_ROUNDS})")
    chk.add_argument("--out-dir", help="where the runs and verdicts go "
                                       "(default results/baseline-check-<id>)")
    common(chk)
    add_compare_options(chk)
    add_suite_options(chk)
    chk.set_defaults(func=cmd_check)

    pth = bsub.add_parser("path", allow_abbrev=False,
                          help="print the baseline file for this machine")
    pth.add_argument("results", nargs="*", metavar="RESULTS",
                     help="key from these results' provenance instead of this machine's")
    common(pth)
    pth.set_defaults(func=cmd_path)
