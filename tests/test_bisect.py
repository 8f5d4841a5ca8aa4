"""``trainmark bisect GOOD BAD``: a small git history (a snapshot of this tree, then commits)
with a slowdown injected at a known commit; bisect must name that commit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.ab_evidence import GIT_ID
from benchmarks.bisect_evidence import build_history
from harness.execution.bisect import BAD, GOOD, SKIP, Outcome, Step, step_exit

TINY = ["--models", "convnet", "--batch-sizes", "4", "--precisions", "fp32", "--optimizers",
        "sgd", "--steps", "3", "--warmup", "1", "--repeats", "3", "--eval-samples", "32",
        "--train-samples", "64"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *GIT_ID, *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """GOOD, then three commits; the first makes every timed step sleep as long again as it ran
    (throughput halves: the test-only knob's default changed in the code, as a real slow
    change would be). Its parent is GOOD, so confirming it takes one more A/B, not two."""
    repo = tmp_path_factory.mktemp("bisect") / "repo"
    return repo, build_history(repo, commits=3, bad_at=1, slowdown=1.0)


def bisect_cmd(repo: Path, *argv: str) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ, PYTHONPATH=str(repo))
    env.pop("TRAINMARK_INJECT_SLOWDOWN", None)
    return [sys.executable, "-m", "harness", "bisect", *argv], env


@pytest.mark.long
# About 3 minutes on a quiet 2-core machine (two A/Bs of 8 rounds, then a confirmation); on a
# loaded one it has passed 300 s, the suite's default per-test limit, which guards hangs.
@pytest.mark.timeout(900)
def test_bisect_names_the_commit_that_made_training_slower(history, tmp_path):
    repo, shas = history
    out = tmp_path / "steps"
    # Extra rounds for an inconclusive step (60 s at most): on a loaded machine one round of
    # eight once measured GOOD slow (628 vs 1,400 samples/s), and a 50% slowdown with one round
    # reversed is not significant at 0.01 (p = 0.016) without them.
    cmd, env = bisect_cmd(repo, shas[0], shas[-1], "--rounds", "8", "--extra-time", "60",
                          "--out-dir", str(out), *TINY)
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"first bad commit: {shas[1]} change 1" in proc.stdout
    assert "throughput -" in proc.stdout  # the measured change, with its p
    # confirmed by a fresh A/B: commit 1 bad again (its parent is GOOD: nothing more to ask)
    assert f"confirmed: measured again against {shas[0]}: {shas[1][:10]} bad\n" in proc.stdout
    assert (out / "confirm-1" / shas[1][:12] / "verdict.json").exists()
    # BAD first, then git's binary search over commits 1 and 2: 2 or 3 steps in all
    steps = sorted(d.name for d in out.iterdir() if (d / "verdict.json").exists())
    assert shas[-1][:12] in steps and shas[1][:12] in steps and 2 <= len(steps) <= 3
    verdict = json.loads((out / shas[1][:12] / "verdict.json").read_text())
    assert step_exit(verdict) == BAD
    assert verdict["candidate"]["git_commit"] == [shas[1]]
    # the user's checkout is untouched: no bisect in progress, no extra worktree left
    assert git(repo, "rev-parse", "HEAD") == shas[-1]
    assert len(git(repo, "worktree", "list").splitlines()) == 1
    assert not (repo / ".git" / "BISECT_LOG").exists()


@pytest.mark.long  # ~25 s: one whole A/B of 3 rounds
def test_bad_within_the_threshold_has_nothing_to_bisect(history, tmp_path):
    """Commit 1 halves throughput, but at a 99% threshold that is no regression: nothing to
    bisect. (A slowed commit cannot be GOOD: records of the test-only knob are refused as a
    baseline.) 3 rounds: at that threshold no number of rounds could make it one."""
    repo, shas = history
    cmd, env = bisect_cmd(repo, shas[0], shas[1], "--rounds", "3", "--extra-time", "0",
                          "--threshold", "99%", "--out-dir", str(tmp_path / "o"), *TINY)
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "is not a regression against" in proc.stdout


def test_steps_look_for_what_bad_regressed_in():
    cfg = {"model": "convnet"}

    def row(verdict, failed=(), **parts):
        return {"config": cfg, "verdict": verdict, "failed": list(failed),
                **{k: {"verdict": v} for k, v in parts.items()}}

    targets = [{"config": cfg, "metrics": ["throughput"]}]
    slower = row("regression", ["throughput"], throughput="regression", memory="no change")
    noisy_memory = row("inconclusive", throughput="no change", memory="inconclusive")
    unsure_speed = row("inconclusive", throughput="inconclusive", memory="no change")
    assert step_exit({"rows": [slower]}, targets) == BAD
    # host memory noise is not what BAD regressed in: the step is good, not skipped
    assert step_exit({"rows": [noisy_memory]}, targets) == GOOD
    assert step_exit({"rows": [unsure_speed]}, targets) == SKIP
    assert step_exit({"rows": []}, targets) == SKIP  # the config did not run there


def test_an_answer_stands_only_if_fresh_measurements_agree():
    def outcome(*exits):  # confirmation steps: the first bad commit "f", its parent "p"
        steps = [Step(sha, code, None) for sha, code in zip("fp", exits, strict=False)]
        return Outcome("f", [], 1.0, "", steps)

    assert outcome(BAD, GOOD).confirmed is True
    assert outcome(BAD).confirmed is True  # the parent was GOOD itself: nothing more to ask
    assert outcome(GOOD).confirmed is False  # not slower when measured again
    assert outcome(BAD, BAD).confirmed is False  # the parent is slow too: found too late
    assert outcome(SKIP).confirmed is False  # inconclusive is not a confirmation
    assert Outcome("f", [], 1.0, "").confirmed is None  # not asked
    assert Outcome(None, [], 1.0, "", [Step("b", GOOD, None)]).confirmed is None


def test_step_exit_follows_the_verdicts():
    def verdict(*vs):
        return {"rows": [{"verdict": v} for v in vs]}

    assert step_exit(verdict("no change", "improvement")) == GOOD
    assert step_exit(verdict("no change", "regression", "inconclusive")) == BAD
    assert step_exit(verdict("no change", "inconclusive")) == SKIP
    assert (GOOD, BAD, SKIP) == (0, 1, 125)  # git bisect run's meaning of exit statuses


@pytest.mark.parametrize("argv, needle", [
    (["HEAD", "no-such-ref-xyz"], "'no-such-ref-xyz'"),
    (["HEAD", "HEAD"], "must be an ancestor"),
    (["HEAD", "HEAD", "--rounds", "0"], "--rounds"),
    (["HEAD", "HEAD", "--extra-time", "-1"], "--extra-time"),
])
def test_usage_errors_exit_2(history, argv, needle):
    repo, shas = history
    cmd, env = bisect_cmd(repo, *argv, *TINY)
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
