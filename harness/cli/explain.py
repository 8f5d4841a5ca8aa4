"""``trainmark explain BASELINE CANDIDATE``: for each config profiled on both sides
(``trainmark run --profile``), the operators whose self time per step changed most, with their
share of the step's net change (``analysis.explain``). ``compare --explain`` prints the same for
the configs it flags."""

from __future__ import annotations

import argparse
import json

from harness.errors import UserError


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("baseline", help="results file or folder, recorded with --profile")
    p.add_argument("candidate", help="results file or folder, recorded with --profile")
    p.add_argument("--top", type=int, default=10, help="operators per config (default 10)")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="what to print: a text table or JSON (default text)")
    p.set_defaults(func=cmd_explain)


def explanations(base, cand, top: int, only: list[dict] | None = None) -> list[dict]:
    """Per matched profiled config (of ``only``'s configs when given): the top operators."""
    from harness.analysis.explain import explain_ops, load_ops, matched_profiles
    from harness.execution.ab import matches

    out = []
    for pair in matched_profiles(base, cand):
        if only is not None and not matches(pair["config"], only):
            continue
        try:
            b, c = load_ops(pair["baseline"]), load_ops(pair["candidate"])
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{pair['label']}: unreadable profile ({exc})") from None
        rows = explain_ops(b, c)
        out.append({"label": pair["label"], "config": pair["config"],
                    "net_change_us": sum(r.change_us for r in rows),
                    "operators": [r.__dict__ for r in rows[:top]]})
    return out


def render_text(found: list[dict]) -> str:
    lines = []
    for e in found:
        lines.append(f"{e['label']}: step self time {e['net_change_us'] / 1000:+.3f} ms "
                     "(candidate - baseline)")
        lines.append(f"  {'operator':<40} {'baseline us':>12} {'candidate us':>13} "
                     f"{'change us':>10} {'share':>7}")
        for op in e["operators"]:
            share = "—" if op["share"] is None else f"{op['share']:.0%}"
            lines.append(f"  {op['name'][:40]:<40} {op['baseline_us']:12.1f} "
                         f"{op['candidate_us']:13.1f} {op['change_us']:+10.1f} {share:>7}")
        lines.append("")
    return "\n".join(lines).rstrip()


def cmd_explain(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise UserError(f"--top must be >= 1, got {args.top}")
    from harness.store.frame import load_side

    base = load_side([args.baseline], "baseline")
    cand = load_side([args.candidate], "candidate")
    found = explanations(base, cand, args.top)
    if not found:
        raise UserError("no config has a profile on both sides; record both with "
                        "`trainmark run --profile`")
    print(json.dumps(found, indent=2, default=str) if args.format == "json"
          else render_text(found))
    return 0
