"""Evidence for ``trainmark verify``: record a small sweep, verify it at once, and repeat. On an
unchanged tree every verify should pass; a failure is a false alarm.

Each round runs, in a fresh temporary directory,

    trainmark run --suite SUITE --repeats R --out r.jsonl --no-report --quiet
    trainmark verify r.jsonl --format json [VERIFY_ARGS]

and reads the per-config verdicts. The table counts false failures (what the user would see)
and, separately, the first replays that looked like a regression before the confirmation rerun
(``--confirm``) judged them, so the rerun's share in holding false alarms down is visible. Each
round lists the configs' changes as verify judged them (relative to the run-wide shift, when the
replay had one) and that shift.

    python -m benchmarks.verify_evidence [--rounds 10] [--suite ci] [--repeats 5] [--threads N]
        [--out results/examples/verify-evidence.txt] [-- VERIFY_ARGS]

``--threads 1`` records and replays with one intra-op thread, as ``trainmark ab`` measures by
default: on a shared 2-core machine two OpenMP threads slow down erratically whenever anything
else runs (a descheduled thread leaves the other spinning at a barrier), and the config with
the largest parallel kernels (the ConvNet in fp32) then swings by +-30% between processes.

With 5 repeats per side the Mann-Whitney test can reach p = 2/252 < 0.01, so a regression is
possible at all (with 3 repeats it never is, and the evidence would prove nothing). This is a
benchmark, not a test: one round takes about a minute on a 2-core CPU.
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

REPO = Path(__file__).resolve().parent.parent


def trainmark(*args: str, cwd: Path, threads: int = 0) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if threads:  # the workers read it (and the record keeps num_threads): record = replay
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, text=True,
                          capture_output=True, env=env)


def one_round(tmp: Path, suite: str, repeats: int, verify_args: list[str],
              threads: int = 0) -> dict:
    """Record then verify; the checks, verify's exit status and both wall times."""
    started = time.perf_counter()
    rec = trainmark("run", "--suite", suite, "--repeats", str(repeats), "--out", "r.jsonl",
                    "--no-report", "--quiet", cwd=tmp, threads=threads)
    if rec.returncode != 0:
        raise SystemExit(f"run failed (exit {rec.returncode}): {rec.stderr.strip()[-500:]}")
    recorded = time.perf_counter() - started
    ver = trainmark("verify", "r.jsonl", "--format", "json", *verify_args, cwd=tmp,
                    threads=threads)
    if ver.returncode not in (0, 1):
        raise SystemExit(f"verify failed (exit {ver.returncode}): {ver.stderr.strip()[-500:]}")
    return {"exit": ver.returncode, "checks": json.loads(ver.stdout), "record_s": recorded,
            "verify_s": time.perf_counter() - started - recorded}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--suite", default="ci")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0,
                   help="intra-op threads of the record and the replay (OMP_NUM_THREADS; "
                        "default 0: inherited, i.e. every core)")
    p.add_argument("--out", default=str(REPO / "results" / "examples" / "verify-evidence.txt"))
    p.add_argument("verify_args", nargs="*", help="more `trainmark verify` arguments (after --)")
    args = p.parse_args()
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    say(f"# trainmark verify evidence, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    say(f"# per round: trainmark run --suite {args.suite} --repeats {args.repeats}; then "
        f"trainmark verify {' '.join(args.verify_args)}".rstrip()
        + (f"; both with OMP_NUM_THREADS={args.threads}" if args.threads else ""))
    say(f"# load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    failed_rounds = configs = false_failures = first_flagged = shifted = 0
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="trainmark-verify-") as tmp:
            res = one_round(Path(tmp), args.suite, args.repeats, args.verify_args, args.threads)
        checks = res["checks"]
        configs += len(checks)
        bad = [c for c in checks if not c["reproduced"]]
        false_failures += len(bad)
        failed_rounds += res["exit"] == 1
        first_flagged += sum(c["throughput"] == "regression" for c in checks)
        # Each config's change as judged (relative to the run-wide shift), then the shift.
        changes = " ".join(f"{100 * c['throughput_change']:+.1f}%"
                           if c["throughput_change"] is not None else "n/a" for c in checks)
        shift = checks[0]["shift"] if checks else 0.0
        shifted += abs(shift) > 0
        changes += f"] shift [{100 * shift:+.1f}%" if shift else "] shift [none"
        notes = "; ".join(f"{c['label']}: {c['throughput']} -> rerun "
                          f"{','.join(c['confirmations']) or '-'}"
                          for c in checks if c["throughput"] == "regression")
        say(f"round {i + 1:2d}: exit {res['exit']}  record {res['record_s']:5.1f} s  verify "
            f"{res['verify_s']:5.1f} s  load {os.getloadavg()[0]:4.1f}  changes [{changes}]"
            + (f"  {notes}" if notes else ""))
    say()
    say(f"# summary: {failed_rounds} of {args.rounds} verify runs failed "
        f"({false_failures} of {configs} config checks); {first_flagged} first replays "
        f"looked like a regression before the confirmation rerun; {shifted} rounds judged "
        "relative to a run-wide shift")
    say(f"# finished {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
