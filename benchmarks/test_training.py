"""Training benchmarks generated from the model registry, driven by the harness's own Runner.

One benchmark per ``list_models()`` x {fp32, amp} x {sgd, adam, adagrad} at CI-sized settings
(small batches, a few steps, offline synthetic data, the best device present). Each pedantic round
is one complete ``Runner.run(cfg)`` (fresh model, untimed warm-up steps, ``repeats`` timed regions,
untimed evaluation), so pytest-benchmark's time column is the wall time of a whole harness run.
The numbers that matter are the harness's: its record (per-repeat throughputs of all rounds
pooled, memory, accuracy, status, provenance) goes into ``benchmark.extra_info``, which
``trainmark compare`` reads from saved files.

    pytest benchmarks/ --benchmark-autosave                  # .benchmarks/<machine>/0001_*.json
    pytest benchmarks/ --benchmark-compare                   # pytest-benchmark's own table
    trainmark compare .benchmarks/*/0001_*.json .benchmarks/*/0002_*.json   # verdicts

ResNet-18 (11M parameters) takes about as long as the other three models together on a 2-core
CPU, so it is left out by default; ``--bench-models all`` (or a comma list) includes it.
"""

from __future__ import annotations

import statistics

import pytest

from harness.core.devices import best_device
from harness.core.optim import OPTIMIZERS
from harness.core.runner import Runner
from harness.core.suites import expand, merge_settings
from models import list_models

PRECISIONS = ("fp32", "amp")  # amp: bf16 autocast on the CPU, fp16 + GradScaler on CUDA
# Left out unless asked for: ResNet-18 and the standard workloads take seconds per step on a CPU
# (benchmarks/standard_models.py measures those).
# The Llama 3 presets from 1B up: GPU only.
DEFAULT_EXCLUDED = ("resnet18", "resnet50", "vit_b_16", "gpt2", "llama3.2-1b", "llama3.2-3b",
                    "llama3.1-8b", "llama3.1-70b", "llama3.1-405b")
# Samples (sequences for the Transformer) per step: small enough for a CPU runner.
BATCH_SIZES = {"convnet": 32, "resnet20": 16, "resnet18": 4, "transformer": 4}
SETTINGS = {"warmup": 2, "steps": 5, "repeats": 3, "eval_samples": 256, "train_samples": 512}
WARMUP_ROUNDS = 1


def bench_models(option: str | None) -> list[str]:
    if option in (None, ""):
        return [m for m in list_models() if m not in DEFAULT_EXCLUDED]
    if option == "all":
        return list_models()
    return [m.strip() for m in option.split(",") if m.strip()]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "grid" in metafunc.fixturenames:
        models = bench_models(metafunc.config.getoption("--bench-models"))
        grid = [(m, p, o) for m in models for p in PRECISIONS for o in OPTIMIZERS]
        metafunc.parametrize("grid", grid, ids=["-".join(g) for g in grid])


@pytest.fixture(scope="session")
def runner() -> Runner:
    return Runner(run_id="pytest-benchmark")  # one process-wide runner: datasets are cached


def make_config(model: str, precision: str, optimizer: str):
    """The RunConfig through the same expansion as ``trainmark run`` (lr, precision alias)."""
    settings = merge_settings({}, {
        "models": [model], "precisions": [precision], "optimizers": [optimizer],
        "devices": [best_device()], "batch_sizes": [BATCH_SIZES.get(model, 8)], **SETTINGS,
    })
    (cfg,) = expand(settings)
    return cfg


def merge_rounds(records: list[dict]) -> dict:
    """One record for the benchmark: the last round's, with every round's repeat samples."""
    merged = dict(records[-1])
    samples = [t for r in records for t in (r.get("repeat_throughputs") or [])]
    bad = next((r for r in records if r.get("status") != "ok"), None)
    if bad is not None:
        merged.update(status=bad["status"], error=bad.get("error"))
    merged["repeat_throughputs"] = samples
    merged["throughput"] = statistics.median(samples) if samples else None
    merged["benchmark_rounds"] = len(records)
    peaks = [r.get("peak_memory_allocated_bytes") for r in records]
    if all(p is not None for p in peaks):
        merged["peak_memory_allocated_bytes"] = max(peaks)
    return merged


def test_training(benchmark, runner: Runner, grid: tuple[str, str, str], request) -> None:
    cfg = make_config(*grid)
    records: list[dict] = []

    def one_round() -> None:
        records.append(runner.run(cfg))

    rounds = request.config.getoption("--bench-rounds")
    benchmark.group = grid[0]
    benchmark.pedantic(one_round, rounds=rounds, warmup_rounds=WARMUP_ROUNDS, iterations=1)
    record = merge_rounds(records[-rounds:])  # the warm-up round's record is not kept
    benchmark.extra_info.update(record)
    if record["status"] == "unavailable":
        pytest.skip(f"{cfg.label()}: {record['error']}")
    assert record["status"] == "ok", f"{cfg.label()}: {record['status']}: {record['error']}"
    assert len(record["repeat_throughputs"]) == rounds * SETTINGS["repeats"]
    # Each round's throughput (items / region seconds, from the region clock) against the same
    # round's median step time (from the per-step marks): the same pace seen by two clocks. A
    # unit or count error (ms for s, steps or batch left out, samples for tokens: a factor of 4
    # or more) cannot pass; step-time jitter (the median step against a region's mean) can.
    items_per_sample = {"samples/s": 1, "tokens/s": 128}[record["throughput_unit"]]  # 128-token
    for r in records[-rounds:]:  # context windows for the language model
        pace = cfg.batch_size * items_per_sample / (r["step_time_ms_median"] / 1e3)
        assert pace / 3 < r["throughput"] < pace * 1.5, (r["throughput"], pace)
