"""``--batch-sizes max[:LIMIT]``: the search's probe sequence, the fit verdict on records, the
config's record when nothing fits or a probe fails, and real CPU searches end to end."""

from __future__ import annotations

import dataclasses

import pytest

from harness.cli import main
from harness.core.config import RunConfig, record_key
from harness.execution.batch_search import (
    GIB,
    ProbeFailed,
    fits,
    largest_fitting,
    probe_config,
    resolve_max_batch,
    search_key,
    searching,
)
from harness.store.jsonl import read_records

T, F = True, False


def upto(n, calls=None):
    def fit(b):
        if calls is not None:
            calls.append(b)
        return b <= n

    return fit


# ------------------------------------------------------------------------- the pure search


def test_doubling_then_bisection_finds_37_in_twelve_probes():
    # doubling 1..64 (64 fails), then bisection in (32, 64): 48 F, 40 F, 36 T, 38 F, 37 T
    found, probes = largest_fitting(upto(37), 65536)
    assert found == 37
    assert probes == [(1, T), (2, T), (4, T), (8, T), (16, T), (32, T), (64, F),
                      (48, F), (40, F), (36, T), (38, F), (37, T)]


def test_the_limit_is_probed_when_doubling_passes_it():
    found, probes = largest_fitting(lambda b: True, 100)
    assert found == 100
    assert probes == [(1, T), (2, T), (4, T), (8, T), (16, T), (32, T), (64, T), (100, T)]
    # a limit that is a power of two is reached by doubling alone
    assert largest_fitting(lambda b: True, 64) == (64, [(2**i, T) for i in range(7)])


def test_a_limit_that_does_not_fit_is_bisected_from_the_last_power_of_two():
    # 64 fits, 100 (the limit) does not: (64, 100) -> 82 F, 73 F, 68 T, 70 T, 71 F
    found, probes = largest_fitting(upto(70), 100)
    assert found == 70
    assert probes[6:] == [(64, T), (100, F), (82, F), (73, F), (68, T), (70, T), (71, F)]


def test_a_tolerance_stops_bisection_within_that_share_of_the_size():
    # fits iff b <= 400, limit 512: doubling 1..256 fit, 512 does not; then 384 T (gap 128),
    # 448 F, 416 F (gap 32), 400 T (gap 16 > 400/32 = 12.5), 408 F (gap 8 <= 12.5): stop at 400.
    found, probes = largest_fitting(lambda b: b <= 400, 512, tolerance=1 / 32)
    assert found == 400
    assert [b for b, _ in probes] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 384, 448, 416,
                                      400, 408]
    exact, exact_probes = largest_fitting(lambda b: b <= 400, 512)
    assert exact == 400 and [b for b, _ in exact_probes][-3:] == [404, 402, 401]


def test_nothing_fits_is_one_probe_and_none():
    calls = []
    assert largest_fitting(upto(0, calls), 65536) == (None, [(1, F)])
    assert calls == [1]


def test_start_and_limit_one():
    assert largest_fitting(upto(10), 100, start=3) == (
        10, [(3, T), (6, T), (12, F), (9, T), (10, T), (11, F)])
    assert largest_fitting(lambda b: True, 1) == (1, [(1, T)])
    with pytest.raises(ValueError):
        largest_fitting(lambda b: True, 0)


def test_a_failing_probe_stops_the_search_with_the_probes_so_far():
    calls = []

    def fit(b):
        calls.append(b)
        if b == 8:
            raise ProbeFailed({"status": "error", "error": "boom"})
        return True

    with pytest.raises(ProbeFailed) as info:
        largest_fitting(fit, 65536)
    assert calls == [1, 2, 4, 8]  # nothing probed after the failure
    assert info.value.probes == [(1, T), (2, T), (4, T)]
    assert info.value.record["error"] == "boom"


# ------------------------------------------------------------------------- the fit verdict


def rec(**kw):
    return {"status": "ok", "device": "cpu", "batch_size": 4, "isolation": "process", **kw}


