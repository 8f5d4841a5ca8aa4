"""One whole ``trainmark ab`` (or bisect step): REF's worktree, the rounds, then the follow-ups
that keep a verdict honest (``execution.ab`` holds the sides, workers and interleaving modes).

1. ``rounds`` rounds of every config (``ab.by_configs``), or whole runs (``ab.by_runs``).
2. **More rounds for inconclusive configs**: one round at a time, only the configs whose verdict
   (``judge`` on the records so far) is inconclusive, until none is or ``extra_budget_s`` would
   be overrun.
3. **Confirmation of regressions** (``confirm`` times): the regressed configs are measured
   again for ``rounds`` fresh rounds into ``confirm-K/``, judged on those records alone. A
   regression stands only if every confirmation flags it too; ``confirmations.json`` says what
   each found, and ``analysis.confirmation.apply_confirmations`` folds it into the verdict.
4. With ``profile``, one more worker per side profiles every config (``profile/``), for
   ``trainmark explain``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.execution.ab import Side, Sweep, Worker, by_configs, by_runs
from harness.execution.gitref import worktree
from harness.execution.interrupts import sigterm_as_interrupt

CONFIRMATIONS = "confirmations.json"
PROFILE_DIR = "profile"


@dataclass(frozen=True)
class ABRun:
    """One A/B: where REF is, what to run, how often, and where results go."""

    top: Path  # the git checkout's top level
    source: Path  # the directory holding harness/ (the checkout, or a folder inside it)
    ref: str
    ref_sha: str
    sweep: Sweep
    rounds: int
    interleave: str  # configs | runs
    threads: int
    out_dir: Path  # baseline*.jsonl and candidate*.jsonl go here
    run_id: str
    candidate_env: dict[str, str] = field(default_factory=dict)
    # The verdict (``analysis.compare.compare_frames``' result) on the records in a folder;
    # None: no follow-up rounds. Interleaving by configs only.
    judge: Callable[[Path], dict[str, Any]] | None = None
    # The verdict on one confirmation batch's folder (``analysis.confirmation``);
    # None: ``judge``'s.
    confirm_judge: Callable[[Path], dict[str, Any]] | None = None
    extra_budget_s: float = 0.0  # seconds of extra rounds for inconclusive configs
    confirm: int = 0  # confirmation batches for regressed configs
    profile: bool = False  # a last round per side with `run --profile` into profile/
    # The candidate's tree when it is not ``source`` (``trainmark bisect``: a commit checked out
    # in another worktree); the baseline's is always REF's worktree.
    candidate_tree: Path | None = None


def configs_with(verdict: dict[str, Any], wanted: str) -> list[dict]:
    """The config fields of the rows whose verdict is ``wanted``."""
    return [row["config"] for row in verdict["rows"] if row["verdict"] == wanted]


def more_rounds(ab: ABRun, sides: dict[str, Side], scratch: Path) -> int:
    """Extra rounds of the configs still inconclusive, one round at a time, until none is or
    the next round would overrun ``ab.extra_budget_s``. Returns the extra rounds run."""
    deadline = time.monotonic() + ab.extra_budget_s
    r, last = ab.rounds, 0.0
    while ab.judge is not None and time.monotonic() + last < deadline:
        todo = configs_with(ab.judge(ab.out_dir), "inconclusive")
        if not todo:
            break
        print(f"ab: {len(todo)} config(s) inconclusive after {r} rounds; one more round "
              f"({deadline - time.monotonic():.0f} s of --extra-time left)", file=sys.stderr)
        started = time.monotonic()
        by_configs(sides, ab.sweep, [r], ab.threads, ab.out_dir, scratch, ab.run_id, only=todo)
        last = time.monotonic() - started
        r += 1
    return r - ab.rounds


def confirm_batches(flagged: list[dict], batches: int,
                    measure: Callable[[int, list[dict]], dict[str, Any]]) -> list[dict]:
    """Re-measure the ``flagged`` configs (verdict rows' config fields) up to ``batches``
    times: ``measure(k, configs)`` measures batch k (1-based) of the configs still standing and
    returns the verdict on that batch alone (judged with ``analysis.confirmation``'s
    ``confirmation_settings``). A config leaves at its first batch that does not flag it again.
    Returns ``[{"config": ..., "verdicts": [verdict of each batch], "throughput": [each batch's
    throughput change, p and size]}]``."""
    if batches <= 0:
        return []  # nothing re-measured: the verdict stands as it is
    found = [{"config": c, "verdicts": [], "throughput": []} for c in flagged]
    todo = list(flagged)
    for k in range(1, batches + 1):
        if not todo:
            break
        rows = measure(k, todo)["rows"]
        for entry in found:
            if entry["config"] in todo:
                row = next((r for r in rows if r["config"] == entry["config"]), None)
                entry["verdicts"].append(row["verdict"] if row else "not measured")
                tp = (row or {}).get("throughput")
                if tp:
                    entry["throughput"].append({k: tp[k] for k in (
                        "change", "p_value", "strata", "n_candidate", "test")})
        todo = [e["config"] for e in found if e["verdicts"][-1:] == ["regression"]]
    return found


def confirm_regressions(ab: ABRun, sides: dict[str, Side], scratch: Path) -> list[dict]:
    """Measure the regressed configs again, ``ab.confirm`` times, each time in fresh rounds of
    their own (``confirm-K/``), judged on those records alone; written to
    ``confirmations.json`` and returned (see ``confirm_batches``)."""
    if ab.judge is None or ab.confirm <= 0:
        return []
    judge = ab.confirm_judge or ab.judge

    def measure(k: int, todo: list[dict]) -> dict[str, Any]:
        print(f"ab: confirming {len(todo)} regression(s), batch {k}/{ab.confirm}: "
              f"{ab.rounds} fresh rounds", file=sys.stderr)
        folder = ab.out_dir / f"confirm-{k}"
        folder.mkdir()
        by_configs(sides, ab.sweep, range(ab.rounds), ab.threads, folder, scratch,
                   f"{ab.run_id}-c{k}", only=todo)
        return judge(folder)

    found = confirm_batches(configs_with(ab.judge(ab.out_dir), "regression"), ab.confirm,
                            measure)
    if found:
        (ab.out_dir / CONFIRMATIONS).write_text(json.dumps(found, indent=2, default=str),
                                                "utf-8")
    return found


def run_ab(ab: ABRun) -> list[dict]:
    """Measure both sides into ``ab.out_dir`` (and the follow-ups); the worktree is removed
    whatever happens (KeyboardInterrupt, also from SIGTERM, propagates after the cleanup).
    Returns the confirmations (empty when none were asked for or needed)."""
    with sigterm_as_interrupt(), worktree(ab.top, ab.ref_sha) as wt:
        sides = {
            "baseline": Side("baseline", wt / ab.source.relative_to(ab.top),
                             f"A = {ab.ref} ({ab.ref_sha[:10]})"),
            "candidate": Side("candidate", ab.candidate_tree or ab.source,
                              "B = working tree" if ab.candidate_tree is None
                              else f"B = {ab.candidate_tree}", extra_env=ab.candidate_env),
        }
        if ab.interleave != "configs":
            by_runs(sides, ab.sweep, ab.rounds, ab.threads, ab.out_dir, wt.parent)
            return []
        by_configs(sides, ab.sweep, range(ab.rounds), ab.threads, ab.out_dir, wt.parent,
                   ab.run_id)
        more_rounds(ab, sides, wt.parent)
        found = confirm_regressions(ab, sides, wt.parent)
        if ab.profile:
            profile_round(ab, sides, wt.parent)
        return found


def profile_round(ab: ABRun, sides: dict[str, Side], scratch: Path) -> Path:
    """Every config once more per side, profiled (``core.profiling``), into ``profile/``: kept
    apart from the measured records, which the verdict alone judges. A tree from before
    ``--profile`` ignores the request and records no profile. Returns the folder."""
    folder = ab.out_dir / PROFILE_DIR
    for name, side in sides.items():
        sweep = Sweep({**ab.sweep.request, "profile_dir": str(folder / name)},
                      ab.sweep.run_flags)
        worker = Worker(side, sweep, f"{ab.run_id}-profile-{name}", ab.threads,
                        scratch / f"cwd-profile-{name}")
        try:
            for i in range(len(worker.hello())):
                worker.run(i, folder / f"{name}.jsonl", {"ab_side": name})
        finally:
            worker.close()
    print(f"ab: profiles in {folder}", file=sys.stderr)
    return folder


def judge_folder(settings: Any) -> Callable[[Path], dict[str, Any]]:
    """``ABRun.judge`` (or ``confirm_judge``) with ``analysis.compare``'s rules and
    ``settings``."""
    def judge(folder: Path) -> dict[str, Any]:
        from harness.analysis.compare import compare_frames
        from harness.store.frame import load_side

        base = load_side(sorted(folder.glob("baseline*.jsonl")), "baseline")
        cand = load_side(sorted(folder.glob("candidate*.jsonl")), "candidate")
        return compare_frames(base, cand, settings)

    return judge
