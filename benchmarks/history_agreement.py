"""Does the O(n log n) change-point search find the steps the quadratic one found? (issue 31)

The records behind the committed history and backfill evidence were not kept (only their
summaries, ``results/examples/history-*.txt``, ``backfill-evidence.txt``), so the comparison
runs on the series those summaries come from in kind: ``benchmarks.history_location``'s seeded
simulation (20 commits, an 8% drop at commit 12, normal and Laplace noise of 1-4%, the same
seeds) and longer seeded series with several planted steps. For each series both searches run
(``benchmarks.history_reference``: the code before issue 31) and the step lists (first commit
after, change, p, adjusted p) and each step's commit range must be identical.

    python -m benchmarks.history_agreement [--trials 400]
"""

from __future__ import annotations

import argparse
import math
import random

from benchmarks import history_reference as reference
from harness.analysis import changepoints


def series(rng: random.Random, n: int, steps: dict[int, float], noise: float,
           dist: str) -> list[float]:
    values, level = [], 100.0
    for i in range(n):
        level *= 1 + steps.get(i, 0.0)
        e = (rng.gauss(0.0, noise) if dist == "normal"
             else rng.choice((-1, 1)) * rng.expovariate(math.sqrt(2) / noise))
        values.append(level * (1 + e))
    return values


def ranges(search, values: list[float], found: list) -> list[tuple[int, int]]:
    bounds = [0, *(k for k, *_ in found), len(values)]
    return [search(values, k, bounds[j - 1], bounds[j + 1])
            for j, (k, *_) in enumerate(found, start=1)]


def compare(values: list[float]) -> tuple[int, int, bool]:
    old = reference.detect_steps(values)
    new = changepoints.detect_steps(values)
    same = old == new and (ranges(reference.location_range, values, old)
                           == ranges(changepoints.location_range, values, new))
    return len(old), len(new), same


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=400)
    args = p.parse_args(argv)
    print(f"{'series':<34}{'noise':>6}{'n':>6}{'steps old':>10}{'steps new':>10}"
          f"{'identical':>11}")
    cases = [("20 commits, -8% at 12", 20, {12: -0.08})] + [
        ("200 commits, -10% at 80, +7% at 150", 200, {80: -0.10, 150: 0.07})]
    for name, n, steps in cases:
        for dist in ("normal", "laplace"):
            for noise in (0.01, 0.02, 0.03, 0.04):
                rng = random.Random(0)  # history_location's seed: the same series
                trials = args.trials if n <= 20 else max(1, args.trials // 10)
                totals = [compare(series(rng, n, steps, noise, dist)) for _ in range(trials)]
                print(f"{name + ' ' + dist:<34}{noise:>6.0%}{trials:>6}"
                      f"{sum(t[0] for t in totals):>10}{sum(t[1] for t in totals):>10}"
                      f"{sum(t[2] for t in totals):>8}/{trials}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
