import itertools
import math
import time

import pytest
import torch

from harness.core import loop as loop_mod
from harness.core import runner as runner_mod
from harness.core.config import RunConfig, config_from_record
from harness.core.precision import resolve_precision
from harness.core.runner import Runner
from harness.errors import Unavailable


def tiny(model="convnet", dataset="synthetic", **kw):
    base = dict(batch_size=4, warmup_steps=1, timed_steps=3, repeats=2, eval_samples=32,
                train_samples=64)
    if dataset == "synthetic-text":
        base.pop("train_samples")
    base.update(kw)
    return RunConfig(model=model, dataset=dataset, **base)


@pytest.fixture(scope="module")
def run():
    r = Runner(run_id="test-run")
    return r.run


@pytest.mark.parametrize("model, dataset, unit", [("convnet", "synthetic", "samples/s"),
                                                  ("resnet20", "synthetic", "samples/s"),
                                                  ("transformer", "synthetic-text", "tokens/s")])
def test_ok_record_has_the_contract_fields(run, model, dataset, unit):
    rec = run(tiny(model, dataset))
    assert rec["status"] == "ok" and rec["error"] is None
    assert rec["run_id"] == "test-run" and rec["model"] == model and rec["dataset"] == dataset
    assert rec["throughput_unit"] == unit
    assert len(rec["repeat_throughputs"]) == 2
    assert rec["step_time_ms_median"] > 0 and rec["step_time_ms_iqr"] >= 0
    assert 0.0 <= rec["eval_accuracy"] <= 1.0 and math.isfinite(rec["eval_loss"])
    assert len(rec["loss_curve"]) == 1 + 3 * 2
    assert rec["peak_memory_allocated_bytes"] is None  # CPU: the allocator is not tracked
    assert rec["peak_rss_bytes"] > 0
    for field in ("torch_version", "cpu_model", "host", "python", "num_threads", "timestamp"):
        assert rec[field], field


class StepClock:
    """A process clock (``time.perf_counter``) that stands still except while a training step
    runs: the i-th step of a config "takes" ``durations[i]`` seconds. The runner, loop and
    region timer run for real on it, so what they record can be worked out by hand."""

    def __init__(self, monkeypatch, durations: list[float]) -> None:
        self.now, self.durations = 1000.0, list(durations)
        monkeypatch.setattr(time, "perf_counter", lambda: self.now)
        real_make = runner_mod.make_train_step

        def make_train_step(*args, **kwargs):
            step = real_make(*args, **kwargs)

            def timed_step(idx):
                loss = step(idx)
                self.now += self.durations.pop(0)  # IndexError: more steps than scripted
                return loss

            return timed_step

        monkeypatch.setattr(runner_mod, "make_train_step", make_train_step)


def test_throughput_is_the_median_of_region_rates_on_a_known_clock(monkeypatch, run):
    clock = StepClock(monkeypatch, [7.0,  # the warm-up step: never on the clock
                                    0.1, 0.1, 0.2,  # region 1: 0.4 s
                                    0.2, 0.2, 0.2,  # region 2: 0.6 s
                                    0.05, 0.05, 0.05])  # region 3: 0.15 s
    rec = run(tiny(batch_size=4, warmup_steps=1, timed_steps=3, repeats=3))
    assert rec["status"] == "ok", rec["error"]
    assert clock.durations == []
    # 4 samples x 3 steps per region: 12 / 0.4 = 30, 12 / 0.6 = 20, 12 / 0.15 = 80 samples/s;
    # the record's throughput is their median, 30 (their mean would be 43.3).
    assert rec["repeat_throughputs"] == pytest.approx([30.0, 20.0, 80.0])
    assert rec["throughput"] == pytest.approx(30.0)
    # Timed steps sorted: 0.05 x3, 0.1 x2, 0.2 x4 -> median 0.1 s (the 5th of 9); quartiles
    # (inclusive method, positions 2 and 6 of 0..8) 0.05 and 0.2 s -> IQR 150 ms.
    assert rec["step_time_ms_median"] == pytest.approx(100.0)
    assert rec["step_time_ms_iqr"] == pytest.approx(150.0)
    assert rec["wall_time_s"] == pytest.approx(7.0 + 0.4 + 0.6 + 0.15)


