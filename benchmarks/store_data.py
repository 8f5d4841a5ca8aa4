"""Synthetic results stores shaped like CI output, for the store and history benchmarks.

The quick suite's 36 records (``results/examples/cpu-quick.jsonl``, ~3.7 KB each) are the
templates: one JSON Lines file per commit and runner, one record per config, commits an hour
apart, throughput with 2% normal noise (seeded) and a step in one config from the middle
commit on (``step``: -0.10 is 10% slower). ``step_runners`` limits the step to some runners
(a runner that alone got slower); by default every runner has it.

    python -m benchmarks.store_data OUT --commits 1400 --runners 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
from collections.abc import Sequence
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent.parent / "results" / "examples" / "cpu-quick.jsonl"
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
STEPPED_CONFIG = 7  # the template (config) whose throughput steps


def templates() -> list[dict[str, object]]:
    return [json.loads(line) for line in TEMPLATES.read_text().splitlines() if line.strip()]


def commit_sha(i: int) -> str:
    return hashlib.sha1(f"commit-{i}".encode()).hexdigest()


def generate(out: str | Path, *, commits: int, runners: int = 1, step: float = -0.10,
             step_at: int | None = None, step_runners: Sequence[int] | None = None,
             noise: float = 0.02, seed: int = 0, configs: int | None = None) -> list[Path]:
    """Write ``commits`` x ``runners`` files into ``out``; returns their paths. The step is in
    config ``STEPPED_CONFIG`` from commit ``step_at`` (default: the middle) on."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = templates()[:configs]
    step_at = commits // 2 if step_at is None else step_at
    stepped = set(range(runners) if step_runners is None else step_runners)
    rng = random.Random(seed)
    paths = []
    for c in range(commits):
        sha = commit_sha(c)
        when = START + dt.timedelta(hours=c)
        for r in range(runners):
            host = f"runner-{r:02d}"
            run_id = f"{when:%Y%m%d-%H%M%S}-{r:02d}{c % 10000:04d}"
            lines = []
            for j, t in enumerate(base):
                factor = 1 + rng.gauss(0.0, noise)
                if j == STEPPED_CONFIG and c >= step_at and r in stepped:
                    factor *= 1 + step
                rec = dict(t)
                rec.update(run_id=run_id, record_id=f"{c:06d}{r:02d}{j:04d}", host=host,
                           git_commit=sha, git_commit_time=when.isoformat(),
                           timestamp=(when + dt.timedelta(minutes=5 + j)).isoformat())
                rec["throughput"] = t["throughput"] * factor
                rec["repeat_throughputs"] = [v * factor for v in t["repeat_throughputs"]]
                rec["step_time_ms_median"] = t["step_time_ms_median"] / factor
                lines.append(json.dumps(rec))
            path = out / f"{c:05d}-{sha[:10]}-{host}.jsonl"
            path.write_text("\n".join(lines) + "\n")
            paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--commits", type=int, default=1400)
    p.add_argument("--runners", type=int, default=1)
    p.add_argument("--step", type=float, default=-0.10)
    args = p.parse_args(argv)
    paths = generate(args.out, commits=args.commits, runners=args.runners, step=args.step)
    print(f"{len(paths)} files in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
