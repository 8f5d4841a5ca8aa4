"""``trainmark backfill FIRST LAST [suite flags]``: measure every commit from FIRST to LAST, in
``--rounds`` passes of shuffled order, as input for ``trainmark history``
(``execution.backfill`` says why the order is shuffled).

Exit status: 0 every run measured, 1 some commit could not run the suite (the others' records
are kept; see the FAILED lines), 2 usage, 130 interrupted (what was measured is kept, and the
same command measures only the rest).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.ab import DEFAULT_SUITE, DEFAULT_THREADS, add_run_compat_options, check_positive
from harness.cli.paths import writable_dir
from harness.cli.sweep_options import add_sweep_options

DEFAULT_ROUNDS = 3  # the median of three leaves out a level shift that hits one round
EXIT_SOME_FAILED = 1


def configure(p: argparse.ArgumentParser) -> None:
    p.allow_abbrev = False
    p.description = ("Measure every commit from FIRST to LAST (first-parent line) in rounds of "
                     "shuffled order, from each commit's own tree, for `trainmark history`; "
                     "exit 0 all measured, 1 some commit failed, 2 usage, 130 interrupted.")
    p.add_argument("first", metavar="FIRST", help="the oldest commit to measure, e.g. v1.2")
    p.add_argument("last", metavar="LAST", help="the newest commit to measure, e.g. main")
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                   help=f"passes over the commits, each in its own order (default "
                        f"{DEFAULT_ROUNDS})")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                   help=f"OMP/MKL threads per run (default {DEFAULT_THREADS}; 0 inherits)")
    p.add_argument("--out-dir", default="results/backfill",
                   help="where each commit's records go, one file per commit and round; "
                        "what is there already is not measured again (default "
                        "results/backfill)")
    add_sweep_options(p, default_suite=DEFAULT_SUITE)
    add_run_compat_options(p)
    p.set_defaults(func=cmd_backfill)


def cmd_backfill(args: argparse.Namespace) -> int:
    from harness.cli.ab import prepared_sweep
    from harness.execution.backfill import Plan, backfill, commits_between
    from harness.execution.gitref import repo_toplevel, resolve_ref
    from harness.probes.provenance import SOURCE_ROOT

    check_positive("--rounds", args.rounds)
    check_positive("--threads", args.threads, allow_zero=True)
    sweep, configs = prepared_sweep(args)
    top = repo_toplevel(SOURCE_ROOT)
    commits = commits_between(top, resolve_ref(top, args.first), resolve_ref(top, args.last))
    out_dir = writable_dir("--out-dir", args.out_dir)
    plan = Plan(top=top, source_rel=str(SOURCE_ROOT.relative_to(top)), commits=commits,
                rounds=args.rounds, run_flags=sweep.run_flags, threads=args.threads,
                out_dir=Path(out_dir), suite=sweep.suite)
    print(f"backfill: {len(commits)} commits from {args.first} ({commits[0][:10]}) to "
          f"{args.last} ({commits[-1][:10]}), {len(configs)} configs, {args.rounds} rounds; "
          f"records in {out_dir}", file=sys.stderr)
    try:
        outcome = backfill(plan)
    except KeyboardInterrupt:
        print(f"backfill: interrupted; what was measured is in {out_dir}, and the same command "
              "measures the rest", file=sys.stderr)
        return 130
    print(f"{outcome.measured} runs measured in {outcome.seconds:.0f} s "
          f"({outcome.existing} already in {out_dir})")
    for sha, why in outcome.failed.items():
        print(f"FAILED {sha[:12]}: {why}")
    print(f"next: trainmark history {out_dir}")
    return EXIT_SOME_FAILED if outcome.failed else 0
