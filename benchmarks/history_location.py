"""How often does ``trainmark history`` place a step at the right commit, and how often does its
reported range hold it? A simulation with known truth, beside the real-run evidence of
``benchmarks.history_evidence`` (whose machine noise is not under control).

Series of ``--commits`` points, flat at 100 with a drop of ``--step`` from commit ``--step-at``
on, each point multiplied by 1 + noise (normal, or Laplace with the same standard deviation),
seeded. For every noise level: the share of series where a regression step is found, where its
first changed commit is exact, and where ``location_range`` holds the true commit, with the
range's mean size.

    python -m benchmarks.history_location [--trials 400] [--step 0.08]
        [--noise 0.01,0.02,0.03,0.04]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics

from harness.analysis.history import detect_steps, location_range


def simulate(noise: float, dist: str, *, step: float, commits: int, step_at: int, trials: int,
             seed: int = 0) -> dict[str, float]:
    rng = random.Random(seed)
    found = exact = held = 0
    sizes: list[int] = []
    for _ in range(trials):
        values = []
        for i in range(commits):
            e = (rng.gauss(0.0, noise) if dist == "normal"
                 else rng.choice((-1, 1)) * rng.expovariate(math.sqrt(2) / noise))
            values.append(100.0 * (1 - step if i >= step_at else 1.0) * (1 + e))
        steps = detect_steps(values)
        drops = [s for s in steps if s[1] < 0]
        if not drops:
            continue
        k = min(drops, key=lambda s: abs(s[0] - step_at))[0]
        bounds = [0, *(s[0] for s in steps), commits]
        j = bounds.index(k)
        first, last = location_range(values, k, bounds[j - 1], bounds[j + 1])
        found += 1
        exact += k == step_at
        held += first <= step_at <= last
        sizes.append(last - first + 1)
    return {"found": found / trials, "exact": exact / max(found, 1),
            "held": held / max(found, 1), "size": statistics.fmean(sizes) if sizes else 0.0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=400)
    p.add_argument("--commits", type=int, default=20)
    p.add_argument("--step-at", type=int, default=12)
    p.add_argument("--step", type=float, default=0.08)
    p.add_argument("--noise", default="0.01,0.02,0.03,0.04")
    args = p.parse_args()
    print(f"{args.trials} seeded series of {args.commits} commits, a {args.step:.0%} drop from "
          f"commit {args.step_at}")
    print(f"{'noise':>8} {'sd':>4} {'found':>6} {'exact':>6} {'range holds':>12} "
          f"{'range size':>11}")
    for dist in ("normal", "laplace"):
        for noise in (float(x) for x in args.noise.split(",")):
            r = simulate(noise, dist, step=args.step, commits=args.commits,
                         step_at=args.step_at, trials=args.trials)
            print(f"{dist:>8} {noise:>4.0%} {r['found']:>6.0%} {r['exact']:>6.0%} "
                  f"{r['held']:>12.0%} {r['size']:>11.2f}")


if __name__ == "__main__":
    main()
