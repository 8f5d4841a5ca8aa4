"""Deterministic mode, time-to-accuracy, seeds, loss curves, rerun/verify, TensorBoard."""

import json
import math
import re
import time

import pytest
import torch

from harness.analysis.seeds import mean_ci, seed_summary
from harness.cli import main
from harness.core import build as build_mod
from harness.core import runner as runner_mod
from harness.core.config import RunConfig
from harness.core.data import ImageData, load_dataset, synthetic_text
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


EVAL_DELAY_S = 1000.0  # what each evaluation "takes" on the test's clock


def test_time_to_accuracy_reaches_a_target_and_leaves_evaluation_off_the_clock(monkeypatch):
    """Every evaluation advances the process clock (``time.perf_counter``) by 1000 s, a
    test-only delay no real training step comes near: were evaluation on the clock, the time to
    accuracy would hold 1000 s per evaluation; the wall time, which does hold them, shows that
    the delay really was injected."""
    real_clock, skipped = time.perf_counter, [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: real_clock() + skipped[0])
    evaluations = []

    def slow_evaluate(*args, **kwargs):
        skipped[0] += EVAL_DELAY_S
        evaluations.append(1)
        return real_evaluate(*args, **kwargs)

    real_evaluate = runner_mod.evaluate
    monkeypatch.setattr(runner_mod, "evaluate", slow_evaluate)
    rec = Runner().run(cfg("convnet", "synthetic", optimizer="adam", lr=2e-3, batch_size=32,
                           train_samples=1024, eval_samples=256, target_accuracy=0.5,
                           eval_interval=10, max_steps=400))
    assert rec["status"] == "ok", rec["error"]
    assert rec["target_reached"] is True
    assert rec["steps_to_accuracy"] % 10 == 0 and 10 <= rec["steps_to_accuracy"] <= 400
    assert rec["eval_accuracy"] >= 0.5
    n_evals = rec["steps_to_accuracy"] // 10  # one every 10 steps, the last one reached it
    assert len(evaluations) == n_evals == len(rec["repeat_throughputs"])
    assert rec["wall_time_s"] >= n_evals * EVAL_DELAY_S  # the delays happened...
    assert 0 < rec["time_to_accuracy_s"] < EVAL_DELAY_S  # ... but not on the clock
    # The clock holds exactly the timed regions: 10 steps of 32 samples each at its throughput.
    assert rec["time_to_accuracy_s"] == pytest.approx(
        sum(32 * 10 / t for t in rec["repeat_throughputs"]), rel=1e-9)
    assert len(rec["loss_curve"]) == rec["steps_run"]


def test_evaluation_uses_the_held_out_split(monkeypatch):
    """A dataset whose splits disagree on purpose: every training label is class 0, every
    held-out label class 1. Training makes the model answer 0, so accuracy on the held-out split
    is (near) 0 and its loss high, where the training split would score (near) 1. The model's
    inputs in eval mode are also checked to be exactly the held-out images, none a training one."""
    gen = torch.Generator().manual_seed(0)
    train_x, eval_x = torch.rand(64, 3, 32, 32, generator=gen), torch.rand(32, 3, 32, 32,
                                                                           generator=gen)
    data = ImageData("synthetic", train_x, torch.zeros(64, dtype=torch.long), eval_x,
                     torch.ones(32, dtype=torch.long))
    monkeypatch.setattr(runner_mod, "load_dataset", lambda *a, **k: data)
    seen = []
    real_create = build_mod.create_model  # the runner builds through core.build

    def create_model(*args, **kwargs):
        model = real_create(*args, **kwargs)
        model.register_forward_pre_hook(
            lambda module, inputs: None if module.training else seen.append(inputs[0].clone()))
        return model

    monkeypatch.setattr(build_mod, "create_model", create_model)
    rec = Runner().run(cfg("convnet", "synthetic", optimizer="adam", lr=1e-2, warmup_steps=1,
                           timed_steps=10, repeats=2, eval_samples=32))
    assert rec["status"] == "ok", rec["error"]
    assert rec["train_loss"] < 0.1  # it learnt "always class 0"
    assert rec["eval_accuracy"] < 0.5 and rec["eval_loss"] > 2.0  # and is judged on class 1
    assert torch.equal(torch.cat(seen), eval_x)  # every held-out image once, nothing else


def test_synthetic_held_out_split_shares_no_sample_with_training():
    images = load_dataset("synthetic", torch.device("cpu"), train_samples=512, eval_samples=256)
    # Each image has Gaussian noise of sigma 0.25 on 3072 pixels: distinct images lie ~20 apart.
    assert float(torch.cdist(images.eval_x.flatten(1), images.train_x.flatten(1)).min()) > 1.0
    text = load_dataset("synthetic-text", torch.device("cpu"))
    # 200,000 characters, 90% for training: the held-out tokens are the last 20,000 characters.
    source = synthetic_text(200_000, seed=0)
    assert "".join(text.vocab[i] for i in text.eval_tokens.tolist()) == source[180_000:]
    assert "".join(text.vocab[i] for i in text.train_tokens.tolist()) == source[:180_000]
    # Evaluation reads non-overlapping 128-token windows of them: floor(19,999 / 128) = 156
    # windows (each window's targets need the token after it).
    windows = torch.cat([x for x, _ in text.eval_batches(64, limit=10_000)])
    assert windows.shape == (156, 128)
    assert torch.equal(windows.flatten(), text.eval_tokens[:156 * 128])


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
