"""Evidence for ``trainmark bisect``: over a history of ``--commits`` commits with one slowdown
injected at a known commit, does bisect name it, how many commits does it measure, and how long
does it take?

The history is a snapshot of this tree (commit 0, GOOD) followed by commits that each add a
file; commit ``--bad-at`` changes the test-only slowdown knob's default in the code (the runner
then busy-waits for ``--slowdown`` of every timed step, as a real slow change would), and every
later commit keeps it. ``trainmark bisect`` runs from the history's own tree.

    python -m benchmarks.bisect_evidence [--commits 16] [--bad-at 11] [--slowdown 0.2]
        [--out results/examples/bisect-evidence.txt] [-- BISECT_ARGS]

A benchmark, not a test: each step is an A/B of 8 rounds, about 30 s here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.ab_evidence import GIT_ID, snapshot_repo

REPO = Path(__file__).resolve().parent.parent
SWEEP = ["--models", "convnet", "--batch-sizes", "8", "--precisions", "fp32", "--optimizers",
         "sgd", "--steps", "3", "--warmup", "1", "--repeats", "3", "--eval-samples", "32",
         "--train-samples", "64"]
KNOB_DEFAULT = 'os.environ.get(SLOWDOWN_ENV, "")'


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(["git", *GIT_ID, *args], cwd=repo, check=True, capture_output=True,
                          text=True, env=env).stdout.strip()


def build_history(repo: Path, commits: int, bad_at: int, slowdown: float,
                  only: str = "") -> list[str]:
    """``commits`` commits after a snapshot of this tree; from ``bad_at`` on, the knob's
    default is ``slowdown`` (``only``: e.g. ``@optimizer=adam``, for those configs alone).
    Every commit gets its own committer date, an hour apart, as history orders by it."""
    snapshot_repo(repo, paths=("harness", "models", "benchmarks", "pyproject.toml"))
    shas = [git(repo, "rev-parse", "HEAD")]
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)
    for i in range(1, commits + 1):
        if i == bad_at:
            knob = repo / "harness" / "core" / "knob.py"
            text = knob.read_text()
            if KNOB_DEFAULT not in text:
                raise SystemExit(f"{knob}: the line to change is gone: {KNOB_DEFAULT}")
            knob.write_text(text.replace(KNOB_DEFAULT,
                                         f'os.environ.get(SLOWDOWN_ENV, "{slowdown:g}{only}")'))
        else:
            (repo / f"change-{i}.txt").write_text(f"change {i}\n")
        when = (start + dt.timedelta(hours=i)).isoformat()
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"change {i}",
            env=dict(os.environ, GIT_AUTHOR_DATE=when, GIT_COMMITTER_DATE=when))
        shas.append(git(repo, "rev-parse", "HEAD"))
    return shas


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--commits", type=int, default=16)
    p.add_argument("--bad-at", type=int, default=11)
    p.add_argument("--slowdown", type=float, default=0.2)
    p.add_argument("--out", default=str(REPO / "results" / "examples" / "bisect-evidence.txt"))
    p.add_argument("bisect_args", nargs="*", help="more `trainmark bisect` arguments (after --)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="trainmark-bisect-") as tmp:
        repo = Path(tmp) / "repo"
        shas = build_history(repo, args.commits, args.bad_at, args.slowdown)
        env = dict(os.environ, PYTHONPATH=str(repo))
        env.pop("TRAINMARK_INJECT_SLOWDOWN", None)
        cmd = [sys.executable, "-m", "harness", "bisect", shas[0], shas[-1], "--out-dir",
               str(Path(tmp) / "steps"), *SWEEP, *args.bisect_args]
        started = time.perf_counter()
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
    found = next((ln.split()[3] for ln in proc.stdout.splitlines()
                  if ln.startswith("first bad commit:")), None)
    right = found == shas[args.bad_at]
    lines = [f"# trainmark bisect evidence, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
             f"# {args.commits} commits after GOOD; commit {args.bad_at} sets the slowdown "
             f"knob's default to {args.slowdown:g} (throughput x {1 / (1 + args.slowdown):.3f})",
             f"# command: trainmark bisect GOOD BAD {' '.join(SWEEP + args.bisect_args)}",
             f"exit {proc.returncode} in {seconds:.0f} s; found "
             f"{'the right commit' if right else found} ({args.bad_at})", "",
             proc.stdout.strip(), "", "# bisect's own progress lines",
             *[ln for ln in proc.stderr.splitlines() if ln.startswith("bisect:")], "",
             "# stderr (last 3000 characters)", proc.stderr.strip()[-3000:]]
    print("\n".join(lines))
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
