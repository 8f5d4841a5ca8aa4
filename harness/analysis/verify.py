"""Does a replayed record reproduce the original? Quality and throughput checks, pure functions.

Deterministic records must reproduce bitwise (same loss-trajectory digest, eval loss and
accuracy); others within a loss and accuracy tolerance. Throughput is judged with the statistics
``compare`` uses (``analysis.stats.compare_samples``: Mann-Whitney U on the per-repeat samples
plus a threshold on the change of medians), recorded repeats vs replayed repeats. Only a
*regression* (significant and beyond the threshold) fails, and only if it reproduces when the
config runs again in a fresh worker (``Check.confirmations``): the repeats of one record come
from one process, so a constant offset between two processes can look significant; a second
independent process is what tells a slower tree from that. ``inconclusive`` (too few repeats to
be significant, or a large change that is not significant) is reported but passes, because a
few short repeats cannot tell a slower tree from a noisy machine. ``execution.replay`` produces
the new records.

A shared machine also drifts as a whole: between a record and its replay a minute later, every
config of a sweep has been measured 11-18% slower (or 12-28% faster) together
(``results/examples/verify-evidence.txt``). ``run_shift`` estimates that shared slowdown when at
least three configs all slowed down, and each config is judged relative to it: a config fails
for what it does *differently* from the rest of the replay. The shift itself is reported,
never judged: within one replay a change every config shares cannot be told from a change of
the machine's speed (``trainmark ab`` interleaves two trees to tell them apart).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from harness.analysis import stats

NOT_APPLICABLE = "n/a"  # a side has no throughput samples (e.g. both runs failed alike)
# Fewer configs cannot tell a shared shift from one config's own change (with two, the median
# is their mean: one slower config would move it halfway).
MIN_CONFIGS_FOR_SHIFT = 3


@dataclass
class Check:
    record_id: str
    label: str
    deterministic: bool
    status: str  # the replay's status
    quality: str  # "exact", "within tolerance", "differs", "n/a"
    throughput: str  # a stats verdict (regression, improvement, no change, inconclusive) or n/a
    detail: str
    throughput_change: float | None = None  # replayed median / recorded median - 1
    throughput_p_value: float | None = None  # None when too few samples to test
    throughput_reason: str = ""  # why that verdict, as ``compare`` words it
    # Verdicts of the reruns that tried to confirm a throughput regression, in order (empty
    # when none was asked for or needed); the regression stands only if every one agrees.
    confirmations: list[str] = field(default_factory=list)
    shift: float = 0.0  # the replay's run-wide slowdown this config was judged relative to

    @property
    def quality_ok(self) -> bool:
        return self.quality in ("exact", "within tolerance")

    @property
    def regression_confirmed(self) -> bool:
        return (self.throughput == stats.REGRESSION
                and all(v == stats.REGRESSION for v in self.confirmations))

    @property
    def reproduced(self) -> bool:
        return self.quality_ok and not self.regression_confirmed


@dataclass(frozen=True)
class ThroughputCheck:
    """The throughput half of a ``Check``: the verdict with its numbers and one line of detail."""

    verdict: str
    change: float | None
    p_value: float | None
    reason: str
    detail: str


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


def throughput_samples(record: dict) -> list[float]:
    """Per-repeat throughputs of an ok record; its median alone for records without them.

    The same samples ``compare`` tests, so verify and compare cannot disagree on one pair."""
    if record.get("status") != "ok":
        return []  # a failed run's partial timings say nothing about speed
    samples = stats.clean_samples(record.get("repeat_throughputs"))
    return samples or stats.clean_samples([record.get("throughput")])


def run_shift(pairs: Iterable[tuple[dict, dict]]) -> float:
    """The change of speed the whole replay shares, as a fraction (0.0 when there is none).

    The median over configs of replayed median / recorded median (a geometric median: a 2x
    and a 0.5x cancel), when it is a slowdown, at least ``MIN_CONFIGS_FOR_SHIFT`` configs have
    throughput on both sides and every one of them is slower: a machine that got slower slows
    every config, so one config that did not slow down means the slower ones are slower on their
    own and must be judged as they are. A run-wide speed-up is never discounted: it would hold
    the other configs' gain against a config that is still no slower than recorded."""
    logs = []
    for old, new in pairs:
        recorded, replayed = throughput_samples(old), throughput_samples(new)
        if recorded and replayed and statistics.median(recorded) > 0:
            logs.append(math.log(statistics.median(replayed) / statistics.median(recorded)))
    if len(logs) < MIN_CONFIGS_FOR_SHIFT:
        return 0.0
    middle = statistics.median(logs)
    # Only a slowdown is discounted: a config that sped up less than the rest of a faster run is
    # still no slower than recorded (one evidence round had the run +28% and one config +11%).
    if middle >= 0 or not all(x < 0 for x in logs):  # one config stayed put or got faster
        return 0.0
    return math.exp(middle) - 1.0


def compare_throughput(old: dict, new: dict, threshold: float = 0.10,
                       alpha: float = stats.DEFAULT_ALPHA, shift: float = 0.0,
                       ) -> ThroughputCheck:
    """Recorded vs replayed per-repeat throughput, judged like ``compare`` judges two results;
    the replayed samples are first divided by ``1 + shift`` (``run_shift``)."""
    recorded, replayed = throughput_samples(old), throughput_samples(new)
    if not recorded or not replayed:
        return ThroughputCheck(NOT_APPLICABLE, None, None, "no throughput samples", "")
    cmp = stats.compare_samples(recorded, [x / (1.0 + shift) for x in replayed],
                                threshold=threshold, alpha=alpha)
    detail = _throughput_detail(cmp, shift)
    return ThroughputCheck(cmp.verdict, cmp.change, cmp.p_value, cmp.reason, detail)


def _throughput_detail(cmp: stats.SampleComparison, shift: float) -> str:
    # Medians with their sample counts (so "n=2" explains an inconclusive verdict at a glance),
    # the change, then compare's reason (it carries p when one was computed). The verdict itself
    # is ``Check.throughput``: one phrase for the one-line output, without repeating it. With a
    # shift, the median shown is the one measured and the change is the one judged.
    measured = (cmp.candidate_median or 0) * (1.0 + shift)
    change = "" if cmp.change is None else f", {cmp.change:+.1%}"
    if shift and cmp.change is not None:
        change += f" relative to the run's {shift:+.1%}"
    return (f"throughput {measured:,.0f} (n={cmp.n_candidate}) vs recorded "
            f"{cmp.baseline_median or 0:,.0f} (n={cmp.n_baseline}){change}: {cmp.reason}")
