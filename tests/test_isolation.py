"""Process isolation (the default): a fresh worker per config, so crashes, hangs and exits
become records, memory figures are each config's own, and the environment reaches workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.store.jsonl import read_records

REPO = Path(__file__).resolve().parent.parent

TINY = ["--devices", "cpu", "--precisions", "fp32", "--optimizers", "sgd", "--batch-sizes", "4",
        "--steps", "2", "--warmup", "1", "--repeats", "2", "--eval-samples", "32",
        "--train-samples", "64", "--quiet", "--no-report"]


def by_model(path):
    return {r["model"]: r for r in read_records(path)}


def test_a_crash_an_exit_and_a_hang_are_recorded_and_the_sweep_goes_on(workdir):
    out = workdir / "r.jsonl"
    models = "test_segfault,test_exit,test_hang,convnet"
    assert main(["run", "--models", models, *TINY, "--timeout", "4", "--out", str(out)]) == 0
    recs = by_model(out)
    assert list(recs) == models.split(",")  # every config recorded once, in order
    seg, ex, hang, ok = (recs[m] for m in models.split(","))
    assert seg["status"] == "crashed" and "signal 11 SIGSEGV" in seg["error"]
    # faulthandler's summary: the fatal error and the innermost Python frame
    assert "Fatal Python error: Segmentation fault" in seg["error"]
    assert "faults.py" in seg["error"]
    assert ex["status"] == "crashed" and "exited with status 3 without a record" in ex["error"]
    assert hang["status"] == "timeout" and "no record within 4 s" in hang["error"]
    assert 4 <= hang["wall_time_s"] < 60
    assert ok["status"] == "ok" and ok["throughput"] > 0
    # the worker reported who it was before it died: provenance travels with failed rows too
    for rec in (seg, ex, hang):
        assert rec["host"] and rec["torch_version"] and rec["isolation"] == "process"


def test_resume_reruns_crashed_and_timed_out_configs(workdir):
    out = workdir / "r.jsonl"
    argv = ["run", "--models", "test_exit,convnet", *TINY, "--out", str(out)]
    assert main(argv) == 0
    assert [r["status"] for r in read_records(out)] == ["crashed", "ok"]
    assert main([*argv, "--resume"]) == 0
    # the ok config is kept, the crashed one is tried again (and crashes again)
    assert [(r["model"], r["status"]) for r in read_records(out)] == [
        ("test_exit", "crashed"), ("convnet", "ok"), ("test_exit", "crashed")]


SMALL = ["--models", "convnet", "--batch-sizes", "2"]
LARGE = ["--models", "resnet18", "--batch-sizes", "64", "--optimizers", "adam"]


@pytest.mark.parametrize("first", ["small", "large"])
def test_each_config_records_its_own_memory_whichever_runs_first(workdir, first):
    """ResNet-18 at batch 64 with Adam (11M parameters: weights, gradients and two Adam moments
    alone are ~180 MB) against the ConvNet at batch 2: the larger must record more host memory
    in either order. In one shared process, the second config's peak would be the first's."""
    base = ["--devices", "cpu", "--precisions", "fp32", "--steps", "1", "--warmup", "1",
            "--repeats", "1", "--eval-samples", "16", "--train-samples", "64", "--quiet",
            "--no-report"]
    order = [SMALL, LARGE] if first == "small" else [LARGE, SMALL]
    out = workdir / "r.jsonl"
    for spec in order:
        assert main(["run", *spec, *base, "--out", str(out), "--resume"]) == 0
    recs = by_model(out)
    small, large = recs["convnet"], recs["resnet18"]
    assert large["train_rss_bytes"] > small["train_rss_bytes"] + 150 * 2**20
    assert large["peak_rss_bytes"] > small["peak_rss_bytes"] + 150 * 2**20
    for rec in (small, large):
        assert 0 < rec["rss_before_model_bytes"] < rec["peak_rss_bytes"]


def test_the_worker_sees_the_current_environment_and_records_the_slowdown_knob(workdir,
                                                                             monkeypatch):
    out = workdir / "r.jsonl"
    assert main(["run", "--models", "convnet", *TINY, "--out", str(out)]) == 0
    monkeypatch.setenv("TRAINMARK_INJECT_SLOWDOWN", "0.25")  # after the fork server started
    assert main(["run", "--models", "convnet", *TINY, "--out", str(out), "--resume",
                 "--seed", "1"]) == 0
    clean, slowed = read_records(out)
    assert clean["injected_slowdown"] is None and slowed["injected_slowdown"] == 0.25


def test_isolation_none_runs_in_this_process(workdir, monkeypatch):
    out = workdir / "r.jsonl"
    assert main(["run", "--models", "convnet", *TINY, "--isolation", "none",
                 "--out", str(out)]) == 0
    (rec,) = read_records(out)
    assert rec["status"] == "ok" and rec["isolation"] == "none"


@pytest.mark.parametrize("argv, needle", [
    (["--timeout", "0"], "--timeout must be a positive number of seconds, got 0"),
    (["--isolation", "thread"], "invalid choice: 'thread' (choose from 'process', 'none')"),
])
def test_bad_isolation_options_are_usage_errors(workdir, capsys, argv, needle):
    assert main(["run", "--models", "convnet", *TINY, *argv]) == 2
    assert needle in capsys.readouterr().err
    assert list(workdir.iterdir()) == []


def _children(pid: int) -> set[int]:
    """Live child pids of ``pid``, from /proc (field 4 of /proc/PID/stat is the parent)."""
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.add(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree in /proc")
@pytest.mark.long  # ~20 s: waits for a worker to be mid-config before the SIGTERM
def test_sigterm_stops_the_sweep_and_takes_its_worker_down(workdir):
    # CI cancels a job with SIGTERM. The run must stop like on Ctrl-C (exit 130, saying how to
    # resume) and must not leave the config's worker training on the runner.
    out = workdir / "r.jsonl"
    proc, seen = _hanging_worker(out)
    try:
        workers = set(seen)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "continue with: trainmark run --resume" in err
    deadline = time.monotonic() + 30
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers)


def _hanging_worker(out: Path) -> tuple[subprocess.Popen, dict[int, float]]:
    """A run of the hanging model, and its workers' pids (when each was first seen): workers
    are grandchildren (the fork server forks them); the first measures the device peak, the
    next runs the hanging config. Returns once that one runs (or one has lived for 10 s,
    should peaks ever move elsewhere)."""
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--models", "test_hang",
                             *TINY, "--timeout", "600", "--out", str(out)],
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    seen: dict[int, float] = {}
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        for w in (w for c in _children(proc.pid) for w in _children(c)):
            seen.setdefault(w, time.monotonic())
        if len(seen) >= 2 or any(time.monotonic() - t > 10 for t in seen.values()):
            break
        time.sleep(0.1)
    assert seen, "no worker process started"
    time.sleep(0.5)
    return proc, seen


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree in /proc")
@pytest.mark.parametrize("run_cancelled", [True, False])
def test_a_worker_dying_of_the_jobs_cancellation_is_not_a_crash(workdir, run_cancelled):
    """scancel or a CI runner signals every process of a job: the worker may die of SIGTERM an
    instant before its run is told (here 0.3 s). That config was cancelled, not crashed: no
    record (a fleet settles it as lost, --resume runs it). A worker killed by SIGTERM alone is
    still a crashed record."""
    out = workdir / "r.jsonl"
    proc, seen = _hanging_worker(out)
    try:
        os.kill(max(seen, key=seen.get), signal.SIGTERM)  # the newest: the hanging config's
        if run_cancelled:
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    hung = [r for r in (read_records(out) if out.exists() else []) if r["model"] == "test_hang"]
    if run_cancelled:
        assert proc.returncode == 130 and hung == [], err
    else:
        assert [(r["status"], "signal 15" in r["error"]) for r in hung] == [("crashed", True)]


def test_a_sigkilled_worker_says_what_most_likely_killed_it(workdir):
    # Stands in for the kernel's OOM killer, which cannot be provoked safely here: the worker
    # holds BALLAST_MIB MiB, then takes SIGKILL. The record must carry the peak RSS the parent
    # read while it lived, the machine's memory, and whether the OOM-kill counter moved.
    from harness.probes.oom import oom_kill_count
    from models.faults import BALLAST_MIB

    out = workdir / "r.jsonl"
    assert main(["run", "--models", "test_sigkill", *TINY, "--out", str(out)]) == 0
    (rec,) = read_records(out)
    assert rec["status"] == "crashed" and "signal 9 SIGKILL" in rec["error"]
    assert rec["peak_rss_bytes"] >= BALLAST_MIB * 2**20
    assert "its peak RSS was" in rec["error"] and "GiB it may use" in rec["error"]
    if oom_kill_count() is not None:  # Linux: the counter says it was not the OOM killer
        assert "not the out-of-memory killer" in rec["error"], rec["error"]
