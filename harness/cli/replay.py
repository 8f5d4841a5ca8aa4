"""``trainmark rerun RESULTS`` and ``trainmark verify RESULTS``: replay recorded configs
(``execution.replay``); ``verify`` also checks that they reproduce (``analysis.verify``) and
exits 1 when one does not."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cli.paths import writable_file
from harness.cli.run import add_isolation_options, check_timeout
from harness.cli.verdict_options import parse_percent
from harness.errors import UserError

if TYPE_CHECKING:  # analysis.verify pulls in scipy; --help and bad input should not wait for it
    from harness.analysis.verify import Check
    from harness.core.config import RunConfig


def configure(p: argparse.ArgumentParser) -> None:
    verify = p.prog.split()[-1] == "verify"
    p.add_argument("results", help="results .jsonl file")
    p.add_argument("--record", help=f"{'verify' if verify else 'replay'} only this record_id")
    p.add_argument("--data-dir", default="data",
                   help="where the records' datasets live (default: ./data)")
    add_isolation_options(p)
    if not verify:
        p.add_argument("--out", help="new results file (default results/rerun-<id>.jsonl)")
        p.set_defaults(func=cmd_rerun)
        return
    p.add_argument("--out", help="also store the replayed records here")
    p.add_argument("--loss-rtol", type=float, default=0.02,
                   help="relative loss tolerance for non-deterministic records (default 0.02)")
    p.add_argument("--accuracy-tolerance", dest="acc_tol", type=float, default=0.01,
                   help="absolute accuracy tolerance, as a fraction (default 0.01 = 1 point)")
    p.add_argument("--throughput-threshold", default=None, metavar="PERCENT",
                   help="a replay's throughput regresses only when its median is lower by more "
                        "than this and the drop is significant (default 10%%)")
    p.add_argument("--alpha", default="0.01",
                   help="significance level of the Mann-Whitney U test on the per-repeat "
                        "throughputs, recorded vs replayed (default 0.01)")
    p.add_argument("--throughput-tolerance", dest="tp_tol", type=float, default=None,
                   metavar="FRACTION",
                   help="deprecated: --throughput-threshold as a fraction (0.10 = 10%%)")
    p.add_argument("--confirm", type=int, default=1, metavar="N",
                   help="rerun a config whose throughput regressed up to N more times, each in "
                        "a fresh worker; it fails only if every rerun regresses too (default 1; "
                        "0 trusts the first replay)")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="what to print: a text table or JSON (default text)")
    p.set_defaults(func=cmd_verify)


def _check_out(out: Path) -> Path:
    if out.exists():
        raise UserError(f"results file {out} exists; choose another --out")
    return writable_file("--out", out, suffixes=(".jsonl",))


def cmd_rerun(args: argparse.Namespace) -> int:
    from harness.execution.replay import replay, replayable
    from harness.schema import new_run_id

    check_timeout(args)
    out = _check_out(Path(args.out or f"results/rerun-{new_run_id()}.jsonl"))
    replayable(args.results, args.record)  # a bad file or record id fails before any write
    pairs = replay(args.results, args.record, args.data_dir, out, args.isolation, args.timeout)
    print(f"{len(pairs)} configs replayed into {out}")
    return 0


DEFAULT_THROUGHPUT_THRESHOLD = "10%"  # wider than compare's 5%: a replay is one short run


def throughput_settings(args: argparse.Namespace) -> tuple[float, float]:
    """(threshold, alpha) from the options; ``UserError`` naming a bad value."""
    if args.tp_tol is not None and args.throughput_threshold is not None:
        raise UserError("--throughput-tolerance is the deprecated name of --throughput-threshold;"
                        " give only --throughput-threshold")
    if args.tp_tol is not None:
        # The old flag took a fraction (0.10); keep its unit so old scripts mean the same.
        if not (math.isfinite(args.tp_tol) and args.tp_tol >= 0):
            raise UserError(f"--throughput-tolerance must be >= 0, got {args.tp_tol}")
        print("trainmark: warning: --throughput-tolerance is deprecated; use "
              f"--throughput-threshold {100 * args.tp_tol:g}%", file=sys.stderr)
        threshold = float(args.tp_tol)
    else:
        threshold = parse_percent(args.throughput_threshold or DEFAULT_THROUGHPUT_THRESHOLD,
                                  "--throughput-threshold")
    try:
        alpha = float(args.alpha)
    except ValueError:
        alpha = math.nan  # reported below, with the same message as an out-of-range value
    if not 0 < alpha < 1:
        raise UserError(f"--alpha must be a probability in (0, 1), got {args.alpha!r}")
    return threshold, alpha


def cmd_verify(args: argparse.Namespace) -> int:
    from harness.execution.replay import replay, replayable

    for flag, value in (("--loss-rtol", args.loss_rtol), ("--accuracy-tolerance", args.acc_tol)):
        if value < 0:
            raise UserError(f"{flag} must be >= 0, got {value}")
    threshold, alpha = throughput_settings(args)
    if args.confirm < 0:
        raise UserError(f"--confirm must be a count >= 0, got {args.confirm}")
    check_timeout(args)
    out = _check_out(Path(args.out)) if args.out else None
    replayable(args.results, args.record)
    from harness.analysis.verify import run_shift

    # All replays first: the run-wide shift each config is judged against needs every config.
    pairs = replay(args.results, args.record, args.data_dir, out, args.isolation, args.timeout)
    shift = run_shift((old, new) for old, new, _ in pairs)
    checks = []
    for old, new, cfg in pairs:
        check = _check(old, new, cfg, args, threshold, alpha, shift)
        _confirm(check, old, args, out, threshold, alpha)
        checks.append(check)
    if args.format == "json":
        print(json.dumps([{**asdict(c), "reproduced": c.reproduced,
                           "regression_confirmed": c.regression_confirmed,
                           "throughput_threshold": threshold, "alpha": alpha} for c in checks],
                         indent=2))
    else:
        _print_text(checks, shift, threshold)
    return 0 if all(c.reproduced for c in checks) else 1


def _check(old: dict, new: dict, cfg: RunConfig, args: argparse.Namespace, threshold: float,
           alpha: float, shift: float) -> Check:
    """One config's verdict: quality by ``analysis.verify``'s tolerances, throughput by the
    statistics ``compare`` uses, relative to the replay's run-wide ``shift``."""
    from harness.analysis.verify import Check, compare_quality, compare_throughput

    quality, qdetail = compare_quality(old, new, args.loss_rtol, args.acc_tol)
    tput = compare_throughput(old, new, threshold, alpha, shift)
    return Check(str(old.get("record_id")), cfg.label(), cfg.deterministic,
                 str(new.get("status")), quality, tput.verdict,
                 "; ".join(d for d in (qdetail, tput.detail) if d),
                 tput.change, tput.p_value, tput.reason, shift=shift)


