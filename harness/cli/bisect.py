"""``trainmark bisect GOOD BAD [suite flags]``: the first commit in GOOD..BAD whose training is
slower than GOOD's, by ``git bisect run`` with a same-job A/B per step (``execution.bisect``).

Exit status: 0 a first bad commit was found (and confirmed: it regresses again in a fresh A/B,
its parent does not), 2 usage, 3 BAD is not a regression against GOOD (nothing to bisect) or the
commit found was not confirmed, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.ab import (
    DEFAULT_EXTRA_TIME_S,
    DEFAULT_ROUNDS,
    DEFAULT_SUITE,
    DEFAULT_THREADS,
    add_run_compat_options,
    check_positive,
    prepared_sweep,
)
from harness.cli.paths import writable_dir
from harness.cli.sweep_options import add_sweep_options
from harness.cli.verdict_options import SAME_JOB_THRESHOLD, add_verdict_options, settings_from_args
from harness.errors import UserError

EXIT_FOUND, EXIT_NOT_A_REGRESSION = 0, 3


def configure(p: argparse.ArgumentParser) -> None:
    p.allow_abbrev = False
    p.description = ("Find the first commit in GOOD..BAD that is slower than GOOD: git bisect "
                     "run, each step an A/B against GOOD; exit 0 found, 2 usage, 3 BAD is not "
                     "a regression.")
    p.add_argument("good", metavar="GOOD", help="a git ref measured as good, e.g. v1.2")
    p.add_argument("bad", metavar="BAD", help="a later git ref that regressed, e.g. main")
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS["configs"],
                   help=f"A/B rounds per step (default {DEFAULT_ROUNDS['configs']})")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                   help=f"OMP/MKL threads per side (default {DEFAULT_THREADS}; 0 inherits)")
    p.add_argument("--extra-time", type=float, default=DEFAULT_EXTRA_TIME_S, metavar="SECONDS",
                   help="per step: more rounds for inconclusive configs for up to this long "
                        f"(default {DEFAULT_EXTRA_TIME_S:g})")
    p.add_argument("--confirm", type=int, default=1, metavar="N",
                   help="measure the first bad commit and its parent against GOOD again, N "
                        "times: the answer stands only if they agree every time (default 1; "
                        "0: report git's answer unconfirmed)")
    p.add_argument("--out-dir", help="every step's records and verdict "
                   "(default results/bisect-<id>)")
    add_verdict_options(p, threshold=SAME_JOB_THRESHOLD)
    add_sweep_options(p, default_suite=DEFAULT_SUITE)
    add_run_compat_options(p)
    p.set_defaults(func=cmd_bisect)


def cmd_bisect(args: argparse.Namespace) -> int:
    import dataclasses

    from harness.execution.bisect import Plan, bisect
    from harness.execution.gitref import git, is_ancestor, repo_toplevel, resolve_ref
    from harness.probes.provenance import SOURCE_ROOT
    from harness.schema import new_run_id

    settings = settings_from_args(args)
    check_positive("--rounds", args.rounds)
    check_positive("--threads", args.threads, allow_zero=True)
    check_positive("--confirm", args.confirm, allow_zero=True)
    if not (0 <= args.extra_time < float("inf")):
        raise UserError(f"--extra-time must be a number of seconds >= 0, got {args.extra_time}")
    sweep, _ = prepared_sweep(args)
    top = repo_toplevel(SOURCE_ROOT)
    good, bad = resolve_ref(top, args.good), resolve_ref(top, args.bad)
    if good == bad or not is_ancestor(top, good, bad):
        raise UserError(f"GOOD {args.good!r} ({good[:10]}) must be an ancestor of BAD "
                        f"{args.bad!r} ({bad[:10]}), not the same commit")
    commits = git(top, "rev-list", "--count", f"{good}..{bad}")
    out_dir = writable_dir("--out-dir", args.out_dir or Path("results") / f"bisect-{new_run_id()}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UserError(f"--out-dir {out_dir} is not an empty directory")
    plan = Plan(top=str(top), source_rel=str(SOURCE_ROOT.relative_to(top)), good_sha=good,
                request=sweep.request, run_flags=sweep.run_flags, rounds=args.rounds,
                threads=args.threads, extra_time_s=args.extra_time,
                settings=dataclasses.asdict(settings), out_dir=str(out_dir.resolve()))
    print(f"bisect: {commits} commits after {args.good} ({good[:10]}) up to {args.bad} "
          f"({bad[:10]}); {args.rounds} A/B rounds per step; results in {out_dir}",
          file=sys.stderr)
    try:
        outcome = bisect(plan, bad, confirm_times=args.confirm)
    except KeyboardInterrupt:
        print(f"bisect: interrupted; worktrees removed, steps so far in {out_dir}",
              file=sys.stderr)
        return 130
    measured = len(outcome.steps)
    if outcome.first_bad is None:
        print(f"{args.bad} is not a regression against {args.good}: nothing to bisect "
              f"({outcome.seconds:.0f} s)")
        return EXIT_NOT_A_REGRESSION
    step = next((s for s in outcome.steps if s.sha == outcome.first_bad), None)
    subject = git(top, "log", "-1", "--format=%s", outcome.first_bad, check=False)
    print(f"first bad commit: {outcome.first_bad} {subject}")
    for row in (step.verdict["rows"] if step and step.verdict else []):
        if row["verdict"] == "regression":
            tp = row.get("throughput") or {}
            change = "" if tp.get("change") is None else f" throughput {tp['change']:+.1%}"
            p = "" if tp.get("p_value") is None else f" (p={tp['p_value']:.2g})"
            print(f"  {row['label']}:{change}{p}: {row['why']}")
    print(f"{measured} commits measured in {outcome.seconds:.0f} s; steps in {out_dir}")
    if outcome.confirmed is None:
        return EXIT_FOUND
    word = {0: "good", 1: "bad"}
    agreed = ", ".join(f"{s.sha[:10]} {word.get(s.exit, 'inconclusive')}"
                       for s in outcome.confirmations)
    if not outcome.confirmed:
        print(f"NOT CONFIRMED: measured again against {args.good}: {agreed}; the search may "
              f"have followed a noisy step (rerun with more --rounds)")
        return EXIT_NOT_A_REGRESSION
    print(f"confirmed: measured again against {args.good}: {agreed}")
    return EXIT_FOUND
