"""Mutation score per module from a finished ``mutmut run`` (the ``mutants/*.meta`` files).

    python scripts/mutation_score.py [--mutants mutants] [--survivors] [--format md|json]

A mutant counts as killed when a test failed on it (exit status 1 or 3) or it ran past
mutmut's timeout (an infinite loop is a detected change too, as mutmut's own score counts it).
Every other outcome, "no tests" included, counts against the score: a mutant no test reaches is
a bug no test would notice. ``--survivors`` lists the mutants that lived, for review.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

KILLED = {1, 3, 36, -24, 24, 152, 255}  # test failure, pytest internal error, the timeouts
NOT_RUN = {None}  # mutmut was stopped before it got to the mutant


def module_scores(mutants: Path) -> list[dict]:
    rows = []
    for meta in sorted(mutants.rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        module = str(meta.relative_to(mutants))[: -len(".meta")]
        ran = {k: c for k, c in codes.items() if c not in NOT_RUN}
        killed = sum(c in KILLED for c in ran.values())
        rows.append({"module": module, "mutants": len(codes), "ran": len(ran), "killed": killed,
                     "survived": sorted(k for k, c in ran.items() if c not in KILLED),
                     "score": killed / len(ran) if ran else None})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mutants", default="mutants", help="mutmut's work directory")
    p.add_argument("--survivors", action="store_true", help="list the surviving mutants")
    p.add_argument("--format", choices=("md", "json"), default="md")
    args = p.parse_args()
    mutants = Path(args.mutants)
    if not mutants.is_dir():
        print(f"mutation_score: no {mutants}/ directory; run `mutmut run` first", file=sys.stderr)
        return 2
    rows = module_scores(mutants)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    print("| module | mutants | run | killed | survived | score |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        score = "n/a" if r["score"] is None else f"{r['score']:.1%}"
        print(f"| {r['module']} | {r['mutants']} | {r['ran']} | {r['killed']} | "
              f"{len(r['survived'])} | {score} |")
    if args.survivors:
        for r in rows:
            for name in r["survived"]:
                print(f"survived: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
