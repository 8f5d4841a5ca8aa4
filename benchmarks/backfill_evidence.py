"""Evidence for ``trainmark backfill`` + ``trainmark history``: over a real git history with one
8% slowdown at a known commit, is the step found at that commit, and nowhere else?

The history is a snapshot of this tree (commit 0) and ``--commits`` - 1 commits after it, an hour
apart; commit ``--step-at`` changes the test-only slowdown knob's default in the code to
``--slowdown`` for the Adam configs only (``0.087@optimizer=adam``), and every later commit keeps
it. So one sweep holds both kinds of series, measured at the same moments: the Adam configs' (a
step) and the SGD and Adagrad configs' (flat: every step found there is a false alarm).
``trainmark backfill`` measures every commit ``--rounds`` times, each round in its own shuffled
order, from the commit's own tree; ``trainmark history`` then reads all rounds (each commit's
point is the median of its rounds), and, to show what the rounds add, each round alone.

    python -m benchmarks.backfill_evidence [--commits 20] [--step-at 12] [--rounds 3]
        [--out results/examples/backfill-evidence.txt] [--keep DIR]

With ``--keep DIR`` of an earlier run, the history is reused and only what its backfill lacks
is measured (then everything is analysed again). ``--chronological`` measures the control
instead: one run per commit, in commit order, as CI appends them (about 15 minutes).

A benchmark, not a test: the 18-config sweep takes about 38 s here, so 20 commits x 3 rounds
took 38 minutes (2026-11-30).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bisect_evidence import build_history
from harness.execution.ab import Side, run_block
from harness.execution.gitref import worktree

REPO = Path(__file__).resolve().parent.parent
SWEEP = ["--models", "convnet,resnet20,transformer", "--devices", "cpu", "--precisions", "fp32",
         "--optimizers", "sgd,adam,adagrad", "--batch-sizes", "8,16", "--steps", "5",
         "--min-time", "0.25", "--repeats", "3", "--eval-samples", "64", "--train-samples",
         "256"]
STEPPED = "adam"  # the optimizer whose configs get the step


def trainmark(repo: Path, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(repo))
    return subprocess.run([sys.executable, "-m", "harness", *argv], cwd=repo, env=env,
                          capture_output=True, text=True)


def history(repo: Path, results: list[Path], out: Path) -> list[dict]:
    proc = trainmark(repo, "history", *map(str, results), "--out", str(out), "--format", "json")
    if proc.returncode != 0:
        raise SystemExit(f"history failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def summarise(steps: list[dict], index: dict[str, int], step_at: int, configs: int,
              say) -> None:
    """Where each stepped series' throughput step was found; every step in a flat series."""
    stepped = [s for s in steps if s["config"].get("optimizer") == STEPPED]
    flat = [s for s in steps if s["config"].get("optimizer") != STEPPED]
    right, in_range, widths = 0, 0, []
    for s in stepped:
        if s["metric"] != "throughput" or s["verdict"] != "regression":
            continue
        at = index[s["first_changed"]]
        lo, hi = (index[c] for c in s["first_changed_range"])
        right += at == step_at
        in_range += lo <= step_at <= hi
        widths.append(hi - lo + 1)
        mark = "RIGHT COMMIT" if at == step_at else f"off by {at - step_at:+d}"
        say(f"  {_label(s)} throughput: commit {at} ({mark}), may be {lo}..{hi}, "
            f"{s['change']:+.1%}, p={s['p_adjusted']:.2g}")
    others = [s for s in stepped if s["metric"] != "throughput" or s["verdict"] != "regression"]
    say(f"  step found at the right commit in {right} of {configs // 3} stepped series; "
        f"the range holds it in {in_range} of {len(widths)} (range sizes {sorted(widths)})")
    say(f"  stepped series, other steps (memory/accuracy/improvements): {len(others)}")
    say(f"  flat series ({configs - configs // 3}): {len(flat)} steps in any metric "
        "(false alarms)")
    for s in flat:
        say(f"    {_label(s)} {s['metric']} {s['verdict']} {s['change']:+.1%} at commit "
            f"{index[s['first_changed']]}")


