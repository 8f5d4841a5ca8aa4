"""What a fleet job costs over a plain ``trainmark run`` of the same suite on the same machine:
the two as whole commands, alternated A B B A so slow drift cancels, on a one-node Slurm
cluster (``scripts/local-slurm start``).

    python -m benchmarks.fleet_overhead [--rounds 2] [--partition hw_a] [--poll 5] [sweep flags]

A: ``trainmark run SWEEP``; B: ``trainmark fleet --partitions P SWEEP`` (one job on the same
node, waited for). Each fleet run is paired with the plain run beside it; per config it prints
the median throughput of each side and the median of the paired ratios (fleet / run: 1.0 means
the job measures what a plain run measures; pairing keeps a busy machine's slow spells out of
the ratio as far as it can) and the ratio of each side's best throughput (what it reaches
undisturbed where other work shares the machine), their geometric means over configs, and
each command's median wall time (the fleet's includes submission, the job's start and the
waiter's polling). Default sweep: the smoke suite's models at batch 16, 3 repeats of 8 timed
steps.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SWEEP = ["--suite", "smoke", "--devices", "cpu", "--batch-sizes", "16", "--steps", "8",
         "--warmup", "3", "--repeats", "3", "--eval-samples", "64", "--train-samples", "512"]


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def one(side: str, sweep: list[str], partition: str, workdir: Path, n: int,
        poll: str) -> tuple[float, dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if side == "run":
        out = workdir / f"run-{n}.jsonl"
        cmd = [sys.executable, "-m", "harness", "run", *sweep, "--out", str(out), "--quiet",
               "--no-report"]
    else:
        folder = workdir / f"fleet-{n}"
        out = folder / f"{partition}.jsonl"
        cmd = [sys.executable, "-m", "harness", "fleet", "--partitions", partition, *sweep,
               "--out-dir", str(folder), "--poll", poll]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:  # say why, and keep the configs that were measured
        print(f"{side}: exit {proc.returncode}: {proc.stderr.strip()[-400:]}", flush=True)
    if not out.exists():
        return wall, {}
    return wall, {r["model"]: float(r["throughput"]) for r in records(out) if r["status"] == "ok"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2, help="A B B A blocks (default 2)")
    p.add_argument("--partition", default="hw_a")
    p.add_argument("--poll", default="5", help="the waiter's seconds between looks (default 5, "
                                               "fleet's own; it shares this machine's CPUs)")
    args, sweep = p.parse_known_args()
    sweep = sweep or SWEEP
    walls: dict[str, list[float]] = {"run": [], "fleet": []}
    pairs: list[dict[str, dict[str, float]]] = []  # each fleet run with the run beside it
    with tempfile.TemporaryDirectory(prefix="trainmark-fleet-overhead-") as tmp:
        n = 0
        for _ in range(args.rounds):
            block = {}
            for side in ("run", "fleet", "fleet", "run"):
                wall, tps = one(side, sweep, args.partition, Path(tmp), n, args.poll)
                walls[side].append(wall)
                block.setdefault(side, []).append(tps)
                n += 1
                print(f"{side:6} {wall:6.1f} s  " + "  ".join(f"{m} {t:,.1f}"
                                                           for m, t in tps.items()), flush=True)
            # A B B A: the first fleet run is paired with the first run, the second with the last
            pairs += [{"run": block["run"][0], "fleet": block["fleet"][0]},
                      {"run": block["run"][1], "fleet": block["fleet"][1]}]
    print(f"\n{'config':<14} {'run':>10} {'fleet':>10} {'ratio':>6}  {'best run':>10} "
          f"{'best fleet':>10} {'ratio':>6}  per pair")
    ratios, bests = [], []
    for model in dict.fromkeys(m for pr in pairs for side in pr.values() for m in side):
        runs = [pr["run"][model] for pr in pairs if model in pr["run"]]
        fleets = [pr["fleet"][model] for pr in pairs if model in pr["fleet"]]
        each = [pr["fleet"][model] / pr["run"][model] for pr in pairs
                if model in pr["fleet"] and model in pr["run"]]
        if not each:
            continue
        ratios.append(statistics.median(each))
        # best of N: what each side reaches undisturbed, on a machine others share
        bests.append(max(fleets) / max(runs))
        print(f"{model:<14} {statistics.median(runs):10,.1f} {statistics.median(fleets):10,.1f} "
              f"{ratios[-1]:6.3f}  {max(runs):10,.1f} {max(fleets):10,.1f} {bests[-1]:6.3f}  "
              + " ".join(f"{r:.2f}" for r in each))

    def geo(values: list[float]) -> float:
        return math.exp(statistics.fmean(math.log(v) for v in values))

    run_s, fleet_s = (statistics.median(walls[k]) for k in ("run", "fleet"))
    print(f"fleet/run, geometric mean over configs: {geo(ratios):.3f} (median of pairs), "
          f"{geo(bests):.3f} (best of {len(pairs)}); median wall: run {run_s:.1f} s, "
          f"fleet {fleet_s:.1f} s")


if __name__ == "__main__":
    main()
