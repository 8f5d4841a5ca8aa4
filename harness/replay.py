"""``trainmark rerun`` and ``trainmark verify``: replay recorded configs and check them.

Every record carries its full ``RunConfig`` (``config_from_record``), so a results file is its
own recipe. ``verify`` replays each config and reports per config whether held-out accuracy and
losses reproduce - bitwise (same loss-trajectory digest) for deterministic records, within a
tolerance otherwise - and whether the new throughput lies within the recorded spread (the
recorded repeats' range widened by ``--throughput-tolerance``). Exit status 1 when something does
not reproduce.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.config import config_from_record
from harness.determinism import prepare_process
from harness.errors import UserError
from harness.results import ResultsWriter, read_records
from harness.runner import Runner, new_run_id


@dataclass
class Check:
    record_id: str
    label: str
    deterministic: bool
    status: str  # the replay's status
    quality: str  # "exact", "within tolerance", "differs", "n/a"
    throughput: str  # "within spread", "outside spread", "n/a"
    detail: str

    @property
    def reproduced(self) -> bool:
        return self.quality in ("exact", "within tolerance") and self.throughput != "outside spread"


def select(records: list[dict], record_id: str | None) -> list[dict]:
    """Records to replay: all replayable ones, or the one named (``UserError`` if absent)."""
    usable = [r for r in records if r.get("model") and r.get("experiment") is None]
    if record_id is None:
        return usable
    chosen = [r for r in usable if r.get("record_id") == record_id]
    if not chosen:
        ids = ", ".join(str(r.get("record_id")) for r in usable[:8])
        raise UserError(f"no record {record_id!r} in the file; valid: {ids}"
                        + (", ..." if len(usable) > 8 else ""))
    return chosen


def compare_quality(old: dict, new: dict, loss_rtol: float, acc_tol: float) -> tuple[str, str]:
    if old.get("status") != "ok" or new.get("status") != "ok":
        if old.get("status") == new.get("status"):
            return "exact", f"status {new.get('status')} again"
        return "differs", f"status {old.get('status')} -> {new.get('status')}: {new.get('error')}"
    if old.get("deterministic"):
        same_curve = old.get("loss_curve_sha256") == new.get("loss_curve_sha256")
        same_acc = old.get("eval_accuracy") == new.get("eval_accuracy")
        same_loss = old.get("eval_loss") == new.get("eval_loss")
        if same_curve and same_acc and same_loss:
            return "exact", "bitwise-identical loss trajectory, eval loss and accuracy"
        what = [n for n, ok in (("loss trajectory", same_curve), ("eval accuracy", same_acc),
                                ("eval loss", same_loss)) if not ok]
        return "differs", "deterministic record, but " + ", ".join(what) + " differ"
    problems = []
    for key in ("train_loss", "eval_loss"):
        a, b = old.get(key), new.get(key)
        if a is not None and b is not None and abs(b - a) > loss_rtol * max(abs(a), 1e-12):
            problems.append(f"{key} {a:.4f} -> {b:.4f}")
    a, b = old.get("eval_accuracy"), new.get("eval_accuracy")
    if a is not None and b is not None and abs(b - a) > acc_tol:
        problems.append(f"eval_accuracy {a:.4f} -> {b:.4f}")
    if problems:
        return "differs", "; ".join(problems)
    return "within tolerance", f"eval_accuracy {a} -> {b}"


def compare_throughput(old: dict, new: dict, tol: float) -> tuple[str, str]:
    samples = [v for v in (old.get("repeat_throughputs") or []) if v is not None]
    tp = new.get("throughput")
    if not samples or tp is None:
        return "n/a", ""
    lo, hi = min(samples) * (1 - tol), max(samples) * (1 + tol)
    verdict = "within spread" if lo <= tp <= hi else "outside spread"
    return verdict, f"throughput {tp:,.0f} vs recorded [{min(samples):,.0f}, {max(samples):,.0f}]"


def replay(path: str, record_id: str | None, data_dir: str, out: Path | None) -> list[tuple]:
    records = select(read_records(path), record_id)
    if not records:
        raise UserError(f"{path}: no replayable benchmark records")
    configs = [config_from_record(r) for r in records]
    prepare_process(any(c.deterministic for c in configs))
    runner = Runner(run_id=new_run_id(), data_dir=data_dir)
    writer = ResultsWriter(out) if out else None
    pairs = []
    for old, cfg in zip(records, configs, strict=True):
        print(f"replaying {cfg.label()} ...", file=sys.stderr, flush=True)
        new = runner.run(cfg)
        new["replay_of"] = old.get("record_id")
        if writer:
            writer.write(new)
        pairs.append((old, new, cfg))
    return pairs


def cmd_rerun(args: argparse.Namespace) -> int:
    out = Path(args.out or f"results/rerun-{new_run_id()}.jsonl")
    if out.exists():
        raise UserError(f"results file {out} exists; choose another --out")
    pairs = replay(args.results, args.record, args.data_dir, out)
    print(f"{len(pairs)} configs replayed into {out}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    for flag, value in (("--loss-rtol", args.loss_rtol), ("--accuracy-tolerance", args.acc_tol),
                        ("--throughput-tolerance", args.tp_tol)):
        if value < 0:
            raise UserError(f"{flag} must be >= 0, got {value}")
    pairs = replay(args.results, args.record, args.data_dir, Path(args.out) if args.out else None)
    checks = []
    for old, new, cfg in pairs:
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


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rerun", help="replay the configs recorded in a results file")
    p.add_argument("results", help="results .jsonl file")
    p.add_argument("--record", help="replay only this record_id")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--out", help="new results file (default results/rerun-<id>.jsonl)")
    p.set_defaults(func=cmd_rerun)

    p = sub.add_parser("verify", help="replay recorded configs and check that they reproduce")
    p.add_argument("results", help="results .jsonl file")
    p.add_argument("--record", help="verify only this record_id")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--out", help="also store the replayed records here")
    p.add_argument("--loss-rtol", type=float, default=0.02,
                   help="relative loss tolerance for non-deterministic records (default 0.02)")
    p.add_argument("--accuracy-tolerance", dest="acc_tol", type=float, default=0.01,
                   help="absolute accuracy tolerance, as a fraction (default 0.01 = 1 point)")
    p.add_argument("--throughput-tolerance", dest="tp_tol", type=float, default=0.10,
                   help="widen the recorded throughput range by this fraction (default 0.10)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_verify)
