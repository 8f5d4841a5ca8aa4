"""``trainmark compare BASELINE CANDIDATE``: regression verdicts from stored results.

Exit status: 0 no regression, 1 at least one regression, 2 usage error (bad file, nothing
matched, or results from different hardware/software without ``--allow-different-machines``),
3 no regression but an inconclusive verdict remains (unless ``--allow-inconclusive``).
"""

from __future__ import annotations

import argparse

from harness.cli.verdict_options import add_verdict_options, emit_verdict, settings_from_args


def configure(p: argparse.ArgumentParser) -> None:
    p.allow_abbrev = False
    p.description = ("Per-config verdicts on speed (significance test + threshold), memory, "
                     "accuracy and status; exit 0 no regression, 1 regression, 2 usage, "
                     "3 inconclusive.")
    p.add_argument("baseline", nargs=1, metavar="BASELINE",
                   help="results file or directory (.jsonl, pytest-benchmark .json)")
    p.add_argument("candidate", nargs=1, metavar="CANDIDATE", help="results file or directory")
    add_verdict_options(p)
    p.add_argument("--explain", action="store_true",
                   help="after the verdict, the operators that changed most in each flagged "
                        "config profiled on both sides (`trainmark run --profile`)")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.analysis.compare import compare_frames
    from harness.store.frame import load_side

    settings = settings_from_args(args)  # bad options fail before any file is read
    base = load_side(args.baseline, "baseline")
    cand = load_side(args.candidate, "candidate")
    result = compare_frames(base, cand, settings)
    code = emit_verdict(result, args.format, args.md_out, args.json_out,
                        title="trainmark compare")
    if args.explain:
        from harness.cli.explain import explanations, render_text

        flagged = [r["config"] for r in result["rows"]
                   if r["verdict"] in ("regression", "inconclusive")]
        found = explanations(base, cand, top=10, only=flagged)
        print("\nexplain: " + ("no flagged config has a profile on both sides" if not found
                               else f"{len(found)} flagged config(s)\n" + render_text(found)))
    return code
