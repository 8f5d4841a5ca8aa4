"""``trainmark ab``: interleaving, flag forwarding, and end-to-end runs on a temporary git repo
(a one-commit snapshot of this tree), including cleanup after failure and Ctrl-C."""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.ab_evidence import GIT_ID, snapshot_repo
from harness.cli import ab as ab_cli
from harness.cli import build_parser, main
from harness.execution import ab, ab_run
from harness.execution.interrupts import sigterm_as_interrupt

TINY = ["--models", "convnet", "--batch-sizes", "4", "--precisions", "fp32", "--optimizers",
        "sgd", "--steps", "2", "--warmup", "1", "--repeats", "3", "--eval-samples", "32",
        "--train-samples", "64"]


def test_run_blocks_alternate_and_are_bracketed():
    assert ab.interleave(1) == ["baseline", "candidate", "baseline"]
    assert ab.interleave(3) == ["baseline", "candidate"] * 3 + ["baseline"]


@pytest.mark.parametrize("argv, threshold", [
    (["ab", "HEAD"], 0.03), (["bisect", "GOOD", "BAD"], 0.03),  # both trees in one job
    (["compare", "a.jsonl", "b.jsonl"], 0.05), (["baseline", "check"], 0.05),  # vs. the past
])
def test_same_job_commands_default_to_a_smaller_threshold(argv, threshold):
    from harness.cli.verdict_options import parse_percent

    args = build_parser().parse_args(argv)
    assert parse_percent(args.threshold, "--threshold") == threshold


def test_sweep_is_validated_and_forwarded_as_protocol_request_and_run_flags():
    args = build_parser().parse_args(["ab", "HEAD", *TINY, "--threshold", "3%", "--rounds", "2",
                                      "--dataset", "synthetic"])
    sweep, configs = ab_cli.prepared_sweep(args)
    assert len(configs) == 1
    suite = Path(__file__).resolve().parent.parent / "harness" / "suites" / "ci.toml"
    # the worker protocol: an absolute suite and data dir, the flags given as sweep settings
    req = sweep.request
    assert (req["protocol"], req["suite"]) == (1, str(suite))
    assert Path(req["data_dir"]).is_absolute() and req["download"] is False
    assert req["overrides"]["models"] == ["convnet"] and req["overrides"]["steps"] == 2
    assert req["overrides"]["datasets"] == ["synthetic"]
    # settings not given are left out: an older protocol-1 tree would refuse a key it lacks
    assert "lr" not in req["overrides"] and None not in req["overrides"].values()
    # `trainmark run` arguments for old trees and whole-run interleaving
    flags = sweep.run_flags
    assert flags[:2] == ["--suite", str(suite)]
    assert "--data-dir" in flags and Path(flags[flags.index("--data-dir") + 1]).is_absolute()
    for pair in (["--models", "convnet"], ["--steps", "2"], ["--repeats", "3"]):
        i = flags.index(pair[0])
        assert flags[i:i + 2] == pair
    # options of ab itself and of compare are not passed on
    assert "--threshold" not in flags and "--rounds" not in flags
    assert "threshold" not in req["overrides"] and "rounds" not in req["overrides"]


def test_parse_env():
    assert ab_cli.parse_env(["A=1", "B=x=y"]) == {"A": "1", "B": "x=y"}
    with pytest.raises(Exception, match="NAME=VALUE"):
        ab_cli.parse_env(["nope"])


@pytest.mark.parametrize("argv, needle", [
    (["ab", "HEAD", "--models", "vgg"], "unknown model 'vgg'"),
    (["ab", "HEAD", "--suite", "nosuch"], "suite 'nosuch' not found"),
    (["ab", "HEAD", "--rounds", "0"], "--rounds must be > 0"),
    (["ab", "HEAD", "--candidate-env", "X"], "--candidate-env takes NAME=VALUE"),
    (["ab", "no-such-ref-xyz", *TINY], "unknown git ref 'no-such-ref-xyz'"),
    (["ab", "HEAD", "--out", "x.jsonl"], "unrecognized arguments: --out"),
])
def test_usage_errors_exit_2_before_anything_runs(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


# ------------------------------------------------------------------ end to end, temporary repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return snapshot_repo(tmp_path_factory.mktemp("ab") / "repo",
                         paths=("harness", "models", "benchmarks"))


