"""Evidence for the A/B gate: is ``trainmark ab`` quiet on an unchanged tree and sensitive to a
real slowdown, on this machine?

The script snapshots the current working tree into a temporary git repository (one commit, so
``HEAD`` and the working tree are byte-identical code) and runs ``trainmark ab HEAD`` there
``--runs`` times per slowdown level. A level of 0.10 sets ``TRAINMARK_INJECT_SLOWDOWN=0.10`` for
the candidate side only (the runner then busy-waits for 10% of each timed step: throughput /
1.10, a 9.1% drop, or a little more: an extra device sync adds to it).
Levels are interleaved run by run, so changing load on a shared machine spreads over all levels
alike. Each run's verdict is read from its JSON output.

    python -m benchmarks.ab_evidence [--runs 10] [--levels 0,0.10,0.07:5,0.05:5,0.03:5]
        [--rounds 8] [--neighbour] [--out results/examples/ab-evidence.txt] [-- AB_ARGS]

``--neighbour`` adds a simulated noisy neighbour (every core busy for 3-20 s, then idle for
3-20 s, seeded) on top of whatever else shares the machine. This is a benchmark, not a test:
each A/B takes one to two minutes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SNAPSHOT_PATHS = ("harness", "models", "benchmarks", "pyproject.toml")
GIT_ID = ["-c", "user.name=trainmark", "-c", "user.email=trainmark@localhost",
          "-c", "commit.gpgsign=false"]


def snapshot_repo(dest: Path, src: Path = REPO, paths: tuple[str, ...] = SNAPSHOT_PATHS) -> Path:
    """Copy ``paths`` of ``src`` (as they are now, committed or not) into a fresh one-commit
    git repository at ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".benchmarks")
    for name in paths:
        s = src / name
        if s.is_dir():
            shutil.copytree(s, dest / name, ignore=ignore)
        elif s.exists():
            shutil.copy2(s, dest / name)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run(["git", *GIT_ID, *args], cwd=dest, check=True, capture_output=True)
    return dest


def run_ab(repo: Path, out_dir: Path, level: float, rounds: int, extra: list[str]) -> dict:
    """One ``trainmark ab HEAD`` in ``repo``; its exit status, wall time and JSON verdict."""
    cmd = [sys.executable, "-m", "harness", "ab", "HEAD", "--rounds", str(rounds),
           "--out-dir", str(out_dir), "--format", "json", *extra]
    if level:
        cmd += ["--candidate-env", f"TRAINMARK_INJECT_SLOWDOWN={level:g}"]
    env = dict(os.environ, PYTHONPATH=str(repo))
    env.pop("TRAINMARK_INJECT_SLOWDOWN", None)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode not in (0, 1, 3):  # 3: no regression, an inconclusive verdict
        raise SystemExit(f"ab failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return {"exit": proc.returncode, "seconds": seconds,
            "verdict": json.loads((out_dir / "verdict.json").read_text())}


# A noisy neighbour for --neighbour: every core busy for 3-20 s, then idle for 3-20 s, and so
# on (seeded). While busy, a one-thread A/B worker gets about two thirds of a core.
NEIGHBOUR = """
import multiprocessing, os, random, sys, time
def burn(until):
    while time.time() < until:
        pass
if __name__ == "__main__":
    rng = random.Random(int(sys.argv[1]))
    while True:
        until = time.time() + rng.uniform(3, 20)
        procs = [multiprocessing.Process(target=burn, args=(until,))
                 for _ in range(os.cpu_count() or 1)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        time.sleep(rng.uniform(3, 20))
"""


def start_neighbour(seed: int = 0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", NEIGHBOUR, str(seed)],
                            start_new_session=True)  # its own process group, killed as one