def test_tokens_per_second_counts_tokens(monkeypatch, run):
    StepClock(monkeypatch, [3.0, 0.5, 0.5])
    rec = run(tiny("transformer", "synthetic-text", timed_steps=2, repeats=1))
    assert rec["status"] == "ok", rec["error"]
    # 4 sequences of 128 tokens per step, 2 steps in 1.0 s: 1,024 tokens/s.
    assert rec["throughput_unit"] == "tokens/s"
    assert rec["throughput"] == pytest.approx(1024.0)
    assert rec["step_time_ms_median"] == pytest.approx(500.0)


def test_same_seed_same_losses_different_seed_different(run):
    a, b = run(tiny(seed=1)), run(tiny(seed=1))
    c = run(tiny(seed=2))
    assert a["loss_curve"] == b["loss_curve"]
    assert a["loss_curve"] != c["loss_curve"]


def test_training_learns_on_synthetic_data(run):
    rec = run(tiny("resnet20", optimizer="adagrad", lr=1e-2, batch_size=32, warmup_steps=10,
                   timed_steps=10, repeats=2, train_samples=1024, eval_samples=256))
    assert rec["eval_accuracy"] > 0.3  # chance is 0.1
    assert rec["loss_curve"][-1] < rec["loss_curve"][0]


@pytest.mark.parametrize("model, status, text", [
    ("test_oom", "oom", "OutOfMemoryError: CUDA out of memory"),
    ("test_nan", "diverged", "non-finite training loss at step 0"),
    ("test_error", "error", "ValueError: boom"),
    ("test_unsupported", "unavailable", "not implemented for 'Half'"),
])
def test_failures_become_records_with_a_status(run, model, status, text):
    rec = run(tiny(model))
    assert rec["status"] == status
    assert text in rec["error"] and "\n" not in rec["error"]
    assert rec.get("throughput") is None
    # the runner goes on: the next config still works
    assert run(tiny())["status"] == "ok"


def test_precision_the_device_lacks_is_unavailable(monkeypatch, run):
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: False)
    with pytest.raises(Unavailable, match="autocast is not available on cpu"):
        resolve_precision("amp-bf16", torch.device("cpu"))
    rec = run(tiny(precision="amp-bf16"))
    assert rec["status"] == "unavailable" and "autocast is not available" in rec["error"]


def test_cuda_bf16_without_support_is_unavailable(monkeypatch):
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: True)
    # A V100 (compute capability 7.0) runs bf16 only emulated (tests/test_cuda_paths.py).
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100")
    with pytest.raises(Unavailable,
                       match=r"Tesla V100 \(compute capability 7\.0\) has no native bf16"):
        resolve_precision("amp-bf16", torch.device("cuda:0"))
    plan = resolve_precision("amp", torch.device("cuda:0"))
    assert plan.name == "amp-fp16" and plan.use_scaler


def test_no_host_sync_inside_the_timed_region(monkeypatch, run):
    """Inside a timed region, .item()/.cpu()/.tolist()/bool() on a tensor must never be called."""
    state = {"timing": False}
    real_start, real_stop = runner_mod.RegionTimer.start, runner_mod.RegionTimer.stop

    def start(self):
        real_start(self)
        state["timing"] = True

    def stop(self):
        state["timing"] = False
        return real_stop(self)

    monkeypatch.setattr(runner_mod.RegionTimer, "start", start)
    monkeypatch.setattr(runner_mod.RegionTimer, "stop", stop)
    for name in ("item", "cpu", "tolist", "__bool__", "__float__"):
        real = getattr(torch.Tensor, name)

        def guarded(self, *a, _real=real, _name=name, **k):
            if state["timing"]:
                raise AssertionError(f"host sync {_name}() inside the timed region")
            return _real(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, guarded)
    for model, dataset in [("convnet", "synthetic"), ("transformer", "synthetic-text")]:
        rec = run(tiny(model, dataset))
        assert rec["status"] == "ok", rec["error"]
    # the adaptive warm-up's chunks run between the same timer edges, under the same rule
    rec = run(tiny(warmup_steps=None, min_time_s=0.05))
    assert rec["status"] == "ok", rec["error"]


