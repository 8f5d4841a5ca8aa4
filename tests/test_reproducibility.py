"""Deterministic mode, time-to-accuracy, seeds, loss curves, rerun/verify, TensorBoard."""

import json
import math
import re

import pytest
import torch

from harness.analysis.seeds import mean_ci, seed_summary
from harness.cli import main
from harness.core.config import RunConfig
from harness.core.losscurve import compact_curve, curve_digest
from harness.core.runner import Runner
from harness.core.suites import expand, merge_settings
from harness.store.frame import load_results
from harness.store.jsonl import read_records

TINY = dict(batch_size=8, warmup_steps=2, timed_steps=3, repeats=2, eval_samples=64)


def cfg(model, dataset, **kw):
    extra = {"train_samples": 128} if dataset == "synthetic" else {}
    return RunConfig(model=model, dataset=dataset, **{**TINY, **extra, **kw})


@pytest.mark.parametrize("model, dataset", [("convnet", "synthetic"), ("resnet20", "synthetic"),
                                            ("transformer", "synthetic-text")])
def test_deterministic_runs_are_bitwise_identical(model, dataset):
    c = cfg(model, dataset, deterministic=True, optimizer="adam", lr=1e-3, seed=7)
    a = Runner().run(c)
    b = Runner().run(c)  # fresh runner: data reloaded, model rebuilt
    assert a["status"] == b["status"] == "ok"
    assert a["deterministic"] is True
    assert a["loss_curve_sha256"] == b["loss_curve_sha256"]
    assert a["loss_curve"] == b["loss_curve"]
    assert (a["eval_accuracy"], a["eval_loss"]) == (b["eval_accuracy"], b["eval_loss"])
    assert not torch.are_deterministic_algorithms_enabled()  # restored after the config


def test_time_to_accuracy_reaches_a_target_on_synthetic_data():
    rec = Runner().run(cfg("convnet", "synthetic", optimizer="adam", lr=2e-3, batch_size=32,
                           train_samples=1024, eval_samples=256, target_accuracy=0.5,
                           eval_interval=10, max_steps=400))
    assert rec["status"] == "ok", rec["error"]
    assert rec["target_reached"] is True
    assert rec["steps_to_accuracy"] % 10 == 0 and 10 <= rec["steps_to_accuracy"] <= 400
    assert rec["eval_accuracy"] >= 0.5
    assert 0 < rec["time_to_accuracy_s"] < rec["wall_time_s"]  # eval time is not on the clock
    assert len(rec["repeat_throughputs"]) == rec["steps_to_accuracy"] // 10
    assert len(rec["loss_curve"]) == rec["steps_run"]


def test_time_to_accuracy_gives_up_at_max_steps():
    rec = Runner().run(cfg("convnet", "synthetic", target_accuracy=1.0, eval_interval=4,
                           max_steps=10))
    assert rec["status"] == "ok"
    assert rec["target_reached"] is False and rec["steps_to_accuracy"] is None
    assert rec["time_to_accuracy_s"] is None and rec["steps_run"] == 10


def test_loss_curve_is_compacted_and_digested():
    curve = torch.arange(2500, dtype=torch.float32)
    values, every = compact_curve(curve, max_points=1000)
    assert every == 3 and len(values) == 834
    assert values[0] == pytest.approx(1.0) and values[-1] == pytest.approx(2499.0)
    assert compact_curve(curve[:10]) == ([float(v) for v in range(10)], 1)
    changed = curve.clone()
    changed[1234] += 1e-3
    assert curve_digest(curve) == curve_digest(curve.clone())
    assert curve_digest(curve) != curve_digest(changed)


def test_seeds_expand_and_summarise_with_t_intervals():
    configs = expand(merge_settings({}, {"models": ["convnet"], "devices": ["cpu"], "seed": 5,
                                         "seeds": 3}))
    assert [c.seed for c in configs] == [5, 6, 7]
    mean, std, lo, hi = mean_ci([0.5, 0.6, 0.7])
    assert (mean, std) == (pytest.approx(0.6), pytest.approx(0.1))
    assert hi - mean == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)
    recs = [{"model": "convnet", "dataset": "synthetic", "status": "ok", "seed": s,
             "eval_accuracy": a, "throughput": t, "batch_size": 8}
            for s, a, t in [(0, 0.5, 100.0), (1, 0.6, 110.0), (2, 0.7, 90.0)]]
    from harness.store.frame import records_to_frame

    summary = seed_summary(records_to_frame(recs))
    assert len(summary) == 1 and summary.loc[0, "n_seeds"] == 3
    assert summary.loc[0, "eval_accuracy_mean"] == pytest.approx(0.6)
    assert summary.loc[0, "throughput_ci95_low"] < 100 < summary.loc[0, "throughput_ci95_high"]


