"""``trainmark compare BASELINE CANDIDATE``: regression verdicts from stored results.

Exit status: 0 no regression, 1 at least one regression, 2 usage error (bad file, nothing
matched, or results from different hardware/software without ``--allow-different-machines``),
3 no regression but an inconclusive verdict remains (unless ``--allow-inconclusive``).

``--confirm N`` re-measures each regressed config with this tree's code on this machine (which
must be the candidate's machine), as many records as the candidate has of it, each in a fresh
worker, up to N times; a regression stands only if every re-measurement confirms it (as
``ab`` and ``baseline check`` do, ``execution.ab_run.confirm_batches``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.ab import check_positive
from harness.cli.paths import writable_dir
from harness.cli.verdict_options import add_verdict_options, emit_verdict, settings_from_args
from harness.errors import UserError


def configure(p: argparse.ArgumentParser) -> None:
    p.allow_abbrev = False
    p.description = ("Per-config verdicts on speed (significance test + threshold), memory, "
                     "accuracy and status; exit 0 no regression, 1 regression, 2 usage, "
                     "3 inconclusive.")
    p.add_argument("baseline", nargs=1, metavar="BASELINE",
                   help="results file or directory (.jsonl, pytest-benchmark .json)")
    p.add_argument("candidate", nargs=1, metavar="CANDIDATE", help="results file or directory")
    add_verdict_options(p)
    p.add_argument("--confirm", type=int, default=0, metavar="N",
                   help="re-measure each regressed config here (this tree, fresh workers, the "
                        "candidate's machine) up to N times; a regression stands only if every "
                        "re-measurement confirms it (default 0: judge the files as they are)")
    p.add_argument("--confirm-dir", metavar="DIR",
                   help="where the re-measured records go (default "
                        "results/compare-confirm-<run id>/)")
    p.add_argument("--data-dir", default="data",
                   help="datasets for --confirm's re-measurements (default ./data)")
    p.add_argument("--allow-different-code", action="store_true",
                   help="accept a side merged from records of different code (refused by "
                        "default: their code identities differ)")
    p.add_argument("--explain", action="store_true",
                   help="after the verdict, the operators that changed most in each flagged "
                        "config profiled on both sides (`trainmark run --profile`)")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.analysis.compare import COMPARE_COLUMNS, compare_frames
    from harness.analysis.confirmation import apply_confirmations
    from harness.analysis.matching import check_same_code
    from harness.store.frame import load_side

    settings = settings_from_args(args)  # bad options fail before any file is read
    check_positive("--confirm", args.confirm, allow_zero=True)
    # --confirm re-runs whole records and --explain reads their profiles: every column then
    columns = None if args.confirm or args.explain else COMPARE_COLUMNS
    base = load_side(args.baseline, "baseline", columns)
    cand = load_side(args.candidate, "candidate", columns)
    # Each side must be one code; the two sides may differ (that is what compare is for).
    check_same_code(base, "the baseline", args.allow_different_code)
    check_same_code(cand, "the candidate", args.allow_different_code)
    result = compare_frames(base, cand, settings)
    if args.confirm:
        confirmed = _confirm(args, base, cand, result, settings)
        result = apply_confirmations(result, confirmed, settings.allow_inconclusive)
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


def _confirm(args: argparse.Namespace, base, cand, result: dict, settings) -> list[dict]:
    """Re-measure the regressed configs (``--confirm`` batches at most, see
    ``confirm_batches``), each batch judged against the baseline on its own records."""
    from harness.analysis.compare import compare_frames
    from harness.analysis.confirmation import confirmation_settings
    from harness.execution.ab import matches
    from harness.execution.ab_run import configs_with, confirm_batches
    from harness.execution.baselines import key_of_records, this_machine_key
    from harness.execution.replay import remeasure
    from harness.schema import new_run_id
    from harness.store.frame import load_side

    flagged = configs_with(result, "regression")
    if not flagged:
        return []
    records = [r for r in cand.to_dict("records") if r.get("status") == "ok"]
    threads = int(records[0].get("num_threads") or 0) if records else 0
    recorded, here = key_of_records(records, "the candidate"), this_machine_key(threads)
    if recorded != here:
        raise UserError(f"--confirm re-measures the candidate's configs on this machine, but "
                        f"the candidate comes from another one ({recorded}; this one is "
                        f"{here}): run compare --confirm where the candidate was recorded")
    folder = writable_dir("--confirm-dir", args.confirm_dir
                          or Path("results") / f"compare-confirm-{new_run_id()}")

    def batch(k: int, todo: list[dict]) -> dict:
        again = [r for r in records if matches(r, todo)]
        print(f"compare: confirming {len(todo)} regression(s), batch {k}/{args.confirm}: "
              f"{len(again)} fresh measurement(s)", file=sys.stderr, flush=True)
        out = folder / f"confirm-{k}.jsonl"
        remeasure(again, args.data_dir, out, as_run=False)
        return compare_frames(base, load_side([str(out)], "re-measured candidate"),
                              confirmation_settings(settings))

    return confirm_batches(flagged, args.confirm, batch)
