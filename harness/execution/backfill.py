"""Measure every commit of a range for ``trainmark history``, in rounds of shuffled order.

What CI appends is one run per commit, in commit order. On a shared machine, speed moves in
level shifts that last minutes (the history evidence measured one: a model's configs 12% fast
for four consecutive sweeps), so consecutive commits share the machine's state and such a shift
reads as a step *between commits*: it can be reported, or it can move a real step by a few
commits. No analysis of one run per commit can tell the two apart.

``backfill`` measures the range so that it can: ``rounds`` passes over the commits, each in
its own seeded random order (``round_order``), one ``trainmark run`` per commit and round, from
that commit's own tree (a temporary ``git worktree``; the user's checkout is never touched).
A level shift then hits commits scattered over the range, a different set in every round, and
the median of a commit's rounds (what ``analysis.history`` plots) leaves it out: noise, not a
step. asv interleaves its benchmark processes for the same reason (``asv run
--interleave-processes``: to sample long-time background variation rather than be led by it).

Each (commit, round) is one file, ``<sha12>-round<r>.jsonl``, written whole or not at all, so
an interrupted backfill loses at most the run in progress, and running the same command again
measures only what is missing. Every run's records must report the commit they were measured
for: a trainmark installed elsewhere that shadows the worktree would otherwise measure one tree
20 times.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import UserError
from harness.execution.ab import Side, run_block
from harness.execution.gitref import git, is_ancestor, worktree


@dataclass(frozen=True)
class Plan:
    top: Path  # the repository's top level
    source_rel: str  # the folder holding harness/, relative to ``top``
    commits: list[str]  # full SHAs, oldest first
    rounds: int
    run_flags: list[str]  # `trainmark run` arguments (execution.ab.Sweep.run_flags)
    threads: int  # OMP/MKL threads per run; 0 inherits
    out_dir: Path
    suite: str | None = None  # the name records get where a commit's tree records none


@dataclass
class Outcome:
    measured: int = 0  # runs made now
    existing: int = 0  # runs already in out_dir, not repeated
    failed: dict[str, str] = field(default_factory=dict)  # sha -> why its run failed
    seconds: float = 0.0


def commits_between(top: Path, first: str, last: str) -> list[str]:
    """``first`` and every commit after it up to ``last``, oldest first, along ``last``'s
    first-parent line (a merged branch is one step, as in CI's history of main)."""
    if first != last and not is_ancestor(top, first, last):
        raise UserError(f"{first[:10]} is not an ancestor of {last[:10]}: give the older commit "
                        "first")
    later = git(top, "rev-list", "--first-parent", "--reverse", f"{first}..{last}").split()
    return [first, *later]


def round_order(commits: list[str], round_index: int) -> list[str]:
    """The order of one round: a random permutation seeded by the range and the round, so a
    rerun of the same backfill (to fill in what an interruption left) keeps the same order."""
    rng = random.Random(f"{commits[0]}..{commits[-1]}#{round_index}")
    return rng.sample(commits, len(commits))


def record_path(out_dir: Path, sha: str, round_index: int) -> Path:
    return out_dir / f"{sha[:12]}-round{round_index}.jsonl"


def _check_commit(path: Path, sha: str) -> None:
    """The records of ``path`` must come from ``sha``'s clean worktree."""
    reported = {json.loads(line).get("git_commit")
                for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}
    if reported != {sha}:
        got = ", ".join(sorted(str(c) for c in reported)) or "none"
        raise UserError(f"the run for commit {sha[:12]} reports git commit {got}: another "
                        "trainmark is shadowing the worktree on sys.path")


def backfill(plan: Plan, say: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
             ) -> Outcome:
    """Measure what ``plan`` asks for that ``out_dir`` lacks (module docstring)."""
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    outcome = Outcome()
    started = time.perf_counter()
    todo = [(r, sha) for r in range(plan.rounds) for sha in round_order(plan.commits, r)]
    missing = [(r, sha) for r, sha in todo if not record_path(plan.out_dir, sha, r).exists()]
    outcome.existing = len(todo) - len(missing)
    scratch = plan.out_dir / ".backfill-tmp"
    spent: list[float] = []
    try:
        for n, (r, sha) in enumerate(missing, start=1):
            if sha in outcome.failed:
                continue  # a commit that cannot run the suite fails the same way every round
            partial = scratch / f"{sha[:12]}-round{r}.jsonl"
            partial.unlink(missing_ok=True)
            # One worktree at a time (a fraction of a second to make): a long range does not
            # hold hundreds of checkouts at once.
            with worktree(plan.top, sha) as tree:
                side = Side("candidate", tree / plan.source_rel, f"commit {sha[:12]}")
                try:
                    seconds = run_block(side, plan.run_flags, partial, plan.threads,
                                        scratch / "cwd",
                                        fill={"suite": plan.suite} if plan.suite else None)
                except UserError as exc:
                    outcome.failed[sha] = str(exc)
                    say(f"  [{n}/{len(missing)}] round {r + 1}, {sha[:12]}: FAILED: {exc}")
                    continue
            _check_commit(partial, sha)
            partial.replace(record_path(plan.out_dir, sha, r))  # whole or not at all
            outcome.measured += 1
            spent.append(seconds)
            left = statistics.median(spent) * (len(missing) - n) / 60
            say(f"  [{n}/{len(missing)}] round {r + 1}/{plan.rounds}, {sha[:12]}: "
                f"{seconds:.0f} s (about {left:.0f} min left)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    outcome.seconds = time.perf_counter() - started
    return outcome