def chronological(repo: Path, shas: list[str], out: Path) -> None:
    """The control: one run per commit in commit order, as CI appends them, measured the way
    ``backfill`` measures (``execution.ab.run_block`` in the commit's worktree, one thread)."""
    out.mkdir(parents=True, exist_ok=True)
    for sha in shas:
        with worktree(repo, sha) as tree:
            run_block(Side("candidate", tree, f"commit {sha[:12]}"), SWEEP,
                      out / f"{sha[:12]}.jsonl", threads=1, workdir=out.parent / "cwd")


def _label(s: dict) -> str:
    c = s["config"]
    return f"{c.get('model')} {c.get('optimizer')} bs={c.get('batch_size')}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--commits", type=int, default=20)
    p.add_argument("--step-at", type=int, default=12)
    p.add_argument("--slowdown", type=float, default=0.087)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=str(REPO / "results" / "examples" / "backfill-evidence.txt"))
    p.add_argument("--keep", metavar="DIR", help="keep the records and reports in DIR")
    p.add_argument("--chronological", action="store_true",
                   help="the control instead of the backfill: one run per commit, in commit "
                        "order (what CI appends), then history over it")
    args = p.parse_args()
    os.environ.pop("TRAINMARK_INJECT_SLOWDOWN", None)  # the history's own commits set it
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    say(f"# trainmark backfill + history evidence, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    say(f"# {args.commits} commits; commit {args.step_at} sets the knob's default to "
        f"{args.slowdown:g}@optimizer={STEPPED} (Adam configs: throughput x "
        f"{1 / (1 + args.slowdown):.3f}); the other configs never change")
    say(f"# trainmark run {' '.join(SWEEP)}: once per commit in commit order" if args.chronological
        else f"# trainmark backfill FIRST LAST --rounds {args.rounds} {' '.join(SWEEP)}")
    with tempfile.TemporaryDirectory(prefix="trainmark-backfill-") as tmp:
        work = Path(args.keep or tmp)
        repo, out = work / "repo", work / "records"
        if repo.exists():  # a kept run again: backfill measures only what it lacks
            shas = subprocess.run(["git", "rev-list", "--reverse", "HEAD"], cwd=repo, text=True,
                                  capture_output=True, check=True).stdout.split()
        else:
            shas = build_history(repo, args.commits - 1, args.step_at, args.slowdown,
                                 f"@optimizer={STEPPED}")
        index = {sha: i for i, sha in enumerate(shas)}
        started = time.perf_counter()
        if args.chronological:
            chronological(repo, shas, work / "records-chronological")
            say(f"# one run per commit in commit order: {time.perf_counter() - started:.0f} s")
            say()
            say("## one run per commit, in commit order (the control: what CI appends)")
            files = sorted((work / "records-chronological").glob("*.jsonl"))
            configs = sum(1 for _ in files[0].open())
            summarise(history(repo, files, work / "report-chronological"), index, args.step_at,
                      configs, say)
            Path(args.out).write_text("\n".join(lines) + "\n")
            return
        proc = trainmark(repo, "backfill", shas[0], shas[-1], "--rounds", str(args.rounds),
                         "--out-dir", str(out), *SWEEP)
        say(f"# backfill: exit {proc.returncode} in {time.perf_counter() - started:.0f} s; "
            f"{proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ''}")
        if proc.returncode != 0:
            say(proc.stderr[-3000:])
            raise SystemExit(1)
        files = sorted(out.glob("*.jsonl"))
        configs = sum(1 for _ in files[0].open())
        say()
        say(f"## all {args.rounds} rounds (each commit's point: the median of its rounds)")
        summarise(history(repo, files, work / "report-all"), index, args.step_at, configs, say)
        for r in range(args.rounds):
            say()
            say(f"## round {r + 1} alone (one run per commit, measured in shuffled order)")
            summarise(history(repo, [f for f in files if f.stem.endswith(f"-round{r}")],
                              work / f"report-round{r}"), index, args.step_at, configs, say)
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
