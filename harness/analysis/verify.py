"""Does a replayed record reproduce the original? Quality and throughput checks, pure functions.

Deterministic records must reproduce bitwise (same loss-trajectory digest, eval loss and
accuracy); others within a loss and accuracy tolerance. Throughput must lie within the recorded
repeats' range widened by a tolerance. ``execution.replay`` produces the new records.
"""

from __future__ import annotations

from dataclasses import dataclass


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