def test_cpu_budget_judges_peak_rss_of_the_worker():
    assert fits(rec(peak_rss_bytes=int(0.9 * GIB)), 1.0)
    assert not fits(rec(peak_rss_bytes=int(1.1 * GIB)), 1.0)
    assert fits(rec(peak_rss_bytes=100 * GIB), None)  # no budget: ok is enough
    # in a shared process the high-water mark holds earlier configs: the peak since its data
    shared = rec(isolation="none", peak_rss_bytes=3 * GIB, rss_before_model_bytes=int(0.5 * GIB),
                 train_rss_bytes=int(0.3 * GIB))
    assert fits(shared, 1.0) and not fits(shared, 0.75)


def test_cuda_budget_judges_reserved_not_allocated_nor_host_memory():
    cuda = rec(device="cuda:0", peak_memory_allocated_bytes=11 * GIB, peak_rss_bytes=50 * GIB)
    assert fits({**cuda, "peak_memory_reserved_bytes": 12 * GIB}, 12.0)
    assert not fits({**cuda, "peak_memory_reserved_bytes": 13 * GIB}, 12.0)
    assert fits({**cuda, "peak_memory_reserved_bytes": 13 * GIB}, None)


def test_oom_does_not_fit_and_other_failures_stop_the_search():
    assert not fits(rec(status="oom", error="CUDA out of memory"), None)
    assert not fits(rec(status="oom", peak_rss_bytes=1), 64.0)
    for status in ("error", "crashed", "timeout", "unavailable", "diverged"):
        with pytest.raises(ProbeFailed):
            fits(rec(status=status, error="x"), 64.0)
    with pytest.raises(ProbeFailed) as info:  # a budget it cannot check is not a fit
        fits(rec(device="cuda:0"), 8.0)
    assert info.value.record["status"] == "error" and "8 GiB" in info.value.record["error"]


# ------------------------------------------------------------------ resolving a config


CFG = RunConfig(model="convnet", dataset="synthetic", batch_size=0, max_batch=512,
                memory_budget_gib=1.0, warmup_steps=None, timed_steps=10, repeats=3,
                eval_samples=256)


def fake_measure(seen, per_sample_mib=10, fail_at=None):
    """CPU records whose peak RSS is 0.3 GiB + 10 MiB a sample: fits 1 GiB up to b = 71."""

    def measure(cfg):
        seen.append(cfg)
        if cfg.batch_size == fail_at:
            return {**dataclasses.asdict(cfg), "status": "crashed", "error": "signal 9",
                    "isolation": "process"}
        return {**dataclasses.asdict(cfg), "status": "ok", "error": None, "isolation": "process",
                "throughput": 123.0, "peak_rss_bytes": int(0.3 * GIB)
                + cfg.batch_size * per_sample_mib * 2**20}

    return measure


def test_probes_are_short_runs_of_the_config_itself():
    p = probe_config(CFG, 48)
    assert (p.batch_size, p.warmup_steps, p.timed_steps, p.repeats, p.min_time_s) == (
        48, 1, 1, 1, 0.0)
    assert (p.eval_samples, p.max_batch, p.memory_budget_gib) == (256, 512, 1.0)


def test_resolve_returns_the_config_at_the_size_found():
    seen = []
    found, fields = resolve_max_batch(CFG, fake_measure(seen))
    assert found == dataclasses.replace(CFG, batch_size=70)
    # 64 fits (0.925 GiB), 128 does not; bisection in (64, 128): 96 F, 80 F, 72 F, 68 T, 70 T;
    # then the gap to 72 is 2 <= 70 / 32: on the CPU the search stops within 1/32 (71 also fits)
    assert fields["batch_size_probes"] == [[1, T], [2, T], [4, T], [8, T], [16, T], [32, T],
                                           [64, T], [128, F], [96, F], [80, F], [72, F],
                                           [68, T], [70, T]]
    assert [c.batch_size for c in seen] == [b for b, _ in fields["batch_size_probes"]]
    assert all(c.timed_steps == 1 for c in seen)


