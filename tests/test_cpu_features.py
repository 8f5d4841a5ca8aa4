"""CPU features in the record, and emulated bf16/fp16 refused unless asked (issue 28).

The boundary faked here is the CPU's flags and oneDNN's permission (``probes.cpu.cpu_flags`` /
``onednn_allows``), for both kinds of CPU. The end-to-end test uses the real boundary instead:
``ONEDNN_MAX_CPU_ISA=AVX2`` caps oneDNN below bf16 on any x86 CPU, as on an AVX2-only one.
"""

import json
import os
import platform
import subprocess
import sys

import pandas as pd
import pytest
import torch

from harness.analysis.compare import compare_frames
from harness.analysis.report_data import cpu_feature_text, unavailable_reasons
from harness.core.config import RunConfig
from harness.core.precision import resolve_precision
from harness.core.runner import Runner
from harness.errors import Unavailable
from harness.probes import cpu, provenance
from harness.render.tables import summary_table
from harness.render.verdicts import render_text
from harness.store.frame import records_to_frame

CPU = torch.device("cpu")
# /proc/cpuinfo flags of an AVX2-only AMD EPYC (Zen 2) and of a Sapphire Rapids Xeon, abridged.
AVX2_EPYC = frozenset("fpu sse2 avx f16c fma avx2 bmi2 sha_ni".split())
SAPPHIRE_RAPIDS = frozenset("avx2 avx512f avx512_bf16 avx512_fp16 amx_tile amx_bf16 "
                            "amx_int8".split())


@pytest.fixture(autouse=True)
def fresh_provenance():
    """Provenance is cached per process: a faked CPU must neither see the real one's fields
    nor leave its own to later tests."""
    provenance.collect.cache_clear()
    yield
    provenance.collect.cache_clear()


def fake_cpu(monkeypatch, flags: frozenset[str], onednn: bool = True) -> None:
    monkeypatch.setattr(cpu, "cpu_flags", lambda: flags)
    monkeypatch.setattr(cpu, "onednn_allows", lambda fmt: onednn)
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: True)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="the reason names the x86 instructions")
def test_an_avx2_cpu_refuses_bf16_naming_the_missing_instructions(monkeypatch):
    fake_cpu(monkeypatch, AVX2_EPYC)
    for name in ("amp", "amp-bf16"):  # amp means bf16 on the CPU
        with pytest.raises(Unavailable, match=r"no native bf16 instructions \(neither "
                           r"AVX512_BF16 nor AMX-BF16\).*--allow-emulated"):
            resolve_precision(name, CPU)
    with pytest.raises(Unavailable, match="no native fp16"):
        resolve_precision("amp-fp16", CPU)
    assert resolve_precision("fp32", CPU).emulated is False  # fp32 is never refused
    plan = resolve_precision("amp-bf16", CPU, allow_emulated=True)
    assert (plan.autocast_dtype, plan.emulated) == (torch.bfloat16, True)
    assert cpu.cpu_features()["cpu_native_bf16"] is False


def test_a_cpu_with_native_bf16_measures_it_unflagged(monkeypatch):
    fake_cpu(monkeypatch, SAPPHIRE_RAPIDS)
    plan = resolve_precision("amp", CPU)
    assert (plan.name, plan.autocast_dtype, plan.emulated) == ("amp-bf16", torch.bfloat16, False)
    assert resolve_precision("amp-fp16", CPU).emulated is False
    features = cpu.cpu_features()
    assert (features["cpu_native_bf16"], features["cpu_native_fp16"], features["cpu_amx"]) == (
        True, True, True)


