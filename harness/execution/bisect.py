"""Which commit made training slower: ``git bisect run`` over GOOD..BAD, each step a same-job
A/B (``execution.ab``) of that commit against GOOD.

``bisect`` checks BAD out in a temporary worktree (the user's checkout is never touched), first
measures BAD against GOOD (if BAD is not a regression there is nothing to find), then lets
``git bisect run`` drive the search. Each step is this module run as ``python -m
harness.execution.bisect``, with *this* trainmark on ``PYTHONPATH``: it measures the commit
git checked out against GOOD exactly as ``trainmark ab GOOD`` would (fresh workers every round,
paired verdict, extra rounds for inconclusive configs) and answers git with its exit status:
0 good, 1 bad (one of the regressions BAD showed, same config and metric), 125 skip (one of
those is inconclusive, or the commit could not run the suite). Every step's records and
``verdict.json`` stay in the output folder.

A bisect's answer is confirmed before it is reported (``confirm``): the first bad commit is
measured again against GOOD in a fresh A/B, and must regress again, and so is its parent
(unless that is GOOD), which must not. One noisy step can mislead ``git bisect``; it cannot
mislead two independent measurements in the same direction as easily.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.execution.ab import Sweep, check_baseline_commits
from harness.execution.ab_run import ABRun, judge_folder, run_ab
from harness.execution.gitref import git, worktree

GOOD, BAD, SKIP = 0, 1, 125  # git bisect run's exit statuses
_FIRST_BAD = re.compile(r"^([0-9a-f]{40}) is the first bad commit", re.MULTILINE)


@dataclass(frozen=True)
class Plan:
    """What every step measures; written as JSON for the step processes."""

    top: str  # the repository's top level
    source_rel: str  # the folder holding harness/, relative to ``top``
    good_sha: str
    request: dict[str, Any]  # ab_worker's sweep request
    run_flags: list[str]
    rounds: int
    threads: int
    extra_time_s: float
    settings: dict[str, Any]  # analysis.compare.Settings as a dict
    out_dir: str
    targets: list[dict[str, Any]] | None = None  # what BAD regressed in (``targets_of``)


@dataclass(frozen=True)
class Step:
    sha: str
    exit: int  # GOOD, BAD or SKIP
    verdict: dict[str, Any] | None  # compare's result, None when the step failed


def _settings(plan: Plan):
    from harness.analysis.compare import Settings

    return Settings(**plan.settings)


def measure(plan: Plan, sha: str, candidate_source: Path) -> Step:
    """One A/B of the tree at ``candidate_source`` (commit ``sha``) against GOOD."""
    from harness.analysis.compare import compare_frames
    from harness.store.frame import load_side

    out = Path(plan.out_dir) / sha[:12]
    out.mkdir(parents=True, exist_ok=True)
    settings = _settings(plan)
    top = Path(plan.top)
    run_ab(ABRun(top=top, source=top / plan.source_rel, ref=plan.good_sha,
                 ref_sha=plan.good_sha, sweep=Sweep(plan.request, plan.run_flags),
                 rounds=plan.rounds, interleave="configs", threads=plan.threads, out_dir=out,
                 run_id=f"bisect-{sha[:12]}",
                 judge=judge_folder(settings), extra_budget_s=plan.extra_time_s,
                 candidate_tree=candidate_source))
    base = load_side(sorted(out.glob("baseline*.jsonl")), "baseline")
    cand = load_side(sorted(out.glob("candidate*.jsonl")), "candidate")
    check_baseline_commits(base["git_commit"].dropna(), plan.good_sha)
    result = compare_frames(base, cand, settings)
    (out / "verdict.json").write_text(json.dumps(result, indent=2, default=str), "utf-8")
    return Step(sha, step_exit(result, plan.targets), result)


def targets_of(verdict: dict[str, Any]) -> list[dict[str, Any]]:
    """What BAD regressed in: ``[{"config": ..., "metrics": [...]}]`` (``status``,
    ``throughput``, ``memory``, ``accuracy``): the change a bisect looks for."""
    return [{"config": row["config"], "metrics": list(row.get("failed") or [])}
            for row in verdict["rows"] if row["verdict"] == "regression"]


def _part(row: dict[str, Any], metric: str) -> str:
    if metric == "status":
        return "regression" if "status" in (row.get("failed") or []) else "no change"
    return str((row.get(metric) or {}).get("verdict") or row["verdict"])


def step_exit(verdict: dict[str, Any], targets: list[dict[str, Any]] | None = None) -> int:
    """What a step tells git: bad when one of BAD's regressions (``targets``; any regression
    when None) is there too, skip when one of them is inconclusive (the step cannot tell
    either way), else good. A noisy verdict on something BAD did not regress in (e.g. host
    memory when BAD was slower) does not stall the search."""
    from harness.analysis.stats import INCONCLUSIVE, REGRESSION

    if targets is None:
        verdicts = {row["verdict"] for row in verdict["rows"]}
        return BAD if REGRESSION in verdicts else SKIP if INCONCLUSIVE in verdicts else GOOD
    parts = set()
    for target in targets:
        row = next((r for r in verdict["rows"] if r["config"] == target["config"]), None)
        if row is None:
            parts.add(INCONCLUSIVE)  # the config did not run at this commit
            continue
        parts |= {_part(row, m) for m in target["metrics"]}
    return BAD if REGRESSION in parts else SKIP if INCONCLUSIVE in parts else GOOD


# What ``git bisect run`` exports to its command (in a linked worktree it sets GIT_DIR): left in
# place, every git call of the step's workers, their provenance included, would read the bisect
# worktree's repository instead of their own tree's.
GIT_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_PREFIX", "GIT_COMMON_DIR")


def _step_main(plan_path: str) -> int:
    """A ``git bisect run`` step in the bisect worktree (the cwd); its exit status for git."""
    for name in GIT_ENV:
        os.environ.pop(name, None)
    plan = Plan(**json.loads(Path(plan_path).read_text("utf-8")))
    here = Path(git(Path.cwd(), "rev-parse", "--show-toplevel"))
    sha = git(here, "rev-parse", "HEAD")
    started = time.perf_counter()
    try:
        step = measure(plan, sha, here / plan.source_rel)
    except UserError as exc:  # e.g. the suite cannot run at this commit: git skips it
        print(f"bisect: {sha[:12]}: skipped: {exc}", file=sys.stderr)
        return SKIP
    except KeyboardInterrupt:
        return 255  # >= 128: git bisect run stops
    word = {GOOD: "good", BAD: "bad (regression)", SKIP: "skipped (inconclusive)"}[step.exit]
    print(f"bisect: {sha[:12]} is {word} ({time.perf_counter() - started:.0f} s)",
          file=sys.stderr, flush=True)
    return step.exit


@dataclass(frozen=True)
class Outcome:
    first_bad: str | None  # None when BAD is not a regression against GOOD
    steps: list[Step]
    seconds: float
    log: str  # ``git bisect log``
    confirmations: list[Step] = dataclasses.field(default_factory=list)  # ``confirm``'s steps

    @property
    def confirmed(self) -> bool | None:
        """None when nothing was confirmed (not asked, or nothing found); else whether every
        re-measurement agreed: the first bad commit bad again, its parent good again."""
        if self.first_bad is None or not self.confirmations:
            return None
        return all((s.exit == BAD) == (s.sha == self.first_bad) and s.exit != SKIP
                   for s in self.confirmations)


def confirm(plan: Plan, first_bad: str, times: int) -> list[Step]:
    """Measure ``first_bad`` and its parent (unless that is GOOD) against GOOD again, in fresh
    A/Bs (``confirm-K/`` folders), up to ``times`` times; stops at the first disagreement."""
    top = Path(plan.top)
    parent = git(top, "rev-parse", f"{first_bad}^")
    shas = [first_bad] + ([parent] if parent != plan.good_sha else [])
    steps: list[Step] = []
    for k in range(1, times + 1):
        again = dataclasses.replace(plan, out_dir=str(Path(plan.out_dir) / f"confirm-{k}"))
        for sha in shas:
            print(f"bisect: confirming: {sha[:12]} against GOOD again ({k}/{times})",
                  file=sys.stderr, flush=True)
            with worktree(top, sha) as wt:
                step = measure(again, sha, wt / plan.source_rel)
            steps.append(step)
            if (step.exit == BAD) != (sha == first_bad) or step.exit == SKIP:
                return steps
    return steps


def bisect(plan: Plan, bad_sha: str, confirm_times: int = 1) -> Outcome:
    """Find the first commit in GOOD..BAD that regresses against GOOD, and confirm it
    ``confirm_times`` times (``confirm``; 0: not at all)."""
    started = time.perf_counter()
    top = Path(plan.top)
    out = Path(plan.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plan_path = out / "plan.json"
    plan_path.write_text(json.dumps(dataclasses.asdict(plan), indent=2), "utf-8")
    with worktree(top, bad_sha) as wt:
        first = measure(plan, bad_sha, wt / plan.source_rel)
        print(f"bisect: BAD {bad_sha[:12]} is "
              f"{'a regression' if first.exit == BAD else 'not a regression'} against GOOD",
              file=sys.stderr, flush=True)
        if first.exit != BAD:
            return Outcome(None, [first], time.perf_counter() - started, "")
        plan = dataclasses.replace(plan, targets=targets_of(first.verdict or {"rows": []}))
        plan_path.write_text(json.dumps(dataclasses.asdict(plan), indent=2, default=str),
                             "utf-8")
        git(wt, "bisect", "start", bad_sha, plan.good_sha)
        try:
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(
                [str(top / plan.source_rel)] + ([os.environ["PYTHONPATH"]]
                                                if os.environ.get("PYTHONPATH") else [])))
            proc = subprocess.run(["git", "-C", str(wt), "bisect", "run", sys.executable, "-m",
                                   "harness.execution.bisect", str(plan_path.resolve())],
                                  env=env, stdout=subprocess.PIPE, text=True)
            log = git(wt, "bisect", "log", check=False)
        finally:
            git(wt, "bisect", "reset", check=False)
    found = _FIRST_BAD.search(proc.stdout or "")
    steps = [first] + [_stored_step(d, plan.targets) for d in sorted(out.iterdir())
                       if d.is_dir() and d.name != bad_sha[:12] and (d / "verdict.json").exists()]
    if found is None:
        raise UserError("git bisect did not name a first bad commit (too many skipped "
                        f"commits?): {(proc.stdout or '').strip().splitlines()[-1:]}")
    again = confirm(plan, found.group(1), confirm_times) if confirm_times else []
    return Outcome(found.group(1), steps, time.perf_counter() - started, log, again)


def _stored_step(folder: Path, targets: list[dict[str, Any]] | None) -> Step:
    verdict = json.loads((folder / "verdict.json").read_text("utf-8"))
    commits = verdict.get("candidate", {}).get("git_commit") or [folder.name]
    return Step(str(commits[0]), step_exit(verdict, targets), verdict)


if __name__ == "__main__":
    sys.exit(_step_main(sys.argv[1]))