def test_injected_slowdown_knob_spins_in_proportion_to_each_timed_step(monkeypatch, run):
    spins = []
    monkeypatch.setattr(loop_mod, "spin", spins.append)
    run(tiny(timed_steps=4, repeats=3))
    assert spins == []  # off unless the variable is set
    # A clock that advances one second per reading: a step that the knob times from one reading
    # to the next lasted exactly 1 s, so its spin must be exactly f x 1 s (no wall-time bounds,
    # which flake on a loaded machine).
    ticks = itertools.count()
    monkeypatch.setattr(runner_mod.time, "perf_counter", lambda: float(next(ticks)))
    monkeypatch.setenv("TRAINMARK_INJECT_SLOWDOWN", "0.5")
    run(tiny(timed_steps=4, repeats=3, warmup_steps=2))
    assert spins == [0.5] * (4 * 3)  # once per timed step, never in warm-up


def test_a_knob_for_other_configs_leaves_this_one_unslowed_and_unflagged(monkeypatch, run):
    """``F@FIELD=VALUE`` slows only matching configs; the others' records are real
    measurements (not flagged, so compare accepts them as a baseline)."""
    spins = []
    monkeypatch.setattr(loop_mod, "spin", spins.append)
    monkeypatch.setenv("TRAINMARK_INJECT_SLOWDOWN", "0.5@optimizer=adagrad")
    rec = run(tiny(optimizer="sgd"))
    assert spins == [] and rec["injected_slowdown"] is None
    rec = run(tiny(optimizer="adagrad", timed_steps=2, repeats=1))
    assert len(spins) == 2 and rec["injected_slowdown"] == 0.5


def test_records_say_what_the_loop_ran(run):
    fixed = run(tiny())
    assert (fixed["warmup_steps"], fixed["warmup_rule"], fixed["warmup_steps_run"]) == (
        1, "fixed", 1)
    assert fixed["warmup_stable"] is None and fixed["timed_steps_run"] == 3
    assert fixed["min_time_s"] is None and fixed["min_time_s_run"] == 0.0  # the CPU's default
    rec = run(tiny(warmup_steps=None, min_time_s=0.05))
    assert rec["status"] == "ok", rec["error"]
    assert (rec["warmup_steps"], rec["warmup_rule"]) == (None, "adaptive")
    assert rec["warmup_steps_run"] >= 1 + 2 * 5 and rec["warmup_stable"] in (True, False)
    assert rec["warmup_time_s"] > 0 and rec["min_time_s_run"] == 0.05
    assert rec["timed_steps"] == 3 and rec["timed_steps_run"] >= 3
    assert len(rec["loss_curve"]) == rec["warmup_steps_run"] + 2 * rec["timed_steps_run"]
    tta = run(tiny(target_accuracy=1.0, eval_interval=2, max_steps=4))
    assert tta.get("warmup_rule") is None and tta.get("timed_steps_run") is None  # no warm-up


def test_a_replay_of_an_adaptive_deterministic_record_reproduces_its_losses(run):
    cfg = tiny(warmup_steps=None, min_time_s=0.05, deterministic=True)
    rec = run(cfg)
    again = config_from_record(rec)
    assert again.warmup_steps == rec["warmup_steps_run"]
    assert again.timed_steps == rec["timed_steps_run"] and again.min_time_s == 0.0
    replayed = run(again)
    assert replayed["warmup_rule"] == "fixed"
    assert replayed["loss_curve_sha256"] == rec["loss_curve_sha256"]
    assert replayed["eval_loss"] == rec["eval_loss"]