def test_instructions_that_onednn_may_not_use_are_emulated(monkeypatch):
    fake_cpu(monkeypatch, SAPPHIRE_RAPIDS, onednn=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    with pytest.raises(Unavailable, match="ONEDNN_MAX_CPU_ISA=AVX2 caps oneDNN"):
        resolve_precision("amp-bf16", CPU)


def test_the_runner_records_a_refusal_and_an_asked_for_emulation(monkeypatch):
    fake_cpu(monkeypatch, AVX2_EPYC)
    cfg = dict(model="convnet", dataset="synthetic", batch_size=4, warmup_steps=1,
               timed_steps=2, repeats=1, eval_samples=16, train_samples=32,
               precision="amp-bf16", device="cpu")
    runner = Runner(run_id="t")
    refused = runner.run(RunConfig(**cfg))
    assert refused["status"] == "unavailable" and "no native bf16" in refused["error"]
    assert refused["cpu_native_bf16"] is False and refused["allow_emulated"] is False
    ran = runner.run(RunConfig(**cfg, allow_emulated=True))
    assert ran["status"] == "ok", ran["error"]
    assert ran["precision_emulated"] is True and ran["allow_emulated"] is True


def _run(tmp_path, *flags):
    out = tmp_path / "r.jsonl"
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--devices", "cpu", "--models", "convnet",
         "--batch-sizes", "8", "--optimizers", "sgd", "--steps", "2", "--repeats", "1",
         "--warmup", "1", "--eval-samples", "32", "--train-samples", "64", "--no-report",
         "--out", str(out), *flags], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="ONEDNN_MAX_CPU_ISA=AVX2 is an x86 cap")
def test_a_sweep_on_a_cpu_without_native_bf16_skips_amp_and_says_why(tmp_path):
    stdout, recs = _run(tmp_path, "--precisions", "fp32,amp")
    by = {r["precision"]: r for r in recs}
    assert by["fp32"]["status"] == "ok" and by["fp32"]["precision_emulated"] is None
    assert by["amp-bf16"]["status"] == "unavailable"
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in by["amp-bf16"]["error"]
    assert all(r["cpu_native_bf16"] is False for r in recs)
    # one note under the table, not the reason cut on every row
    assert "[1] see below" in stdout and "[1] 1 config not run here: this CPU has bf16" in stdout
    # (--allow-emulated's record: test_the_runner_records_a_refusal_and_an_asked_for_emulation)


def test_compare_warns_when_cpu_features_differ_and_skips_configs_unavailable_on_both():
    base = {"schema_version": 1, "run_id": "r", "model": "convnet", "dataset": "synthetic",
            "device": "cpu", "batch_size": 32, "precision": "fp32", "optimizer": "sgd",
            "status": "ok", "throughput": 100.0, "throughput_unit": "samples/s",
            "repeat_throughputs": [100.0, 101.0, 99.0, 100.5, 99.5], "cpu_model": "AMD EPYC",
            "cpu_capability": "AVX512", "cpu_native_bf16": True, "record_id": "a"}
    refused = {**base, "precision": "amp-bf16", "status": "unavailable", "throughput": None,
               "repeat_throughputs": None, "record_id": "b",
               "error": "Unavailable: this CPU has no native bf16 instructions"}
    cand = [{**base, "cpu_capability": "AVX2", "cpu_native_bf16": False},
            {**refused, "cpu_capability": "AVX2", "cpu_native_bf16": False}]
    result = compare_frames(records_to_frame([base, refused]), records_to_frame(cand))
    assert result["cpu_feature_differences"] == {
        "cpu_capability": {"baseline": ["AVX512"], "candidate": ["AVX2"]},
        "cpu_native_bf16": {"baseline": ["True"], "candidate": ["False"]}}
    amp = next(r for r in result["rows"] if r["config"]["precision"] == "amp-bf16")
    assert amp["verdict"] == "inconclusive" and amp["blocking"] is False
    assert result["summary"]["exit_status"] == 0  # the skipped config does not fail the gate
    text = render_text(result)
    assert "warning: the CPUs differ in features" in text and "runs on neither side" in text


def test_report_rows_name_the_features_and_group_the_reasons():
    frame = records_to_frame([
        {"model": "m", "status": "unavailable", "error": "Unavailable: no bf16",
         "cpu_capability": "AVX2", "cpu_native_bf16": False},
        {"model": "m", "status": "unavailable", "error": "Unavailable: no bf16"},
        {"model": "m", "status": "ok", "cpu_capability": "AVX512", "cpu_native_bf16": True,
         "cpu_amx": True}])
    assert unavailable_reasons(frame) == [("no bf16", 2)]
    words = list(cpu_feature_text(frame))
    assert words[0] == "AVX2, bf16 emulated" and words[2] == "AVX512, native bf16, AMX"
    assert pd.isna(words[1])
    assert summary_table(frame).endswith("[1] 2 configs not run here: no bf16")