def _confirm(check: Check, old: dict, args: argparse.Namespace, out: Path | None,
             threshold: float, alpha: float) -> None:
    """Rerun a throughput regression in fresh workers (``--confirm`` times at most) and
    note each rerun's verdict; stop at the first that does not regress."""
    from harness.analysis.stats import REGRESSION
    from harness.analysis.verify import compare_throughput
    from harness.execution.replay import replay

    while (check.quality_ok and check.regression_confirmed
           and len(check.confirmations) < args.confirm):
        print(f"confirming {check.label}: throughput regressed, running it again ...",
              file=sys.stderr, flush=True)
        [(_, again, _)] = replay(args.results, check.record_id, args.data_dir, out,
                                 args.isolation, args.timeout)
        verdict = compare_throughput(old, again, threshold, alpha, check.shift)
        check.confirmations.append(verdict.verdict)
        check.detail += f"; rerun {len(check.confirmations)}: {verdict.detail}"
        if verdict.verdict != REGRESSION:
            break


def _print_text(checks: list[Check], shift: float, threshold: float) -> None:
    """One line per config, then a count; inconclusive throughput passes but is counted aloud,
    so a reader knows the speed was not actually confirmed, and a run-wide shift beyond the
    threshold gets a line of its own, so a change every config shares is never silent."""
    from harness.analysis.stats import INCONCLUSIVE

    for c in checks:
        mark = "OK  " if c.reproduced else "FAIL"
        tput = c.throughput
        if c.confirmations:
            n = len(c.confirmations)
            reruns = f"{n} rerun{'s' * (n > 1)}"
            tput += (f", confirmed by {reruns}" if c.regression_confirmed
                     else f", not confirmed ({reruns}: {', '.join(c.confirmations)})")
        print(f"{mark} {c.record_id} {c.label}: {c.quality}, throughput {tput} ({c.detail})")
    bad = sum(not c.reproduced for c in checks)
    unsure = sum(c.throughput == INCONCLUSIVE for c in checks)
    note = f" ({unsure} with inconclusive throughput)" if unsure else ""
    print(f"\n{len(checks) - bad} of {len(checks)} configs reproduce{note}")
    if shift:
        mark = "SHIFT: " if abs(shift) > threshold else ""
        print(f"{mark}every config slowed down together, by {shift:+.1%} (the median); each "
              "was judged relative to that. A slowdown every config shares cannot be told from "
              "the machine's speed in one replay: `trainmark ab` interleaves two trees to tell.")