RUN = ["run", "--models", "convnet,transformer", "--devices", "cpu", "--batch-sizes", "4",
       "--precisions", "fp32", "--optimizers", "adam", "--steps", "2", "--warmup", "1",
       "--repeats", "2", "--eval-samples", "32", "--train-samples", "64"]


def test_verify_reproduces_deterministic_records_and_catches_tampering(tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*RUN, "--deterministic", "--out", "r.jsonl", "--quiet"]) == 0
    capsys.readouterr()
    code = main(["verify", "r.jsonl", "--format", "json"])
    checks = json.loads(capsys.readouterr().out)
    assert code == 0 and len(checks) == 2
    assert all(c["quality"] == "exact" and c["reproduced"] for c in checks)
    # Two repeats a side can never be significant: throughput is reported, not judged.
    assert all(c["throughput"] == "inconclusive" and c["throughput_p_value"] is None
               and c["throughput_change"] is not None for c in checks)

    records = read_records("r.jsonl")
    records[1]["eval_accuracy"] += 0.25  # a result that the code does not produce
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["verify", "t.jsonl"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "eval accuracy differ" in out and "1 of 2 configs reproduce" in out

    rid = records[0]["record_id"]
    assert main(["rerun", "r.jsonl", "--record", rid, "--out", "again.jsonl"]) == 0
    (again,) = read_records("again.jsonl")
    assert again["replay_of"] == rid and again["loss_curve_sha256"] == records[0][
        "loss_curve_sha256"]
    assert main(["rerun", "r.jsonl", "--record", "nope"]) == 2
    assert "no record 'nope'" in capsys.readouterr().err


def test_tensorboard_event_files_hold_the_loss_curve(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(tmp_path)
    assert main([*RUN, "--models", "convnet", "--out", "r.jsonl", "--quiet",
                 "--tensorboard", "tb"]) == 0
    (rec,) = read_records("r.jsonl")
    (event_dir,) = {p.parent for p in (tmp_path / "tb").rglob("events.out.tfevents.*")}
    acc = EventAccumulator(str(event_dir))
    acc.Reload()
    losses = [e.value for e in acc.Scalars("train/loss")]
    assert losses == pytest.approx(rec["loss_curve"])
    assert len(acc.Scalars("throughput/samples/s")) == 2


# ------------------------------------------------------------------ reproduce article

def test_reproduce_article_prints_the_article_lines_and_learns(tmp_path, monkeypatch, capsys):
    from tests.cifar_fixture import patch_cifar_md5, write_cifar10

    patch_cifar_md5(monkeypatch, write_cifar10(tmp_path / "data", per_batch=300, test=200))
    monkeypatch.chdir(tmp_path)
    code = main(["reproduce", "article", "--data-dir", "data", "--epochs", "2",
                 "--device", "cpu", "--out", "a.jsonl", "--report", "rep/report.md"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for n, line in enumerate(lines, 1):
        assert re.fullmatch(rf"Epoch {n}, Loss: \d+\.\d{{4}}, Accuracy: \d+\.\d{{2}}%", line)
    records = read_records("a.jsonl")
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[-1]["eval_accuracy"] > 0.5  # chance is 0.1
    assert all(r["batch_size"] == 4 and r["lr"] == 0.001 and r["throughput"] > 0
               for r in records)
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "9216" in report and "4096" in report and "never imported" in report
    assert "| batch_size | 4 | 4 |" in report
    assert load_results(["a.jsonl"])["eval_accuracy"].notna().all()


def test_reproduce_article_offline_without_cifar_is_the_data_layer_error(tmp_path, monkeypatch,
                                                                        capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "article", "--data-dir", "nodata", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "CIFAR-10 not found" in err and "--dataset synthetic" in err
    assert list(tmp_path.iterdir()) == []
