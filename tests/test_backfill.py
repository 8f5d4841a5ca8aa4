"""``trainmark backfill FIRST LAST``: every commit of a range measured from its own tree, in
rounds of shuffled order, resumable, with a failing commit reported and the rest kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.ab_evidence import GIT_ID
from benchmarks.bisect_evidence import build_history
from harness.errors import UserError
from harness.execution.backfill import commits_between, record_path, round_order

TINY = ["--models", "convnet", "--batch-sizes", "4", "--precisions", "fp32", "--optimizers",
        "sgd,adam", "--steps", "3", "--warmup", "1", "--repeats", "3", "--eval-samples", "32",
        "--train-samples", "64"]
SHAS = [f"{i:02d}" + "a" * 38 for i in range(20)]


def test_each_round_is_its_own_permutation_of_the_commits():
    orders = [round_order(SHAS, r) for r in range(3)]
    for order in orders:
        assert sorted(order) == SHAS  # every commit once per round
    assert orders[0] != orders[1] != orders[2] != orders[0]
    assert round_order(SHAS, 1) == orders[1]  # a rerun (resuming) keeps the order


def test_a_shuffled_round_measures_few_neighbouring_commits_back_to_back():
    """What the shuffle is for: a level shift of the machine lasting a few runs must not hit a
    stretch of consecutive commits (it would read as a step). In commit order all 19 pairs of
    neighbours are measured back to back; a random order has 2 such pairs on average
    (19 pairs x 2 / 20 positions: each commit's successor lands next to it with p = 2/20)."""
    for r in range(3):
        position = {sha: i for i, sha in enumerate(round_order(SHAS, r))}
        pairs = zip(SHAS[:-1], SHAS[1:], strict=True)
        back_to_back = sum(abs(position[a] - position[b]) == 1 for a, b in pairs)
        assert back_to_back <= 5


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *GIT_ID, *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """GOOD, commit 1 (the knob's default: Adam configs' steps take twice as long), commit 2
    (cannot run the suite: `trainmark run` exits at once)."""
    repo = tmp_path_factory.mktemp("backfill") / "repo"
    shas = build_history(repo, commits=1, bad_at=1, slowdown=1.0, only="@optimizer=adam")
    run_py = repo / "harness" / "cli" / "run.py"
    run_py.write_text(run_py.read_text() + "\nraise SystemExit('broken on purpose')\n")
    git(repo, "commit", "-q", "-am", "break run")
    return repo, [*shas, git(repo, "rev-parse", "HEAD")]


def test_commits_between_is_the_first_parent_line_oldest_first(history):
    repo, shas = history
    assert commits_between(repo, shas[0], shas[2]) == shas
    assert commits_between(repo, shas[1], shas[1]) == [shas[1]]
    with pytest.raises(UserError, match="not an ancestor"):
        commits_between(repo, shas[2], shas[0])


def backfill(repo: Path, out: Path, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(repo))
    env.pop("TRAINMARK_INJECT_SLOWDOWN", None)
    return subprocess.run([sys.executable, "-m", "harness", "backfill", *argv, "--out-dir",
                           str(out), *TINY], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=600)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.long  # ~40 s: three commits' worktrees, each measured in its own run, twice
@pytest.mark.timeout(900)
def test_backfill_measures_each_commit_from_its_own_tree_and_resumes(history, tmp_path):
    repo, (good, slow, broken) = history
    out = tmp_path / "records"
    proc = backfill(repo, out, good, broken, "--rounds", "2")
    assert proc.returncode == 1, proc.stderr[-2000:]  # one commit failed, the rest measured
    assert f"FAILED {broken[:12]}: " in proc.stdout and "broken on purpose" in proc.stdout
    assert "4 runs measured" in proc.stdout
    assert proc.stderr.count(f"{broken[:12]}: FAILED") == 1  # not tried again in round 2
    files = sorted(out.glob("*.jsonl"))
    assert files == sorted(record_path(out, sha, r) for sha in (good, slow) for r in (0, 1))
    for f in files:  # the records report the commit their file is named after
        assert {r["git_commit"][:12] for r in records(f)} == {f.name[:12]}
    # Commit 1's code doubles each Adam step (knob 1.0: a spin as long as the step), so its
    # throughput is about half GOOD's; SGD's is untouched and unflagged.
    tp = {(f.name[:12], f.stem[-1], r["optimizer"]): r for f in files for r in records(f)}
    for rnd in "01":
        fast, slowed = tp[(good[:12], rnd, "adam")], tp[(slow[:12], rnd, "adam")]
        assert slowed["injected_slowdown"] == 1.0
        assert tp[(slow[:12], rnd, "sgd")]["injected_slowdown"] is None
        ratio = slowed["throughput"] / fast["throughput"]
        assert ratio < 0.75, ratio  # 0.5 expected; GOOD would have to be 1.5x slow to miss
    assert git(repo, "status", "--porcelain") == ""  # the checkout itself is never touched
    assert len(git(repo, "worktree", "list").splitlines()) == 1  # worktrees removed
    assert not (out / ".backfill-tmp").exists()

    stamps = {f: f.stat().st_mtime_ns for f in files}
    again = backfill(repo, out, good, broken, "--rounds", "2")
    assert "0 runs measured" in again.stdout and "(4 already in" in again.stdout
    assert {f: f.stat().st_mtime_ns for f in files} == stamps  # nothing measured twice