def git(repo, *args):
    return subprocess.run(["git", *GIT_ID, *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout


def worktrees(repo):
    return [ln for ln in git(repo, "worktree", "list", "--porcelain").splitlines()
            if ln.startswith("worktree ")]


def ab_cmd(repo, *argv):
    env = dict(os.environ, PYTHONPATH=str(repo))
    env.pop("TRAINMARK_INJECT_SLOWDOWN", None)
    return [sys.executable, "-m", "harness", "ab", *argv], env


def worker_processes(scratch: Path) -> list[str]:
    """Live processes working in ``scratch`` (each A/B worker runs in a folder there)."""
    found = []
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            if Path(os.readlink(cwd)).is_relative_to(scratch):
                found.append(cwd.parent.name)
        except OSError:
            pass
    return found


# An unchanged tree can still differ by noise; these end-to-end tests check the mechanics, so
# the thresholds are set where noise cannot reach, and the few samples of a short run may stay
# inconclusive (the statistics and exit statuses are tested in test_stats.py, test_compare.py).
LENIENT = ["--threshold", "99%", "--memory-threshold", "99%", "--allow-inconclusive",
           "--extra-time", "0"]


@pytest.mark.slow
def test_ab_interleaves_configs_pairwise_and_cleans_up(repo, tmp_path):
    out = tmp_path / "out"
    cmd, env = ab_cmd(repo, "HEAD", "--rounds", "2", "--out-dir", str(out), "--format", "md",
                      *TINY, "--optimizers", "sgd,adam", *LENIENT)
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "2 rounds of 2 configs" in proc.stderr and "round 2/2" in proc.stderr
    assert proc.stdout.startswith("### trainmark ab HEAD: **OK**")
    assert sorted(p.name for p in out.iterdir()) == [
        "baseline.jsonl", "candidate.jsonl", "comment.md", "verdict.json", "verdict.md"]
    head = git(repo, "rev-parse", "HEAD").strip()
    records = {side: [json.loads(ln) for ln in (out / f"{side}.jsonl").read_text().splitlines()]
               for side in ("baseline", "candidate")}
    for side, recs in records.items():
        # 2 configs x 2 rounds, in round order, each config once per round
        assert [(r["ab_round"], r["optimizer"]) for r in recs] == [
            (0, "sgd"), (0, "adam"), (1, "sgd"), (1, "adam")]
        assert all(r["ab_side"] == side and r["git_commit"].startswith(head) for r in recs)
        assert all(r["num_threads"] == 1 and r["status"] == "ok" for r in recs)
        assert {r["suite"] for r in recs} == {"ci"}  # ab's default suite, named by the parent
    verdict = json.loads((out / "verdict.json").read_text())
    assert [r["throughput"]["strata"] for r in verdict["rows"]] == [2, 2]
    assert verdict["rows"][0]["throughput"]["n_baseline"] == 6
    assert len(worktrees(repo)) == 1  # the temporary worktree is gone
    assert not (repo / "reports").exists() and not (repo / "results").exists()


def test_pair_order_alternates_over_configs_and_rounds():
    assert ab.pair_order(0, 0) == ("baseline", "candidate")
    assert ab.pair_order(0, 1) == ("candidate", "baseline")
    assert ab.pair_order(1, 0) == ("candidate", "baseline")
    assert ab.pair_order(1, 1) == ("baseline", "candidate")


def test_match_configs_ignores_fields_one_tree_lacks():
    base = [{"model": "convnet", "batch_size": 8, "repeats": 3},
            {"model": "resnet20", "batch_size": 8, "repeats": 3}]
    cand = [{"model": "resnet20", "batch_size": 8, "repeats": 5, "compile": False},
            {"model": "transformer", "batch_size": 2, "repeats": 5, "compile": False}]
    pairs, rest = ab.match_configs(base, cand)
    assert pairs == [(1, 0)]
    assert rest == ["only in the baseline: convnet None None bs=8 None None",
                    "only in the candidate: transformer None None bs=2 None None"]


@pytest.mark.long  # ~30 s: whole `trainmark run` processes alternate, A B A B ... A
def test_ab_by_whole_runs(repo, tmp_path):
    out = tmp_path / "out"
    cmd, env = ab_cmd(repo, "HEAD", "--interleave", "runs", "--rounds", "1", "--out-dir",
                      str(out), *TINY, *LENIENT)
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "3 whole runs, A B A" in proc.stderr and "[3/3]" in proc.stderr
    assert sorted(p.name for p in out.glob("*.jsonl")) == [
        "baseline-0.jsonl", "baseline-1.jsonl", "candidate-0.jsonl"]
    verdict = json.loads((out / "verdict.json").read_text())
    tp = verdict["rows"][0]["throughput"]
    assert (tp["n_baseline"], tp["n_candidate"], tp["strata"]) == (6, 3, 1)  # pooled
    assert len(worktrees(repo)) == 1


@pytest.mark.slow
@pytest.mark.parametrize("interleave", ["configs", "runs"])
def test_ab_removes_the_worktree_when_the_ref_fails(repo, tmp_path, interleave):
    # a second commit whose parent cannot run: the baseline side fails at once
    broken = tmp_path / "broken"
    subprocess.run(["git", "clone", "-q", str(repo), str(broken)], check=True)
    runner = broken / "harness" / "core" / "runner.py"
    good = runner.read_text()
    runner.write_text(good + "\nraise ImportError('harness is broken in this commit')\n")
    git(broken, "commit", "-qam", "broken")
    runner.write_text(good)
    git(broken, "commit", "-qam", "fixed")
    cmd, env = ab_cmd(broken, "HEAD~1", "--interleave", interleave, "--rounds", "1",
                      "--out-dir", str(tmp_path / "o"), *TINY)
    env["PYTHONPATH"] = str(broken)
    proc = subprocess.run(cmd, cwd=broken, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "A = HEAD~1" in proc.stderr and "harness is broken in this commit" in proc.stderr
    assert proc.stderr.count("trainmark: error:") == 1
    assert len(worktrees(broken)) == 1


def test_sigterm_becomes_an_interrupt_so_cleanup_runs():
    with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored


@pytest.mark.slow
def test_ab_removes_the_worktree_and_workers_on_ctrl_c(repo, tmp_path):
    sig = signal.SIGINT
    cmd, env = ab_cmd(repo, "HEAD", "--rounds", "50", "--out-dir", str(tmp_path / "o"), *TINY)
    # A Ctrl-C from a terminal: SIGINT handled by default in the child, even when this test
    # process was started with SIGINT ignored (a background job of a non-interactive shell, as
    # some CI runners start it): the child would inherit the ignore and never see the signal.
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while len(worktrees(repo)) < 2 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        assert len(worktrees(repo)) == 2, "the worktree never appeared"
        wt = Path(worktrees(repo)[1].split(" ", 1)[1])
        while len(worker_processes(wt.parent)) < 2 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        assert len(worker_processes(wt.parent)) == 2, "the two workers never started"
        time.sleep(1.0)  # let the workers start measuring
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted; the worktree was removed" in err
    assert len(worktrees(repo)) == 1 and not wt.exists() and not wt.parent.exists()
    assert worker_processes(wt.parent) == []


def test_ab_help_lists_run_flags_and_the_test_only_knob():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    text = sub.choices["ab"].format_help()
    for flag in ("--rounds", "--threads", "--candidate-env", "TEST ONLY", "--models",
                 "--steps", "--threshold", "--allow-different-machines"):
        assert flag in text


def test_baseline_records_must_come_from_the_clean_ref():
    ab.check_baseline_commits(["abc", "abc", None], "abc")
    for wrong in ("abc-dirty", "def"):
        with pytest.raises(Exception, match="shadowing"):
            ab.check_baseline_commits(["abc", wrong], "abc")


# The last commit of the flat layout, before the worker protocol existed. `trainmark ab REF`
# against any such commit must keep working (through execution/ab_legacy.py).
FLAT_LAYOUT_COMMIT = "3f6f27682b27d1b203119a937413c789c52e7611"


@pytest.fixture(scope="module")
def flat_then_layered(tmp_path_factory):
    """A two-commit repo: the flat-layout tree from this project's history, then this tree."""
    here = Path(__file__).resolve().parent.parent
    sha = subprocess.run(["git", "rev-parse", "--verify", "--quiet",
                          f"{FLAT_LAYOUT_COMMIT}^{{commit}}"], cwd=here,
                         capture_output=True, text=True).stdout.strip()
    if not sha:
        pytest.skip(f"this checkout's history lacks {FLAT_LAYOUT_COMMIT[:7]} (a shallow clone)")
    repo = tmp_path_factory.mktemp("flat") / "repo"
    repo.mkdir()
    archive = subprocess.run(["git", "archive", sha, "harness", "models", "benchmarks"],
                             cwd=here, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x"], input=archive, cwd=repo, check=True)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "flat layout")
    for name in ("harness", "models", "benchmarks"):
        shutil.rmtree(repo / name)
        shutil.copytree(here / name, repo / name,
                        ignore=shutil.ignore_patterns("__pycache__", ".benchmarks"))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "layered")
    return repo


@pytest.mark.slow
# Whole-run interleaving (~50 s) runs with the long tests; the legacy adapter is the same.
@pytest.mark.parametrize("interleave", ["configs", pytest.param("runs", marks=pytest.mark.long)])
def test_ab_against_a_commit_from_before_the_restructuring(flat_then_layered, tmp_path,
                                                           interleave):
    repo = flat_then_layered
    out = tmp_path / "out"
    cmd, env = ab_cmd(repo, "HEAD~1", "--interleave", interleave, "--rounds", "1",
                      "--out-dir", str(out), *TINY, *LENIENT)
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    old = git(repo, "rev-parse", "HEAD~1").strip()
    new = git(repo, "rev-parse", "HEAD").strip()
    sides = {side: [json.loads(ln) for p in sorted(out.glob(f"{side}*.jsonl"))
                    for ln in p.read_text().splitlines()] for side in ("baseline", "candidate")}
    # each side measured with its own tree's code: the old layout's runner, and this one's
    assert sides["baseline"] and {r["git_commit"] for r in sides["baseline"]} == {old}
    assert sides["candidate"] and {r["git_commit"] for r in sides["candidate"]} == {new}
    assert all(r["status"] == "ok" for recs in sides.values() for r in recs)
    # the old tree records no suite: this side names it (ab's default), on both sides' records
    assert {r["suite"] for recs in sides.values() for r in recs} == {"ci"}
    assert json.loads((out / "verdict.json").read_text())["summary"]["configs"] == 1
    assert len(worktrees(repo)) == 1


def test_every_round_starts_fresh_workers_so_rounds_are_independent(tmp_path, monkeypatch):
    started, runs = [], []

    class FakeWorker:
        def __init__(self, side, sweep, run_id, threads, workdir):
            self.name = side.name
            started.append(side.name)

        def hello(self):
            return [{"model": "convnet", "batch_size": 4}, {"model": "resnet20", "batch_size": 4}]

        def run(self, index, out, annotate):
            runs.append((annotate["ab_round"], self.name, index, len(started)))
            return 0.1

        def close(self):
            pass

    monkeypatch.setattr(ab, "Worker", FakeWorker)
    sides = {n: ab.Side(n, tmp_path, n) for n in ("baseline", "candidate")}
    ab.by_configs(sides, ab.Sweep({}, []), rounds=range(3), threads=1, out_dir=tmp_path,
                  scratch=tmp_path, run_id="r")
    assert started == ["baseline", "candidate"] * 3  # two new processes per round
    # round r's measurements all come from the workers started for round r
    assert {(r, n) for r, _, _, n in runs} == {(0, 2), (1, 4), (2, 6)}
    assert [(r, side, i) for r, side, i, _ in runs[:4]] == [
        (0, "baseline", 0), (0, "candidate", 0), (0, "candidate", 1), (0, "baseline", 1)]


def _fake_workers(monkeypatch, runs: list) -> None:
    class FakeWorker:
        def __init__(self, side, sweep, run_id, threads, workdir):
            self.name = side.name

        def hello(self):
            return [{"model": "convnet", "batch_size": 4}, {"model": "resnet20", "batch_size": 4}]

        def run(self, index, out, annotate):
            runs.append((annotate["ab_round"], self.name, index))
            return 0.0

        def close(self):
            pass

    monkeypatch.setattr(ab, "Worker", FakeWorker)


def _verdict(**by_model: str) -> dict:
    return {"rows": [{"config": {"model": m, "batch_size": 4}, "verdict": v}
                     for m, v in by_model.items()]}


def _abrun(tmp_path, judge, budget=600.0, confirm=0) -> ab_run.ABRun:
    return ab_run.ABRun(top=tmp_path, source=tmp_path, ref="HEAD", ref_sha="x",
                        sweep=ab.Sweep({}, []), rounds=8, interleave="configs", threads=1,
                        out_dir=tmp_path, run_id="r", judge=judge, extra_budget_s=budget,
                        confirm=confirm)


def test_inconclusive_configs_get_more_rounds_until_conclusive(tmp_path, monkeypatch):
    runs: list = []
    _fake_workers(monkeypatch, runs)
    answers = [_verdict(convnet="no change", resnet20="inconclusive")] * 2 + [
        _verdict(convnet="no change", resnet20="regression")]  # conclusive after 2 more
    calls = []

    def judge(folder):
        calls.append(len(runs))
        return answers[len(calls) - 1]

    sides = {n: ab.Side(n, tmp_path, n) for n in ("baseline", "candidate")}
    assert ab_run.more_rounds(_abrun(tmp_path, judge), sides, tmp_path) == 2
    # rounds 8 and 9, resnet20 (index 1) only, both sides; then the verdict was conclusive
    assert sorted(runs) == [(8, "baseline", 1), (8, "candidate", 1),
                            (9, "baseline", 1), (9, "candidate", 1)]
    assert calls == [0, 2, 4]


def test_no_extra_rounds_without_budget_or_when_all_is_conclusive(tmp_path, monkeypatch):
    runs: list = []
    _fake_workers(monkeypatch, runs)
    sides = {n: ab.Side(n, tmp_path, n) for n in ("baseline", "candidate")}
    unsure, sure = _verdict(convnet="inconclusive"), _verdict(convnet="no change")
    assert ab_run.more_rounds(_abrun(tmp_path, lambda f: unsure, budget=0), sides, tmp_path) == 0
    assert ab_run.more_rounds(_abrun(tmp_path, lambda f: sure), sides, tmp_path) == 0
    assert runs == []


def test_regressions_are_measured_again_and_only_reproduced_ones_stay(tmp_path, monkeypatch):
    runs: list = []
    _fake_workers(monkeypatch, runs)
    sides = {n: ab.Side(n, tmp_path, n) for n in ("baseline", "candidate")}
    # the main rounds flag both; batch 1 reproduces convnet only; batch 2 convnet again
    verdicts = {tmp_path: _verdict(convnet="regression", resnet20="regression"),
                tmp_path / "confirm-1": _verdict(convnet="regression", resnet20="no change"),
                tmp_path / "confirm-2": _verdict(convnet="regression")}
    found = ab_run.confirm_regressions(_abrun(tmp_path, verdicts.__getitem__, confirm=2),
                                       sides, tmp_path)
    assert found == [{"config": {"model": "convnet", "batch_size": 4},
                      "verdicts": ["regression", "regression"], "throughput": []},
                     {"config": {"model": "resnet20", "batch_size": 4},
                      "verdicts": ["no change"], "throughput": []}]
    # batch 1: both configs, 8 fresh rounds each side; batch 2: convnet (index 0) only
    assert len(runs) == 8 * 2 * 2 + 8 * 2
    assert {i for _, _, i in runs[32:]} == {0}
    assert json.loads((tmp_path / ab_run.CONFIRMATIONS).read_text()) == found


def test_matches_compares_the_fields_a_verdict_row_names():
    cfg = {"model": "convnet", "batch_size": 4, "precision": "fp32"}
    assert ab.matches(cfg, [{"model": "convnet", "batch_size": 4}])
    assert not ab.matches(cfg, [{"model": "convnet", "batch_size": 8}])
    assert ab.matches(cfg, [{"model": "resnet20"}, {"model": "convnet", "nproc": 1}])
