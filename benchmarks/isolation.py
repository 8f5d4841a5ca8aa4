"""Per-config cost of process isolation: the same sweep with ``--isolation process`` (a fresh
worker per config, forked from a fork server) and ``--isolation none`` (one process), as whole
``trainmark run`` processes, alternated A B B A so slow drift cancels.

    python -m benchmarks.isolation [--configs 12] [--rounds 2]

Prints each run's wall time and the overhead per config: (process - none) / configs. The
configs are small on purpose (a ConvNet, a few steps), so the overhead is not hidden by
training time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def sweep_args(configs: int) -> list[str]:
    seeds = max(1, configs // 2)  # two optimizers x seeds
    return ["--models", "convnet", "--devices", "cpu", "--precisions", "fp32",
            "--optimizers", "sgd,adam", "--seeds", str(seeds), "--batch-sizes", "8",
            "--steps", "5", "--warmup", "2", "--repeats", "2", "--eval-samples", "64",
            "--train-samples", "256", "--quiet", "--no-report"]


def one_run(isolation: str, configs: int, workdir: Path, n: int) -> float:
    out = workdir / f"{isolation}-{n}.jsonl"
    cmd = [sys.executable, "-m", "harness", "run", *sweep_args(configs),
           "--isolation", isolation, "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    subprocess.run(cmd, cwd=workdir, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", type=int, default=12)
    p.add_argument("--rounds", type=int, default=2, help="A B B A blocks (default 2)")
    args = p.parse_args()
    walls: dict[str, list[float]] = {"none": [], "process": []}
    with tempfile.TemporaryDirectory(prefix="trainmark-isolation-") as tmp:
        n = 0
        for _ in range(args.rounds):
            for isolation in ("none", "process", "process", "none"):
                walls[isolation].append(one_run(isolation, args.configs, Path(tmp), n))
                n += 1
                print(f"{isolation:8} {walls[isolation][-1]:6.1f} s", flush=True)
    med = {k: statistics.median(v) for k, v in walls.items()}
    per_config = (med["process"] - med["none"]) / args.configs
    print(f"median wall: none {med['none']:.1f} s, process {med['process']:.1f} s for "
          f"{args.configs} configs; isolation costs {per_config * 1e3:.0f} ms per config")


if __name__ == "__main__":
    main()
