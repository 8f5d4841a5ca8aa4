"""``trainmark ab REF [suite flags]``: same-job A/B of a git ref against the working tree.

Everything is validated (options, sweep, datasets, git ref, output folder) before the output
folder is created or anything runs; ``execution.ab`` measures, ``analysis.compare`` judges.
Exit status as ``trainmark compare``: 0 no regression, 1 regression, 2 usage, 3 inconclusive,
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from harness.cli.paths import writable_dir
from harness.cli.sweep_options import (
    absolute_datasets,
    add_sweep_options,
    configs_from_args,
    overrides_from_args,
    run_arguments,
    suite_of,
)
from harness.cli.verdict_options import (
    SAME_JOB_THRESHOLD,
    add_verdict_options,
    emit_verdict,
    settings_from_args,
)
from harness.errors import UserError

DEFAULT_SUITE = "ci"
DEFAULT_ROUNDS = {"configs": 8, "runs": 3}  # per --interleave mode (execution.ab's defaults)
DEFAULT_THREADS = 1
DEFAULT_CONFIRM = 1
DEFAULT_EXTRA_TIME_S = 120.0  # about the CI suite's own A/B time on a 2-core CPU


def add_run_compat_options(p: argparse.ArgumentParser) -> None:
    """``run`` options that A/B and baselines accept so the same command line works."""
    p.add_argument("--tensorboard", metavar="DIR",
                   help="TensorBoard event files of the `trainmark run` blocks (--interleave "
                        "runs, baseline rounds)")
    p.add_argument("--no-report", action="store_true",
                   help="accepted for `trainmark run` compatibility: A/B and baseline runs "
                        "never write reports")


def configure(p: argparse.ArgumentParser) -> None:
    p.allow_abbrev = False  # --out must not silently mean --out-dir
    p.description = ("Run the same suite (default: ci) on REF and on the working tree, "
                     "interleaved, then compare; exit 0 no regression, 1 regression, 2 usage, "
                     "3 inconclusive.")
    p.add_argument("ref", metavar="REF", help="git ref for the baseline, e.g. origin/main, HEAD")
    p.add_argument("--rounds", type=int, default=None,
                   help=f"A/B pairs per config (default {DEFAULT_ROUNDS['configs']}); with "
                        "--interleave runs: candidate runs, bracketed by rounds+1 baseline runs "
                        f"(default {DEFAULT_ROUNDS['runs']})")
    p.add_argument("--interleave", choices=("configs", "runs"), default="configs",
                   help="configs: one worker per side, A and B back to back per config "
                        "(default); runs: alternate whole `trainmark run` processes")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                   help="OMP/MKL threads per run, same on both sides; 0 inherits the "
                        f"environment (default {DEFAULT_THREADS})")
    p.add_argument("--extra-time", type=float, default=DEFAULT_EXTRA_TIME_S, metavar="SECONDS",
                   help="after the rounds, keep measuring the configs whose verdict is "
                        "inconclusive, a round at a time, for up to this long (default "
                        f"{DEFAULT_EXTRA_TIME_S:g}; 0 never; --interleave configs only)")
    p.add_argument("--confirm", type=int, default=DEFAULT_CONFIRM, metavar="N",
                   help="measure each regressed config again N times in fresh rounds of its "
                        "own; a regression stands only if every time confirms it (default "
                        f"{DEFAULT_CONFIRM}; 0 trusts the first; --interleave configs only)")
    p.add_argument("--profile", action="store_true",
                   help="afterwards, profile every config once per side (torch.profiler, "
                        "outside the measurements) into OUT_DIR/profile/; comment.md then says "
                        "which operators changed in each flagged config")
    p.add_argument("--out-dir", help="where the runs and verdicts go (default results/ab-<id>)")
    p.add_argument("--candidate-env", action="append", metavar="NAME=VALUE",
                   help="TEST ONLY: extra environment for the candidate side, e.g. "
                        "TRAINMARK_INJECT_SLOWDOWN=0.1 to check the gate detects a slowdown")
    add_verdict_options(p, threshold=SAME_JOB_THRESHOLD)
    add_sweep_options(p, default_suite=DEFAULT_SUITE)
    add_run_compat_options(p)
    p.set_defaults(func=cmd_ab)


def parse_env(pairs: Sequence[str] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--candidate-env takes NAME=VALUE, got {pair!r}")
        env[name.strip()] = value
    return env


def check_positive(flag: str, value: int, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise UserError(f"{flag} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def prepared_sweep(args: argparse.Namespace):
    """Validate the sweep here (bad input fails before anything runs); what both sides run,
    and how many configs that is."""
    from harness.core.data import check_dataset
    from harness.core.suites import suite_path
    from harness.execution.ab import Sweep
    from harness.execution.ab_worker import hello_request

    configs = configs_from_args(args)
    for name in dict.fromkeys(c.dataset for c in configs):
        check_dataset(name, args.data_dir, args.download)
    suite = suite_path(suite_of(args))  # absolute: both trees run the same file
    overrides = overrides_from_args(args)
    if overrides["datasets"]:
        overrides["datasets"] = absolute_datasets(overrides["datasets"])
    # Only the settings given: a protocol-1 tree older than a sweep key refuses the key even
    # with value None, and a missing key already means "not given".
    overrides = {k: v for k, v in overrides.items() if v is not None}
    data_dir = str(Path(args.data_dir).resolve())
    flags = run_arguments(args, suite)
    if args.tensorboard:
        flags += ["--tensorboard", str(Path(args.tensorboard).resolve())]
    return Sweep(hello_request(str(suite), overrides, data_dir, args.download), flags), configs


def cmd_ab(args: argparse.Namespace) -> int:
    from harness.analysis.compare import compare_frames
    from harness.analysis.confirmation import apply_confirmations, confirmation_settings
    from harness.execution.ab import check_baseline_commits, interleave
    from harness.execution.ab_run import ABRun, judge_folder, run_ab
    from harness.execution.gitref import repo_toplevel, resolve_ref
    from harness.probes.provenance import SOURCE_ROOT
    from harness.schema import new_run_id
    from harness.store.frame import load_side

    settings = settings_from_args(args)
    rounds = DEFAULT_ROUNDS[args.interleave] if args.rounds is None else args.rounds
    check_positive("--rounds", rounds)
    check_positive("--threads", args.threads, allow_zero=True)
    if not (args.extra_time >= 0 and args.extra_time < float("inf")):
        raise UserError(f"--extra-time must be a number of seconds >= 0, got {args.extra_time}")
    check_positive("--confirm", args.confirm, allow_zero=True)
    candidate_env = parse_env(args.candidate_env)
    sweep, configs = prepared_sweep(args)
    top = repo_toplevel(SOURCE_ROOT)
    ref_sha = resolve_ref(top, args.ref)
    run_id = new_run_id()
    out_dir = writable_dir("--out-dir", args.out_dir or Path("results") / f"ab-{run_id}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UserError(f"--out-dir {out_dir} is not an empty directory")
    out_dir.mkdir(parents=True, exist_ok=True)  # the first thing written
    out_dir = out_dir.resolve()

    if args.interleave == "configs":
        plan = f"{rounds} rounds of {len(configs)} configs, A and B back to back per config"
    else:
        plan = f"{2 * rounds + 1} whole runs, " + " ".join(
            "AB"[s == "candidate"] for s in interleave(rounds))
    print(f"ab: {args.ref} ({ref_sha[:10]}) vs the working tree; {plan}; threads="
          f"{args.threads or 'inherited'}; results in {out_dir}", file=sys.stderr)
    started = time.perf_counter()
    try:
        confirmations = run_ab(ABRun(
            top=top, source=SOURCE_ROOT, ref=args.ref, ref_sha=ref_sha, sweep=sweep,
            rounds=rounds, interleave=args.interleave, threads=args.threads, out_dir=out_dir,
            run_id=run_id, candidate_env=candidate_env, judge=judge_folder(settings),
            confirm_judge=judge_folder(confirmation_settings(settings)),
            extra_budget_s=args.extra_time, confirm=args.confirm, profile=args.profile))
    except KeyboardInterrupt:
        print(f"ab: interrupted; the worktree was removed, partial results in {out_dir}",
              file=sys.stderr)
        return 130
    base = load_side(sorted(out_dir.glob("baseline*.jsonl")), "baseline")
    cand = load_side(sorted(out_dir.glob("candidate*.jsonl")), "candidate")
    check_baseline_commits(base["git_commit"].dropna(), ref_sha)
    print(f"ab: done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    result = apply_confirmations(compare_frames(base, cand, settings), confirmations,
                                 settings.allow_inconclusive)
    md = Path(args.md_out or out_dir / "verdict.md")
    code = emit_verdict(result, args.format, str(md),
                        args.json_out or str(out_dir / "verdict.json"),
                        title=f"trainmark ab {args.ref}")
    write_comment(out_dir, md, result, profiled=args.profile)
    return code


def write_comment(out_dir: Path, verdict_md: Path, result: dict, profiled: bool) -> Path:
    """``comment.md``: the body of a pull-request comment (and the job summary): the Markdown
    verdict, then, when profiled, which operators changed in each flagged config."""
    from harness.cli.explain import explanations, render_text
    from harness.execution.ab_run import PROFILE_DIR
    from harness.store.frame import load_side

    parts = [verdict_md.read_text(encoding="utf-8")]
    flagged = [r["config"] for r in result["rows"]
               if r["verdict"] in ("regression", "inconclusive")]
    profiles = out_dir / PROFILE_DIR
    if profiled and flagged and (profiles / "candidate.jsonl").exists():
        found = explanations(load_side([profiles / "baseline.jsonl"], "baseline"),
                             load_side([profiles / "candidate.jsonl"], "candidate"), top=10,
                             only=flagged)
        text = render_text(found) if found else "No flagged config was profiled on both sides."
        (out_dir / "explain.txt").write_text(text + "\n", encoding="utf-8")
        parts.append("#### Which operators changed (self time per step)\n\n```\n"
                     + text + "\n```\n")
    path = out_dir / "comment.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
