"""How fast do ``report``, ``compare`` and ``history`` load a year of CI results, and how fast is
``history``'s analysis? (issue 31). Each figure is one fresh process: its wall time and its
peak RSS (``ru_maxrss``), medians over ``--runs``.

Stores come from ``benchmarks.store_data`` (the quick suite's 36 configs, one file per commit
and runner, ~3.7 KB a record, a 10% step in one config halfway), generated under ``--dir``
unless there. Loads:

- ``parse``: the reading before issue 31 (every file parsed, all columns; the cache off);
- ``history``, ``compare``, ``report``: what each command now reads (``HISTORY_COLUMNS``,
  ``COMPARE_COLUMNS``, ``REPORT_COLUMNS``) through the Parquet cache, first ``cold`` (an empty
  cache: every file parsed into packs) and then ``warm`` (the packs of the cold run);
- ``report-all``: every column but the loss curve, as report and compare read before.

    python -m benchmarks.store_scale loads --commits 1400 --runners 2 --runs 3
    python -m benchmarks.store_scale history --commits 140,280,560,1400 [--reference]

``history`` times ``build_history`` over one runner's commits (108 series: 36 configs x 3
metrics), with ``--reference`` also ``analysis/history.py`` as it was before issue 31 (taken
from git, commit ``BEFORE``; minutes from 560 commits on).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BEFORE = "a06cbe1"  # the last commit before issue 31's history work
CHILD = r"""
import json, resource, sys, time
kind, store = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
from harness.store.frame import expand_paths, load_lenient, load_results, load_side
paths = expand_paths([store])
if kind == "parse" or kind == "cached-all":
    rows = len(load_results(paths))
elif kind == "history":
    from harness.analysis.history import HISTORY_COLUMNS
    rows = len(load_results(paths, HISTORY_COLUMNS))
elif kind == "compare":
    from harness.analysis.compare import COMPARE_COLUMNS
    rows = len(load_side([store], "candidate", COMPARE_COLUMNS))
elif kind == "report":
    from harness.render.report import load_inputs
    rows = len(load_inputs(paths)[0])
elif kind == "compare-all" or kind == "report-all":  # every column (before this change)
    rows = len(load_lenient(paths, exclude=("loss_curve",))[0])
elif kind.startswith("analysis"):
    from harness.analysis.history import HISTORY_COLUMNS, build_history
    # before issue 31 the command read every column
    frame = load_results(paths, None if kind == "analysis-reference" else HISTORY_COLUMNS)
    t0 = time.perf_counter()
    if kind == "analysis-reference":  # the module before issue 31, from git, whole
        import subprocess, types
        old = types.ModuleType("history_before")
        old.__dict__["__name__"] = "history_before"
        sys.modules["history_before"] = old
        exec(subprocess.run(["git", "show", sys.argv[3] + ":harness/analysis/history.py"],
                            check=True, capture_output=True, text=True).stdout, old.__dict__)
        build_history = old.build_history
    history = build_history(frame)
    rows = sum(len(s.steps) for s in history)
print(json.dumps({"s": time.perf_counter() - t0, "rows": rows,
                  "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def run_child(kind: str, store: Path, cache: str) -> dict[str, float]:
    env = {**os.environ, "TRAINMARK_CACHE_DIR": cache}
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(store), BEFORE], env=env,
                         check=True,
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ensure_store(base: Path, commits: int, runners: int) -> Path:
    from benchmarks.store_data import generate

    store = base / f"store-{commits}x{runners}"
    if not store.is_dir() or len(list(store.iterdir())) != commits * runners:
        shutil.rmtree(store, ignore_errors=True)
        generate(store, commits=commits, runners=runners)
    return store


def load_avg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def median_of(kind: str, store: Path, cache: str, runs: int) -> tuple[float, float, int]:
    got = [run_child(kind, store, cache) for _ in range(runs)]
    return (statistics.median(g["s"] for g in got), max(g["rss_gb"] for g in got),
            int(got[0]["rows"]))


def loads(args: argparse.Namespace) -> None:
    store = ensure_store(Path(args.dir), args.commits, args.runners)
    size = sum(p.stat().st_size for p in store.iterdir()) / 2**20
    print(f"# store {store}: {args.commits} commits x {args.runners} runners, {size:,.0f} MiB; "
          f"load average {load_avg()}")
    print(f"{'load':<22}{'seconds':>9}{'peak RSS GB':>13}{'rows':>10}")
    cache = tempfile.mkdtemp(prefix="tm-cache-", dir=args.dir)
    try:
        if not args.skip_parse:
            s, gb, n = median_of("parse", store, "off", args.parse_runs)
            print(f"{'parse (before)':<22}{s:>9.2f}{gb:>13.2f}{n:>10}", flush=True)
        s, gb, n = median_of("history", store, cache, 1)
        print(f"{'history cold':<22}{s:>9.2f}{gb:>13.2f}{n:>10}", flush=True)
        for kind in args.kinds.split(","):
            s, gb, n = median_of(kind, store, cache, args.runs)
            print(f"{kind + ' warm':<22}{s:>9.2f}{gb:>13.2f}{n:>10}", flush=True)
        cache_mb = sum(p.stat().st_size for p in Path(cache).rglob("*.parquet")) / 2**20
        print(f"# cache {cache_mb:,.0f} MiB; load average after: {load_avg()}")
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def history(args: argparse.Namespace) -> None:
    print(f"# build_history over one runner, 36 configs x 3 metrics; load {load_avg()}")
    print(f"{'commits':>8}{'seconds':>9}{'steps':>7}" + (f"{'reference s':>13}{'steps':>7}"
                                                          if args.reference else ""))
    cache = tempfile.mkdtemp(prefix="tm-cache-", dir=args.dir)
    try:
        for commits in args.commits_list:
            store = ensure_store(Path(args.dir), commits, 1)
            s, _, steps = median_of("analysis", store, cache, args.runs)
            line = f"{commits:>8}{s:>9.2f}{steps:>7}"
            if args.reference and commits <= args.reference_up_to:
                rs, _, rsteps = median_of("analysis-reference", store, cache, 1)
                line += f"{rs:>13.1f}{rsteps:>7}"
            print(line, flush=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    lo = sub.add_parser("loads")
    lo.add_argument("--commits", type=int, default=1400)
    lo.add_argument("--runners", type=int, default=2)
    lo.add_argument("--runs", type=int, default=3)
    lo.add_argument("--parse-runs", type=int, default=1)
    lo.add_argument("--skip-parse", action="store_true", help="leave out the slow old reading")
    lo.add_argument("--kinds", default="history,compare,report",
                    help="warm loads to time, of history, compare, report, report-all")
    hi = sub.add_parser("history")
    hi.add_argument("--commits", default="140,280,560,1400")
    hi.add_argument("--runs", type=int, default=3)
    hi.add_argument("--reference", action="store_true")
    hi.add_argument("--reference-up-to", type=int, default=10**9, metavar="COMMITS",
                    help="time the reference only on histories this long or shorter")
    for q in (lo, hi):
        q.add_argument("--dir", default=tempfile.gettempdir(), help="where stores are made")
    args = p.parse_args(argv)
    if args.what == "loads":
        loads(args)
    else:
        args.commits_list = [int(c) for c in args.commits.split(",")]
        history(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