def stop_neighbour(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def flagged_at(verdict: dict, threshold: float, alpha: float) -> bool:
    """Would the throughput gate fire at ``threshold`` (re-judged from the stored p-values)?"""
    for row in verdict["rows"]:
        tp = row.get("throughput")
        if row["verdict"] == "regression" and "status" in row.get("failed", []):
            return True
        if tp and tp["p_value"] is not None and tp["change"] is not None:
            if tp["p_value"] < alpha and tp["change"] < -threshold:
                return True
    return False


def inconclusive(verdict: dict) -> bool:
    """Would this run exit 3: no regression, and some verdict inconclusive?"""
    rows = [row["verdict"] for row in verdict["rows"]]
    return "regression" not in rows and "inconclusive" in rows


def summarize(results: dict[float, list[dict]], say) -> None:
    settings = next(iter(results.values()))[0]["verdict"]["settings"]
    alpha, threshold = settings["alpha"], settings["threshold"]
    say()
    say(f"# summary (gate: drop > {threshold:.0%} and p < {alpha:g}, Wilcoxon signed-rank "
        "on the per-round log ratios, fresh workers every round; the columns at 3% and 2% "
        "re-judge the same runs with a lower threshold)")
    say(f"{'slowdown':>8} {'1-1/(1+s)':>9} {'flagged':>8} {'incon.':>7} {'at 3%':>6} "
        f"{'at 2%':>6} {'median change':>13} {'range of changes':>17} {'median s/run':>12}")
    for lv, runs in results.items():
        flagged = sum(r["exit"] == 1 for r in runs)
        # runs that exit 3: no regression, but a verdict stayed inconclusive
        unsure = sum(inconclusive(r["verdict"]) for r in runs)
        at3 = sum(flagged_at(r["verdict"], 0.03, alpha) for r in runs)
        at2 = sum(flagged_at(r["verdict"], 0.02, alpha) for r in runs)
        changes = [row["throughput"]["change"] for r in runs for row in r["verdict"]["rows"]
                   if row.get("throughput") and row["throughput"]["change"] is not None]
        med = statistics.median(changes) if changes else float("nan")
        spread = f"{min(changes):+.1%}..{max(changes):+.1%}" if changes else "n/a"
        say(f"{lv:8.2f} {1 - 1 / (1 + lv):9.1%} {flagged:>4}/{len(runs):<3} "
            f"{unsure:>4}/{len(runs):<2} {at3:>3}/{len(runs):<2} {at2:>3}/{len(runs):<2} "
            f"{med:+13.1%} {spread:>17} "
            f"{statistics.median(r['seconds'] for r in runs):12.0f}")


def run_all(args: argparse.Namespace, counts: dict[float, int], tmp: Path, say,
            neighbour: bool) -> dict[float, list[dict]]:
    results: dict[float, list[dict]] = {lv: [] for lv in counts}
    repo = snapshot_repo(tmp / "repo")
    say(f"# trainmark ab evidence, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    say(f"# command per run: trainmark ab HEAD --rounds {args.rounds} {' '.join(args.ab_args)}"
        " [--candidate-env TRAINMARK_INJECT_SLOWDOWN=<level>]")
    say("# working tree snapshot as a one-commit repo: HEAD == working tree; runs per level: "
        + ", ".join(f"{lv:g}: {n}" for lv, n in counts.items()) + "; levels interleaved")
    if neighbour:
        say("# with a simulated noisy neighbour: every core busy for 3-20 s, idle for 3-20 s, ...")
    say(f"# load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
        "(the machine is shared with other developers' jobs)")
    say()
    for i in range(max(counts.values())):
        for lv in [lv for lv, n in counts.items() if n > i]:
            run_dir = tmp / f"ab-{i}-{lv:g}"
            res = run_ab(repo, run_dir, lv, args.rounds, args.ab_args)
            if args.keep:
                shutil.copytree(run_dir, Path(args.keep) / run_dir.name, dirs_exist_ok=True)
            results[lv].append(res)
            rows = res["verdict"]["rows"]
            changes = " ".join(f"{100 * r['throughput']['change']:+.1f}%"
                               if r.get("throughput") and r["throughput"]["change"] is not None
                               else "n/a" for r in rows)
            verdicts = ",".join(r["verdict"].replace(" ", "-") for r in rows)
            say(f"run {i + 1:2d} slowdown {lv:4.2f}: exit {res['exit']}  "
                f"{res['seconds']:5.1f} s  load {os.getloadavg()[0]:4.1f}  "
                f"changes [{changes}]  {verdicts}")
    summarize(results, say)
    say(f"# finished {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10, help="A/B runs per level (default 10)")
    p.add_argument("--levels", default="0,0.10,0.07:5,0.05:5,0.03:5",
                   help="injected slowdowns, comma list; LEVEL:N runs N times instead of --runs "
                        "(default 0,0.10,0.07:5,0.05:5,0.03:5)")
    p.add_argument("--rounds", type=int, default=8, help="ab --rounds (default 8)")
    p.add_argument("--out", default=str(REPO / "results" / "examples" / "ab-evidence.txt"))
    p.add_argument("--keep", help="copy every A/B's records and verdicts into this directory")
    p.add_argument("--neighbour", action="store_true",
                   help="add a noisy neighbour: all cores busy for 3-20 s, idle for 3-20 s, ...")
    p.add_argument("ab_args", nargs="*", help="more `trainmark ab` arguments (after --)")
    args = p.parse_args()
    counts: dict[float, int] = {}
    for item in args.levels.split(","):
        level, _, n = item.partition(":")
        counts[float(level)] = int(n) if n else args.runs
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    neighbour = start_neighbour() if args.neighbour else None
    try:
        with tempfile.TemporaryDirectory(prefix="trainmark-evidence-") as tmp:
            results = run_all(args, counts, Path(tmp), say, neighbour is not None)
    finally:
        if neighbour is not None:
            stop_neighbour(neighbour)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # Per run and config: change, CI, p and verdict, to re-judge with other rules later.
    compact = {f"{lv:g}": [{"exit": r["exit"], "seconds": round(r["seconds"], 1), "rows": [
        {"config": row["label"], "verdict": row["verdict"],
         **{k: row.get("throughput", {}).get(k) for k in ("change", "ci_low", "ci_high",
                                                            "p_value", "strata")}}
        for row in r["verdict"]["rows"]]} for r in runs] for lv, runs in results.items()}
    out.with_suffix(".json").write_text(json.dumps(compact, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out} and {out.with_suffix('.json')}", file=sys.stderr)


if __name__ == "__main__":
    main()
