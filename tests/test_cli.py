import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.core.config import CONFIG_FIELDS
from harness.store.frame import load_results
from harness.store.jsonl import read_records

REPO = Path(__file__).resolve().parent.parent
TINY = ["--devices", "cpu", "--steps", "2", "--warmup", "1", "--repeats", "2",
        "--eval-samples", "32", "--train-samples", "64"]


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def test_run_writes_results_and_prints_a_summary(workdir, capsys):
    out = workdir / "r.jsonl"
    code = main(["run", "--models", "convnet,transformer", "--batch-sizes", "4",
                 "--precisions", "fp32,amp", "--optimizers", "sgd", *TINY, "--out", str(out),
                 "--allow-emulated"])  # amp runs (emulated) on a CPU without native bf16 too
    assert code == 0
    captured = capsys.readouterr()
    assert f"4 records (0 not ok) in {out}" in captured.out
    assert "convnet" in captured.out and "tokens" in captured.out
    df = load_results([out])
    assert sorted(set(df["precision"])) == ["amp-bf16", "fp32"]
    assert (df["status"] == "ok").all()
    assert df["throughput"].notna().all()
    assert df["run_id"].nunique() == 1
    # show prints the same records and exports them
    assert main(["show", str(out), "--csv", str(workdir / "t.csv")]) == 0
    assert "amp-bf16" in capsys.readouterr().out
    assert (workdir / "t.csv").read_text().count("\n") == 5


def test_default_output_goes_to_results_run_id(workdir, capsys):
    assert main(["run", "--models", "convnet", "--batch-sizes", "4", *TINY]) == 0
    (path,) = (workdir / "results").glob("*.jsonl")
    assert read_records(path)[0]["run_id"] == path.stem


def test_list_and_env(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("convnet", "resnet18", "resnet20", "transformer", "synthetic-text", "adagrad",
                 "amp-bf16", "quick", "cpu"):
        assert word in out
    assert "cuda" in out and "absent" in out  # with the reason a GPU is missing
    assert main(["env"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert env["torch_version"] and env["devices"][0]["device"] == "cpu"


@pytest.mark.parametrize("argv, needle", [
    (["run", "--models", "vgg16"], "unknown model 'vgg16'; valid: convnet"),
    (["run", "--optimizers", "rmsprop"], "unknown optimizer 'rmsprop'; valid: sgd, adam, adagrad"),
    (["run", "--precisions", "fp4"], "unknown precision 'fp4'; valid: fp32, amp"),
    (["run", "--dataset", "mnist"], "unknown dataset 'mnist'; valid: synthetic, cifar10"),
    (["run", "--devices", "tpu"], "unknown device 'tpu'"),
    (["run", "--devices", "cuda"], "device 'cuda' is not available"),
    (["run", "--batch-sizes", "0"], "batch size must be > 0, got 0"),
    (["run", "--batch-sizes", "8,x"], "--batch-sizes takes comma-separated integers"),
    (["run", "--steps", "0"], "steps must be > 0, got 0"),
    (["run", "--repeats", "-2"], "repeats must be > 0, got -2"),
    (["run", "--models", "convnet", "--dataset", "cifar10", "--data-dir", "nodata"],
     "CIFAR-10 not found"),
    (["run", "--suite", "nosuch"], "suite 'nosuch' not found"),
    (["run", "--suite", "bad.toml"], "malformed suite file"),
    (["run", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["show", "missing.jsonl"], "results file not found: missing.jsonl"),
    (["show", "garbage.jsonl"], "garbage.jsonl:1: malformed record"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(workdir, capsys, monkeypatch, argv,
                                                         needle):
    # `--devices cuda` needs "no GPU": forced, so the case never runs a sweep on a GPU machine
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    (workdir / "bad.toml").write_text("models = [")
    (workdir / "garbage.jsonl").write_text("{not json\n{}\n")
    before = {p: p.read_bytes() for p in files_under(workdir)}
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err, err
    assert err.count("\n") == 1 and err.startswith("trainmark: error: ")
    assert {p: p.read_bytes() for p in files_under(workdir)} == before


def test_existing_results_file_is_never_overwritten(workdir, capsys):
    out = workdir / "r.jsonl"
    out.write_text('{"model": "convnet", "status": "ok"}\n')
    assert main(["run", "--models", "convnet", *TINY, "--out", str(out)]) == 2
    assert "exists; pass --resume" in capsys.readouterr().err
    assert out.read_text() == '{"model": "convnet", "status": "ok"}\n'


@pytest.mark.long  # ~30 s: a sweep killed mid-config, then resumed
def test_sweep_killed_by_sigkill_then_resumed_records_each_config_once(workdir):
    out = workdir / "killed.jsonl"
    argv = [sys.executable, "-m", "harness", "run", "--models", "convnet",
            "--batch-sizes", "4,8,16", "--optimizers", "sgd,adam", "--precisions", "fp32",
            "--devices", "cpu",
            "--steps", "15", "--warmup", "1", "--repeats", "2", "--eval-samples", "32",
            "--train-samples", "64", "--out", str(out), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if out.exists() and out.read_text().count("\n") >= 2:
            break
        if proc.poll() is not None:
            pytest.fail(f"sweep ended before it could be killed: {proc.stderr.read()}")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    recorded_before = len(read_records(out))
    assert 2 <= recorded_before < 6

    done = subprocess.run(argv + ["--resume"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{recorded_before} configs already ok" in done.stderr
    records = read_records(out)
    keys = [tuple(r[f] for f in CONFIG_FIELDS) for r in records]
    assert len(keys) == 6 and len(set(keys)) == 6  # every config exactly once
    assert all(r["status"] == "ok" for r in records)
    assert len({r["run_id"] for r in records}) == 1  # the resumed run keeps its run_id
