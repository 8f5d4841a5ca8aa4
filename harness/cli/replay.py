"""``trainmark rerun RESULTS`` and ``trainmark verify RESULTS``: replay recorded configs
(``execution.replay``); ``verify`` also checks that they reproduce (``analysis.verify``) and
exits 1 when one does not."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from harness.cli.paths import writable_file
from harness.errors import UserError


def configure(p: argparse.ArgumentParser) -> None:
    verify = p.prog.split()[-1] == "verify"
    p.add_argument("results", help="results .jsonl file")
    p.add_argument("--record", help=f"{'verify' if verify else 'replay'} only this record_id")
    p.add_argument("--data-dir", default="data")
    if not verify:
        p.add_argument("--out", help="new results file (default results/rerun-<id>.jsonl)")
        p.set_defaults(func=cmd_rerun)
        return
    p.add_argument("--out", help="also store the replayed records here")
    p.add_argument("--loss-rtol", type=float, default=0.02,
                   help="relative loss tolerance for non-deterministic records (default 0.02)")
    p.add_argument("--accuracy-tolerance", dest="acc_tol", type=float, default=0.01,
                   help="absolute accuracy tolerance, as a fraction (default 0.01 = 1 point)")
    p.add_argument("--throughput-tolerance", dest="tp_tol", type=float, default=0.10,
                   help="widen the recorded throughput range by this fraction (default 0.10)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_verify)


def _check_out(out: Path) -> Path:
    if out.exists():
        raise UserError(f"results file {out} exists; choose another --out")
    return writable_file("--out", out, suffixes=(".jsonl",))


def cmd_rerun(args: argparse.Namespace) -> int:
    from harness.execution.replay import replay, replayable
    from harness.schema import new_run_id

    out = _check_out(Path(args.out or f"results/rerun-{new_run_id()}.jsonl"))
    replayable(args.results, args.record)  # a bad file or record id fails before any write
    pairs = replay(args.results, args.record, args.data_dir, out)
    print(f"{len(pairs)} configs replayed into {out}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from harness.analysis.verify import Check, compare_quality, compare_throughput
    from harness.execution.replay import replay, replayable

    for flag, value in (("--loss-rtol", args.loss_rtol), ("--accuracy-tolerance", args.acc_tol),
                        ("--throughput-tolerance", args.tp_tol)):
        if value < 0:
            raise UserError(f"{flag} must be >= 0, got {value}")
    out = _check_out(Path(args.out)) if args.out else None
    replayable(args.results, args.record)
    checks = []
    for old, new, cfg in replay(args.results, args.record, args.data_dir, out):
        quality, qdetail = compare_quality(old, new, args.loss_rtol, args.acc_tol)
        tput, tdetail = compare_throughput(old, new, args.tp_tol)
        checks.append(Check(str(old.get("record_id")), cfg.label(), cfg.deterministic,
                            str(new.get("status")), quality, tput,
                            "; ".join(d for d in (qdetail, tdetail) if d)))
    if args.format == "json":
        print(json.dumps([{**asdict(c), "reproduced": c.reproduced} for c in checks], indent=2))
    else:
        for c in checks:
            mark = "OK  " if c.reproduced else "FAIL"
            print(f"{mark} {c.record_id} {c.label}: {c.quality}, {c.throughput} ({c.detail})")
        bad = sum(not c.reproduced for c in checks)
        print(f"\n{len(checks) - bad} of {len(checks)} configs reproduce")
    return 0 if all(c.reproduced for c in checks) else 1