def test_nothing_fits_is_an_oom_record_naming_the_budget():
    found, record = resolve_max_batch(CFG, fake_measure([], per_sample_mib=1024))
    assert found is None
    assert record["status"] == "oom" and record["batch_size_probes"] == [[1, F]]
    assert record["error"] == ("batch size 1 does not fit the memory budget of 1 GiB: "
                               "peak RSS 1.30 GiB")
    assert record["throughput"] is None  # a one-step probe's speed is not the config's
    # the config's own step settings, the size it failed at, the limit
    assert (record["timed_steps"], record["repeats"], record["warmup_steps"]) == (10, 3, None)
    assert (record["batch_size"], record["max_batch"]) == (1, 512)


def test_a_crashed_probe_is_the_configs_record():
    found, record = resolve_max_batch(CFG, fake_measure([], fail_at=16))
    assert found is None
    assert record["status"] == "crashed"
    assert record["error"] == "probe at batch size 16: signal 9"
    assert record["batch_size_probes"] == [[1, T], [2, T], [4, T], [8, T]]


def test_searching_probes_then_measures_the_size_found_and_passes_others_through():
    probed, measured, lines = [], [], []
    run = searching(fake_measure(measured), fake_measure(probed), report=lines.append)
    rec = run(CFG)
    assert [c.batch_size for c in measured] == [70]  # the probes as in the test above
    assert measured[0].timed_steps == 10  # the measurement is the config's own, not a probe
    assert len(probed) == 13 and rec["batch_size"] == 70
    assert len(rec["batch_size_probes"]) == 13
    assert lines[0] == ("convnet synthetic cpu bs=max<=512 fp32 sgd: probe bs=1 fits: "
                        "peak RSS 0.31 GiB, budget 1 GiB")
    fixed = dataclasses.replace(CFG, batch_size=8, max_batch=None)
    assert "batch_size_probes" not in run(fixed) and measured[-1] == fixed


def test_resume_matches_a_searched_config_to_its_record_of_any_size():
    found = dataclasses.replace(CFG, batch_size=71)
    assert search_key(record_key(dataclasses.asdict(found))) == search_key(CFG.key())
    fixed = dataclasses.replace(CFG, batch_size=8, max_batch=None)
    assert search_key(fixed.key()) == fixed.key()
    assert search_key(fixed.key()) != search_key(dataclasses.replace(fixed, batch_size=16).key())


# ------------------------------------------------------------------------- end to end


QUICK = ["--models", "convnet", "--devices", "cpu", "--precisions", "fp32", "--optimizers",
         "sgd", "--steps", "1", "--repeats", "1", "--warmup", "1", "--eval-samples", "16",
         "--train-samples", "256", "--no-report"]


def test_a_budget_far_above_need_reaches_the_limit_and_resume_keeps_it(workdir, capfd):
    out = workdir / "r.jsonl"
    argv = ["run", *QUICK, "--batch-sizes", "max:8", "--memory-budget", "64", "--out", str(out)]
    assert main(argv) == 0
    (r,) = read_records(out)
    assert r["status"] == "ok" and r["throughput"] > 0
    assert (r["batch_size"], r["max_batch"], r["memory_budget_gib"]) == (8, 8, 64.0)
    assert r["batch_size_probes"] == [[1, T], [2, T], [4, T], [8, T]]
    err = capfd.readouterr().err
    assert "probe bs=4 fits: peak RSS" in err
    assert "[1/1] convnet synthetic cpu bs=8 (max<=8) fp32 sgd [4 probes]: ok" in err
    assert main([*argv, "--resume", "--quiet"]) == 0
    assert len(read_records(out)) == 1  # the searched config is done: nothing probed again


def test_a_budget_below_the_baseline_fits_nothing(workdir):
    out = workdir / "r.jsonl"
    assert main(["run", *QUICK, "--batch-sizes", "max:8", "--memory-budget", "0.01", "--quiet",
                 "--out", str(out)]) == 0
    (r,) = read_records(out)
    assert r["status"] == "oom" and r["batch_size_probes"] == [[1, F]]
    assert r["error"].startswith("batch size 1 does not fit the memory budget of 0.01 GiB: "
                                 "peak RSS ")
    assert r["peak_rss_bytes"] > 0.01 * GIB and r["throughput"] is None


# ------------------------------------------- every way a GPU says "does not fit" (issue 22)

# The messages torch raises near a GPU's memory or size limit, as its CUDA builds word them.
# They cannot be produced without a GPU: `test_fails_above` raises each above a batch size.
NEAR_THE_LIMIT = [
    "CUDA error: out of memory\nCompile with `TORCH_USE_CUDA_DSA` to enable device-side "
    "assertions.",
    "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    "cuDNN error: CUDNN_STATUS_INTERNAL_ERROR",
    "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if you passed in a "
    "non-contiguous input.",
    "Expected canUse32BitIndexMath(input) && canUse32BitIndexMath(output) to be true, but got "
    "false.",
]


@pytest.mark.parametrize("message", NEAR_THE_LIMIT, ids=["runtime", "cublas", "cudnn-internal",
                                                         "cudnn-unsupported", "indexing"])
def test_each_near_the_limit_failure_is_a_size_that_does_not_fit(message, monkeypatch):
    from harness.core.runner import Runner
    from models.faults import FAIL_ABOVE_ENV, FAIL_MESSAGE_ENV

    monkeypatch.setenv(FAIL_ABOVE_ENV, "5")
    monkeypatch.setenv(FAIL_MESSAGE_ENV, message)
    cfg = RunConfig(model="test_fails_above", dataset="synthetic", batch_size=0, max_batch=8,
                    warmup_steps=1, timed_steps=1, repeats=1, eval_samples=8,
                    train_samples=32)
    runner = Runner(data_dir="data")
    found, fields = resolve_max_batch(cfg, runner.run)
    # 1, 2, 4 fit; 8 fails with the message, so bisection takes over: 6 fails, 5 fits.
    assert found is not None and found.batch_size == 5, fields
    assert fields["batch_size_probes"] == [[1, T], [2, T], [4, T], [8, F], [6, F], [5, T]]
    failed = runner.run(dataclasses.replace(cfg, batch_size=6, max_batch=None))
    assert failed["status"] == "oom" and message.splitlines()[0][:40] in failed["error"]


def test_a_plain_runtime_error_still_stops_the_search(monkeypatch):
    from harness.core.runner import Runner
    from models.faults import FAIL_ABOVE_ENV, FAIL_MESSAGE_ENV

    monkeypatch.setenv(FAIL_ABOVE_ENV, "3")
    monkeypatch.setenv(FAIL_MESSAGE_ENV, "mat1 and mat2 shapes cannot be multiplied")
    cfg = RunConfig(model="test_fails_above", dataset="synthetic", batch_size=0, max_batch=8,
                    warmup_steps=1, timed_steps=1, repeats=1, eval_samples=8,
                    train_samples=32)
    found, record = resolve_max_batch(cfg, Runner(data_dir="data").run)
    assert found is None and record["status"] == "error"
    assert record["batch_size_probes"] == [[1, T], [2, T]]


def test_an_oom_at_the_size_found_is_measured_at_the_next_size_that_fit():
    # The probes fit up to 70 (see test_resolve_returns_the_config_at_the_size_found), but the
    # measurement at 70 (a new worker, whose autotuning wants more) runs out of memory: the
    # next size that fit, 68, is measured instead and the record says what was given up.
    measured, lines = [], []

    def measure(cfg):
        measured.append(cfg.batch_size)
        if cfg.batch_size == 70:
            return {**dataclasses.asdict(cfg), "status": "oom", "error": "CUDA out of memory"}
        return fake_measure([])(cfg)

    rec = searching(measure, fake_measure([]), report=lines.append)(CFG)
    assert measured == [70, 68]
    assert rec["status"] == "ok" and rec["batch_size"] == 68
    assert rec["batch_size_fallbacks"] == [[70, "CUDA out of memory"]]
    assert len(rec["batch_size_probes"]) == 13  # the search's probes stay with the record
    assert "measuring at bs=68" in lines[-1]


def test_fallbacks_stop_after_a_few_sizes():
    measured = []

    def always_oom(cfg):
        measured.append(cfg.batch_size)
        return {**dataclasses.asdict(cfg), "status": "oom", "error": "CUDA out of memory"}

    rec = searching(always_oom, fake_measure([]))(CFG)
    assert measured == [70, 68, 64, 32]  # the size found, then three that fit as probes
    assert rec["status"] == "oom" and [b for b, _ in rec["batch_size_fallbacks"]] == [70, 68, 64]
