"""``trainmark compare``: matching, verdicts, output formats and exit statuses, on constructed
results files (no training, no timing)."""

import json
import math

import pytest
from scipy import stats as sps

from harness.analysis.compare import Settings, compare_frames
from harness.cli import main
from harness.cli.verdict_options import parse_percent
from harness.errors import UserError
from harness.store.frame import load_results, records_to_frame
from harness.store.jsonl import read_records

MIB = 1024 * 1024
SAMPLES = [1000.0, 1010.0, 990.0, 1005.0, 995.0]
PROVENANCE = {"device_name": "Test CPU", "cpu_model": "Test CPU", "torch_version": "2.14.1",
              "cuda_version": None, "num_threads": 1, "driver_version": None,
              "git_commit": "abc123"}


def record(model="convnet", optimizer="sgd", factor=1.0, **over):
    rec = {
        "schema_version": 1, "run_id": "r", "record_id": f"{model}-{optimizer}",
        "timestamp": "2026-11-29T00:00:00+00:00",
        "model": model, "dataset": "synthetic", "device": "cpu", "batch_size": 32,
        "precision": "fp32", "optimizer": optimizer, "lr": 0.05, "seed": 0, "warmup_steps": 2,
        "timed_steps": 5, "repeats": 5, "eval_samples": 512, "train_samples": 1024,
        "data_seed": 0, "status": "ok", "error": None,
        "throughput": 1000.0 * factor, "throughput_unit": "samples/s",
        "repeat_throughputs": [s * factor for s in SAMPLES],
        "peak_memory_allocated_bytes": None, "peak_rss_bytes": 900 * MIB,
        "eval_accuracy": 0.9, **PROVENANCE,
    }
    rec.update(over)
    return rec


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


@pytest.fixture()
def files(tmp_path):
    def make(base, cand):
        return write(tmp_path / "base.jsonl", base), write(tmp_path / "cand.jsonl", cand)
    return make


def run(capsys, *argv):
    code = main(["compare", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_unchanged_results_exit_0(files, capsys):
    b, c = files([record(), record(optimizer="adam")], [record(), record(optimizer="adam")])
    code, out, _ = run(capsys, b, c)
    assert code == 0
    assert "0 regression(s)" in out and "2 no change" in out
    assert "convnet synthetic cpu bs=32 fp32 sgd" in out and "lr=" not in out


def test_a_twenty_percent_drop_exits_1_and_names_the_config(files, capsys):
    b, c = files([record(), record(optimizer="adam")],
                 [record(factor=0.8), record(optimizer="adam")])
    code, out, _ = run(capsys, b, c)
    assert code == 1
    assert "-20.0%" in out and "regression (throughput)" in out
    assert "REGRESSION convnet synthetic cpu bs=32 fp32 sgd" in out


def test_markdown_and_json_outputs(files, capsys, tmp_path):
    b, c = files([record()], [record(factor=0.8)])
    code, out, _ = run(capsys, b, c, "--format", "md", "--json-out", str(tmp_path / "v.json"))
    assert code == 1
    assert out.startswith("### trainmark compare: **REGRESSION**")
    assert "| config | baseline | candidate | change | 95% CI | p |" in out
    assert "**regression (throughput)**" in out
    data = json.loads((tmp_path / "v.json").read_text())
    assert data["summary"]["regression"] == 1 and data["summary"]["exit_status"] == 1
    code, out, _ = run(capsys, b, c, "--format", "json", "--md-out", str(tmp_path / "v.md"))
    row = json.loads(out)["rows"][0]
    assert row["throughput"]["p_value"] == pytest.approx(0.0079, abs=1e-4)
    assert row["throughput"]["n_baseline"] == 5 and row["failed"] == ["throughput"]
    assert (tmp_path / "v.md").read_text().startswith("### trainmark compare")


def test_improvement_and_threshold_option(files, capsys):
    b, c = files([record()], [record(factor=1.2)])
    code, out, _ = run(capsys, b, c)
    assert code == 0 and "1 improvement(s)" in out
    b, c = files([record()], [record(factor=0.97)])
    assert run(capsys, b, c)[0] == 0  # 3% is within the default 5%
    assert run(capsys, b, c, "--threshold", "2%")[0] == 1
    assert run(capsys, b, c, "--threshold", "2")[0] == 1  # a bare number is in percent


def test_memory_regression(files, capsys):
    b, c = files([record()], [record(peak_rss_bytes=1100 * MIB)])  # +22%, 200 MiB
    code, out, _ = run(capsys, b, c, "--format", "json")
    row = json.loads(out)["rows"][0]
    assert code == 1 and row["failed"] == ["memory"]
    assert row["memory"]["field"] == "peak_rss_bytes"
    assert run(capsys, b, c, "--memory-threshold", "25%")[0] == 0
    b, c = files([record()], [record(peak_rss_bytes=1000 * MIB)])  # +11% but only 100 MiB of RSS
    assert run(capsys, b, c)[0] == 0


def test_noisy_memory_must_change_significantly(files, capsys):
    # Host RSS that training added varies between identical processes (tens of MiB). A median
    # growth of 40% whose samples overlap is not significant: inconclusive, not a regression.
    rss = [60, 90, 130, 150, 95, 80, 140, 70]  # MiB, one per A/B round
    more = [50, 115, 75, 145, 195, 160, 130, 140]
    b, c = files([record(train_rss_bytes=m * MIB) for m in rss],
                 [record(train_rss_bytes=m * MIB) for m in more])
    code, out, _ = run(capsys, b, c, "--format", "json")
    memory = json.loads(out)["rows"][0]["memory"]
    assert memory["field"] == "train_rss_bytes" and memory["change"] > 0.05
    assert memory["p_value"] == pytest.approx(sps.mannwhitneyu(
        [m * MIB for m in rss], [m * MIB for m in more], alternative="two-sided").pvalue)
    assert memory["p_value"] > 0.01 and memory["verdict"] == "inconclusive" and code == 3
    assert "(inconclusive: varies between runs, p=" in json.loads(out)["rows"][0]["why"]
    # the same growth on every run (8 + 8 separated samples: p = 2/C(16, 8)) is a regression
    b, c = files([record(train_rss_bytes=(100 + i) * MIB) for i in range(8)],
                 [record(train_rss_bytes=(150 + i) * MIB) for i in range(8)])
    code, out, _ = run(capsys, b, c, "--format", "json")
    memory = json.loads(out)["rows"][0]["memory"]
    assert memory["p_value"] == pytest.approx(2 / math.comb(16, 8))
    assert (memory["verdict"], code) == ("regression", 1)


def test_accelerator_memory_uses_the_allocator_peak(files, capsys):
    b, c = files([record(peak_memory_allocated_bytes=100 * MIB)],
                 [record(peak_memory_allocated_bytes=120 * MIB, peak_rss_bytes=500 * MIB)])
    code, out, _ = run(capsys, b, c, "--format", "json")
    assert code == 1 and json.loads(out)["rows"][0]["memory"]["field"] == \
        "peak_memory_allocated_bytes"


def test_memory_judges_what_training_added_without_the_resident_dataset(files, capsys):
    # A dataset twice as large on the device: the allocator's peak grows by 400 MiB (+36%),
    # but training itself added the same 300 MiB: not a regression.
    b, c = files([record(peak_memory_allocated_bytes=1100 * MIB, dataset_device_bytes=800 * MIB,
                         train_memory_allocated_bytes=300 * MIB)],
                 [record(peak_memory_allocated_bytes=1500 * MIB, dataset_device_bytes=1200 * MIB,
                         train_memory_allocated_bytes=300 * MIB)])
    code, out, _ = run(capsys, b, c, "--format", "json")
    memory = json.loads(out)["rows"][0]["memory"]
    assert code == 0 and memory["field"] == "train_memory_allocated_bytes"
    assert memory["change"] == 0
    # On the CPU, an isolated worker's training RSS: +40 MiB of 100 is beyond the 32 MiB floor
    b, c = files([record(train_rss_bytes=100 * MIB)], [record(train_rss_bytes=140 * MIB)])
    code, out, _ = run(capsys, b, c, "--format", "json")
    row = json.loads(out)["rows"][0]
    assert code == 1 and row["memory"]["field"] == "train_rss_bytes"
    b, c = files([record(train_rss_bytes=100 * MIB)], [record(train_rss_bytes=120 * MIB)])
    assert run(capsys, b, c)[0] == 0  # +20%, but 20 MiB is within the floor


def test_a_baseline_measured_with_the_slowdown_knob_is_refused(files, capsys):
    b, c = files([record(injected_slowdown=0.1)], [record()])
    code, _, err = run(capsys, b, c)
    assert code == 2 and "test-only slowdown knob (TRAINMARK_INJECT_SLOWDOWN=0.1)" in err
    # as a candidate it is what the gate's own evidence is made of
    assert run(capsys, c, b)[0] != 2  # not refused


def test_accuracy_regression_beyond_tolerance(files, capsys):
    b, c = files([record()], [record(eval_accuracy=0.885)])
    code, out, _ = run(capsys, b, c)
    assert code == 1 and "regression (accuracy)" in out and "-1.5 pt" in out
    assert run(capsys, b, c, "--accuracy-tolerance", "2")[0] == 0


def test_ok_to_failed_is_a_regression_and_failed_to_ok_an_improvement(files, capsys):
    failed = record(status="oom", error="OutOfMemoryError: CUDA out of memory",
                    throughput=None, repeat_throughputs=None)
    b, c = files([record(), record(optimizer="adam", status="error", error="boom")],
                 [failed, record(optimizer="adam")])
    code, out, _ = run(capsys, b, c, "--format", "json")
    rows = {r["config"]["optimizer"]: r for r in json.loads(out)["rows"]}
    assert code == 1
    assert rows["sgd"]["verdict"] == "regression" and rows["sgd"]["failed"] == ["status"]
    assert "ok -> oom" in rows["sgd"]["why"]
    assert rows["adam"]["verdict"] == "improvement"


def test_too_few_repeats_are_inconclusive_and_exit_3_unless_allowed(files, capsys):
    # a 50% drop that 3 + 3 samples cannot call (smallest p 0.1): it must not pass as "ok"
    b, c = files([record(repeat_throughputs=SAMPLES[:3])],
                 [record(repeat_throughputs=[s * 0.5 for s in SAMPLES[:3]])])
    code, out, _ = run(capsys, b, c)
    assert code == 3 and "1 inconclusive" in out and "too few samples (3 + 3)" in out
    assert "INCONCLUSIVE convnet" in out and "exit 3: inconclusive verdicts remain" in out
    code, out, _ = run(capsys, b, c, "--allow-inconclusive")
    assert code == 0 and "1 inconclusive" in out and "exit 3" not in out
    code, out, _ = run(capsys, b, c, "--format", "md")
    assert code == 3 and out.startswith("### trainmark compare: **INCONCLUSIVE**")


def test_a_regression_outranks_an_inconclusive_verdict(files, capsys):
    b, c = files([record(), record(optimizer="adam", repeat_throughputs=SAMPLES[:3])],
                 [record(factor=0.8),
                  record(optimizer="adam", repeat_throughputs=[s * 0.5 for s in SAMPLES[:3]])])
    code, out, _ = run(capsys, b, c)
    assert code == 1 and "1 regression(s)" in out and "1 inconclusive" in out


def test_records_of_one_config_are_pooled_and_repeats_do_not_split_configs(files, capsys):
    # two baseline runs of 3 repeats + one candidate run of 5: 6 + 5 samples of one config
    b, c = files([record(repeats=3, repeat_throughputs=SAMPLES[:3]),
                  record(repeats=3, repeat_throughputs=SAMPLES[2:])],
                 [record(factor=0.8)])
    code, out, _ = run(capsys, b, c, "--format", "json")
    tp = json.loads(out)["rows"][0]["throughput"]
    assert code == 1 and (tp["n_baseline"], tp["n_candidate"]) == (6, 5)


def test_nothing_matched_exits_2(files, capsys):
    b, c = files([record(batch_size=32)], [record(batch_size=64)])
    code, _, err = run(capsys, b, c)
    assert code == 2 and "no config matched" in err and err.count("\n") == 1


def test_different_machines_exit_2_and_say_what_differs(files, capsys):
    b, c = files([record()], [record(device_name="NVIDIA H100", torch_version="2.4.0")])
    code, _, err = run(capsys, b, c)
    assert code == 2
    assert "device_name: 'Test CPU' vs 'NVIDIA H100'" in err
    assert "torch_version: '2.14.1' vs '2.4.0'" in err and "--allow-different-machines" in err
    code, out, _ = run(capsys, b, c, "--allow-different-machines")
    assert code == 0 and "warning: different machines" in out


def test_unknown_provenance_is_not_a_difference(files, capsys):
    b, c = files([record(num_threads=None)], [record()])
    assert run(capsys, b, c)[0] == 0


@pytest.mark.parametrize("argv, needle", [
    (["nope.jsonl", "nope2.jsonl"], "results file not found: nope.jsonl"),
    (["--threshold", "abc"], "--threshold takes a percentage"),
    (["--threshold", "150%"], "--threshold must be a percentage in [0, 100)"),
    (["--alpha", "2"], "--alpha must be in (0, 1)"),
    (["--format", "html"], "invalid choice: 'html'"),
])
def test_usage_errors_exit_2_with_one_line(files, capsys, argv, needle):
    b, c = files([record()], [record()])
    args = argv if argv[0].endswith(".jsonl") else [b, c, *argv]
    code, _, err = run(capsys, *args)
    assert code == 2 and needle in err and err.count("\n") == 1


def test_malformed_file_exits_2(tmp_path, files, capsys):
    b, _ = files([record()], [record()])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"model": "convnet"}\nnot json\n{}\n')
    code, _, err = run(capsys, b, str(bad))
    assert code == 2 and "bad.jsonl:2: malformed record" in err


def test_directories_stand_for_their_results_files(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write(tmp_path / "a" / "r1.jsonl", [record()])
    write(tmp_path / "a" / "r2.jsonl", [record(optimizer="adam")])
    write(tmp_path / "b" / "r.jsonl", [record(), record(optimizer="adam", factor=0.7)])
    assert run(capsys, str(tmp_path / "a"), str(tmp_path / "b"))[0] == 1
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, str(tmp_path / "empty"), str(tmp_path / "b"))
    assert code == 2 and "no .jsonl or .json results files" in err


def test_records_from_an_older_version_match_by_field_defaults(tmp_path):
    old = record()
    del old["data_seed"]  # an older writer did not record this axis: its default applies
    base = load_results([write(tmp_path / "b.jsonl", [old])])
    cand = load_results([write(tmp_path / "c.jsonl", [record()])])
    result = compare_frames(base, cand)
    assert result["summary"]["configs"] == 1 and result["only_in_baseline"] == []


def test_extra_axes_on_one_side(tmp_path, monkeypatch):
    # an axis a newer trainmark records but this version's RunConfig lacks
    monkeypatch.setattr("harness.analysis.matching.EXTRA_AXES", ("fused",))
    base = load_results([write(tmp_path / "b.jsonl", [record()])])
    one = load_results([write(tmp_path / "c1.jsonl", [record(fused=False)])])
    result = compare_frames(base, one)
    assert result["summary"]["configs"] == 1
    assert any("'fused' is recorded only in the candidate" in n for n in result["notes"])
    # with two values the axis must stay in the key: fused=True is a different config
    two = load_results([write(tmp_path / "c2.jsonl",
                              [record(fused=False), record(fused=True)])])
    with pytest.raises(UserError, match="no config matched"):
        compare_frames(base, two)
    both = load_results([write(tmp_path / "b2.jsonl",
                               [record(fused=False), record(fused=True, factor=0.5)])])
    result = compare_frames(both, two)
    assert result["summary"]["configs"] == 2 and "fused" in result["matched_on"]
    assert {r["label"].split()[-1] for r in result["rows"]} == {"fused=False", "fused=True"}


def test_parse_percent():
    assert parse_percent("5%", "--t") == pytest.approx(0.05)
    assert parse_percent("2.5", "--t") == pytest.approx(0.025)
    with pytest.raises(UserError):
        parse_percent("-1", "--t")


def test_settings_alpha_controls_significance(tmp_path):
    base = load_results([write(tmp_path / "b.jsonl", [record()])])
    cand = load_results([write(tmp_path / "c.jsonl", [record(factor=0.8)])])
    strict = compare_frames(base, cand, Settings(alpha=0.002))  # unreachable with 5 + 5
    assert strict["rows"][0]["verdict"] == "inconclusive"


def test_ab_records_are_compared_round_by_round(files, capsys):
    """Records of `trainmark ab` carry ab_round: the test pairs the sides round by round, so
    machine load that changes between rounds (here: half speed in some) does not hide 10%."""
    levels = [1.0, 0.5, 0.55, 1.0, 0.9, 0.5, 1.0, 0.6]
    base = [record(factor=lv, ab_round=r) for r, lv in enumerate(levels)]
    cand = [record(factor=lv / 1.1, ab_round=r) for r, lv in enumerate(levels)]
    b, c = files(base, cand)
    code, out, _ = run(capsys, b, c, "--format", "json")
    tp = json.loads(out)["rows"][0]["throughput"]
    assert code == 1 and tp["strata"] == 8 and tp["test"].startswith("Wilcoxon")
    assert tp["change"] == pytest.approx(1 / 1.1 - 1)
    assert tp["p_value"] == pytest.approx(2 / 256)  # eight rounds, all slower
    # the same samples without rounds: pooled, the load swings drown the change
    strip = [{k: v for k, v in r.items() if k != "ab_round"} for r in (*base, *cand)]
    b, c = files(strip[:len(base)], strip[len(base):])
    code, out, _ = run(capsys, b, c, "--format", "json")
    pooled = json.loads(out)["rows"][0]
    assert pooled["throughput"]["strata"] == 1
    # -9% is beyond the threshold but not significant pooled: inconclusive, exit 3
    assert (code, pooled["verdict"]) == (3, "inconclusive")


# ------------------------------------------------------------------ confirmations (trainmark ab)

def _result(*rows):
    return {"rows": [{"config": {"model": m}, "verdict": v, "why": "p=0.0078"} for m, v in rows],
            "summary": {}}


def test_a_confirmed_regression_stays_and_an_unconfirmed_one_is_inconclusive():
    from harness.analysis.confirmation import apply_confirmations

    result = _result(("convnet", "regression"), ("resnet20", "regression"),
                     ("transformer", "no change"))
    confirmations = [{"config": {"model": "convnet"}, "verdicts": ["regression", "regression"]},
                     {"config": {"model": "resnet20"}, "verdicts": ["no change"]}]
    out = apply_confirmations(result, confirmations)
    conv, res, tr = out["rows"]
    assert (conv["verdict"], conv["confirmed"]) == ("regression", True)
    assert "confirmed by 2 fresh re-measurement(s)" in conv["why"]
    assert (res["verdict"], res["confirmed"]) == ("inconclusive", False)
    assert "not confirmed when measured again in fresh rounds (no change)" in res["why"]
    assert "confirmed" not in tr
    s = out["summary"]
    assert (s["regression"], s["inconclusive"], s["no change"], s["confirmed"]) == (1, 1, 1, 1)
    assert s["exit_status"] == 1


def test_when_no_regression_is_confirmed_the_gate_exits_3_or_0_if_allowed():
    from harness.analysis.confirmation import apply_confirmations

    def run(allow):
        return apply_confirmations(_result(("convnet", "regression")),
                                   [{"config": {"model": "convnet"}, "verdicts": ["no change"]}],
                                   allow_inconclusive=allow)["summary"]["exit_status"]

    assert (run(False), run(True)) == (3, 0)
    # without confirmations the verdict is left as it was
    untouched = _result(("convnet", "regression"))
    assert apply_confirmations(untouched, []) is untouched and "confirmed" not in \
        untouched["rows"][0]


def test_confirmations_default_to_failing_the_gate_on_an_unconfirmed_regression():
    from harness.analysis.confirmation import apply_confirmations

    out = apply_confirmations(_result(("convnet", "regression")),
                              [{"config": {"model": "convnet"}, "verdicts": ["no change"]}])
    assert out["summary"]["exit_status"] == 3  # inconclusive is not allowed unless asked for


def test_confirmations_touch_only_re_measured_regressions_and_extend_the_why():
    from harness.analysis.confirmation import apply_confirmations

    result = _result(("transformer", "no change"), ("resnet20", "regression"),
                     ("convnet", "regression"), ("mlp", "regression"))
    confirmations = [
        {"config": {"model": "transformer"}, "verdicts": ["regression"]},  # was no regression
        {"config": {"model": "resnet20"}, "verdicts": []},  # nothing re-measured
        {"config": {"model": "convnet"}, "verdicts": ["regression", "no change"]},
        {"config": {"model": "mlp"}, "verdicts": ["regression"]}]
    tr, res, conv, mlp = apply_confirmations(result, confirmations)["rows"]
    assert tr == {"config": {"model": "transformer"}, "verdict": "no change", "why": "p=0.0078"}
    assert res == {"config": {"model": "resnet20"}, "verdict": "regression", "why": "p=0.0078"}
    assert (conv["verdict"], conv["confirmed"], conv["confirmations"]) == (
        "inconclusive", False, ["regression", "no change"])
    assert conv["why"] == ("p=0.0078; not confirmed when measured again in fresh rounds "
                           "(regression, no change)")
    assert (mlp["verdict"], mlp["confirmed"]) == ("regression", True)
    assert mlp["why"] == "p=0.0078; confirmed by 1 fresh re-measurement(s)"
    s = result["summary"]
    assert (s["regression"], s["inconclusive"], s["no change"], s["improvement"],
            s["confirmed"], s["exit_status"]) == (2, 1, 1, 0, 1, 1)


# ------------------------------------------------------------------ compare --confirm (real runs)

# 7 repeats: Mann-Whitney's smallest p is then 2/3432, so a whole-region noise outlier on one
# side does not hide a real change at alpha 0.01 (at 5 repeats perfect separation is needed).
TINY = ["--models", "convnet", "--devices", "cpu", "--batch-sizes", "16", "--precisions", "fp32",
        "--optimizers", "sgd", "--warmup", "2", "--steps", "20", "--repeats", "7",
        "--eval-samples", "64", "--train-samples", "256", "--no-report"]


# 85%: the knob below cuts throughput to a fifteenth (-93%), while a change of load on a shared
# 2-core machine between two processes has been seen to move one process by about 1.6x (CI once
# measured a base run at 2,038 samples/s that runs at 3,200 here, hiding a 1.5x slowdown). A
# confirmation needs half the threshold (42.5%, i.e. 1.74x), so such a swing cannot confirm.
COMPARE = ["compare", "base.jsonl", "cand.jsonl", "--threshold", "85%"]


@pytest.mark.long  # about 2 minutes: three sweeps of fresh workers, one 15 times slowed
def test_compare_confirm_re_measures_here_and_keeps_only_what_reproduces(workdir, monkeypatch,
                                                                         capsys):
    """A candidate recorded with every timed step slowed 14-fold (throughput x 1/15) is a
    regression; re-measured in this tree without the slowdown it is not confirmed (exit 3, or 0
    when inconclusive is allowed); re-measured with the slowdown still in the environment it is
    (exit 1). The threshold is 85%: below the 93% drop, and its half (the confirmation's bar)
    above what a change of load between two processes of the same code does on a shared
    machine."""
    assert main(["run", *TINY, "--out", "base.jsonl"]) == 0
    monkeypatch.setenv("TRAINMARK_INJECT_SLOWDOWN", "14")  # throughput x 1/15
    assert main(["run", *TINY, "--out", "cand.jsonl"]) == 0
    (cand,) = read_records("cand.jsonl")
    assert cand["injected_slowdown"] == 14  # the knob reached the worker
    assert main(COMPARE) == 1
    capsys.readouterr()

    code = main([*COMPARE, "--confirm", "1", "--confirm-dir",
                 "again", "--format", "json"])
    verdict = json.loads(capsys.readouterr().out)
    assert code == 1, verdict  # the slowdown is still set: the fresh worker is slow again
    (row,) = verdict["rows"]
    assert row["verdict"] == "regression" and row["confirmed"] is True
    replays = [json.loads(line) for line in (workdir / "again" / "confirm-1.jsonl").open()]
    assert len(replays) == 1 and replays[0]["replay_of"] is not None

    monkeypatch.delenv("TRAINMARK_INJECT_SLOWDOWN")
    assert main([*COMPARE, "--confirm", "1", "--confirm-dir",
                 "again2"]) == 3
    assert "not confirmed" in capsys.readouterr().out
    assert main([*COMPARE, "--confirm", "1", "--confirm-dir",
                 "again3", "--allow-inconclusive"]) == 0


def test_compare_confirm_refuses_a_candidate_from_another_machine(files, capsys, tmp_path,
                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    b, c = files([record()], [record(factor=0.5)])
    code, _, err = run(capsys, b, c, "--confirm", "1")
    assert code == 2
    assert "comes from another one" in err and "test-cpu" in err
    assert not (tmp_path / "results").exists()  # nothing measured, nothing written


# ------------------------------------------------------------------ compare_frames in process

def _compare(base, cand, **settings):
    return compare_frames(records_to_frame(base), records_to_frame(cand), Settings(**settings))


def _row(base, cand, **settings):
    (row,) = _compare(base, cand, **settings)["rows"]
    return row


def _foreign(name, factor=1.0):
    """A pytest-benchmark record of a plain function (store.pytest_bench): no model, no memory,
    no accuracy, only calls/s."""
    return {"schema_version": 1, "benchmark": name, "status": "ok", "error": None,
            "throughput": 1000.0 * factor, "throughput_unit": "calls/s",
            "repeat_throughputs": [s * factor for s in SAMPLES], **PROVENANCE}


def test_a_row_reports_every_figure_it_judged_and_why():
    # memory 900 -> 1100 MiB: +200/900 = +22.2% (one exact value per side: no p-value);
    # accuracy 0.9 -> 0.8: -0.1 = -10.0 points, beyond the 1-point tolerance
    row = _row([record()], [record(eval_accuracy=0.8, peak_rss_bytes=1100 * MIB)])
    assert row["unit"] == "samples/s" and row["records"] == [1, 1]
    assert row["status"] == {"baseline": "ok", "candidate": "ok", "error": None}
    assert row["memory"] == {"field": "peak_rss_bytes", "baseline": 900 * MIB,
                             "candidate": 1100 * MIB, "change": pytest.approx(200 / 900),
                             "p_value": None, "verdict": "regression"}
    assert row["accuracy"] == {"baseline": 0.9, "candidate": 0.8,
                               "change": pytest.approx(-0.1), "verdict": "regression"}
    assert row["verdict"] == "regression" and row["failed"] == ["memory", "accuracy"]
    assert row["why"] == ("memory +22.2% (regression); accuracy -10.0 pt (regression); "
                          f"throughput: {row['throughput']['reason']}")


def test_an_unchanged_row_explains_only_its_throughput():
    row = _row([record()], [record()])
    assert row["memory"]["change"] == 0 and row["memory"]["verdict"] == "no change"
    assert row["verdict"] == "no change" and row["failed"] == []
    assert row["why"] == f"throughput: {row['throughput']['reason']}"


def test_the_result_is_json_ready_and_describes_both_sides():
    # Int64 columns hand out NumPy scalars, which json.dumps refuses: the config must hold
    # plain Python values
    base = [record(source="base/a.jsonl"), record(source="base/b.jsonl", git_commit="def456")]
    result = _compare(base, [record(source="cand.jsonl")])
    assert json.loads(json.dumps(result, allow_nan=False))["rows"][0]["config"]["batch_size"] == 32
    assert result["baseline"] == {
        "records": 2, "sources": ["base/a.jsonl", "base/b.jsonl"],
        "git_commit": ["abc123", "def456"], "device_name": ["Test CPU"],
        "cpu_model": ["Test CPU"], "driver_version": [], "torch_version": ["2.14.1"],
        "torchvision_version": [], "cuda_version": [], "cudnn_version": [],
        "num_threads": ["1"], "host_heap": [], "cpu_capability": [], "cpu_native_bf16": [],
        "cpu_native_fp16": [], "cpu_amx": []}
    assert result["candidate"]["records"] == 1 and result["candidate"]["sources"] == ["cand.jsonl"]


def test_status_changes_decide_alone_and_quote_the_error():
    oom = "OutOfMemoryError: CUDA out of memory"
    # an error that ends in ": " must be quoted whole (a trailing ": " is not stripped from it)
    onnx = "UnsupportedOperatorError: aten::foo cannot be exported to ONNX: "
    base = [record(), record(optimizer="adam", status="error", error="boom"),
            record(optimizer="rmsprop", status="error", error="boom"),
            record(optimizer="lamb"), record(optimizer="adamw"), record(optimizer="adagrad")]
    cand = [record(status="oom", error=oom, throughput=None, repeat_throughputs=None),
            record(optimizer="adam"),
            record(optimizer="rmsprop", status="oom", throughput=None, repeat_throughputs=None),
            record(optimizer="lamb", status=None, throughput=None, repeat_throughputs=None),
            record(optimizer="adamw", status="error", error=onnx, throughput=None,
                   repeat_throughputs=None),
            # one failed record among the config's records fails the config
            record(optimizer="adagrad"),
            record(optimizer="adagrad", status="error", error="boom2", throughput=None,
                   repeat_throughputs=None)]
    result = _compare(base, cand)
    rows = {r["config"]["optimizer"]: r for r in result["rows"]}
    sgd = rows["sgd"]
    assert (sgd["verdict"], sgd["failed"], sgd["why"]) == ("regression", ["status"],
                                                           f"ok -> oom: {oom}")
    assert sgd["status"] == {"baseline": "ok", "candidate": "oom", "error": oom}
    adam = rows["adam"]
    assert (adam["verdict"], adam["failed"], adam["why"]) == ("improvement", [], "error -> ok")
    assert adam["status"] == {"baseline": "error", "candidate": "ok", "error": "boom"}
    rms = rows["rmsprop"]
    assert (rms["verdict"], rms["failed"], rms["why"]) == (
        "inconclusive", [], "not ok on both sides (error / oom)")
    assert rms["status"]["error"] == "boom"  # the candidate has none: the baseline's is shown
    # a record without a status is not ok; no error text leaves no dangling ": "
    assert rows["lamb"]["why"] == "ok -> unknown" and rows["lamb"]["status"]["candidate"] == \
        "unknown"
    assert rows["adamw"]["why"] == f"ok -> error: {onnx}"  # quoted whole
    adagrad = rows["adagrad"]
    assert (adagrad["verdict"], adagrad["why"], adagrad["records"]) == (
        "regression", "ok -> error: boom2", [1, 2])
    summary = result["summary"]
    assert (summary["regression"], summary["improvement"], summary["inconclusive"],
            summary["no change"], summary["exit_status"]) == (4, 1, 1, 0, 1)


def test_the_unit_is_the_candidates_else_the_baselines():
    rows = {r["config"]["optimizer"]: r for r in _compare(
        [record(), record(optimizer="adam")],
        [record(throughput_unit="tokens/s"), record(optimizer="adam", throughput_unit=None)],
    )["rows"]}
    assert (rows["sgd"]["unit"], rows["adam"]["unit"]) == ("tokens/s", "samples/s")


def test_accuracy_is_the_median_of_the_pooled_records():
    # baseline 0.7, 0.8, 0.9, 0.95 (and one unmeasured): median (0.8 + 0.9) / 2 = 0.85;
    # candidate 0.6, 0.8, 0.9: median 0.8; change -0.05, beyond the 1-point tolerance
    base = [record(eval_accuracy=a) for a in (0.9, 0.8, None, 0.7, 0.95)]
    cand = [record(eval_accuracy=a) for a in (0.6, 0.9, 0.8)]
    acc = _row(base, cand)["accuracy"]
    assert acc["baseline"] == pytest.approx(0.85) and acc["candidate"] == pytest.approx(0.8)
    assert acc["change"] == pytest.approx(-0.05) and acc["verdict"] == "regression"


def test_accuracy_measured_on_one_side_only_is_inconclusive_and_on_neither_no_change():
    row = _row([record()], [record(eval_accuracy=None)])
    assert row["accuracy"] == {"baseline": 0.9, "candidate": None, "change": None,
                               "verdict": "inconclusive"}
    assert row["verdict"] == "inconclusive"
    # an inconclusive row says why, not only the throughput's "within 5%" (which reads as a pass)
    assert row["why"].startswith("accuracy (inconclusive: measured on the baseline only); ")
    row = _row([record(eval_accuracy=None)], [record(eval_accuracy=None)])
    assert row["accuracy"]["verdict"] == "no change" and row["verdict"] == "no change"


def test_memory_judges_the_first_figure_both_sides_have():
    # the baseline alone has training RSS: the peak RSS both have (900 MiB each) is judged
    row = _row([record(train_rss_bytes=100 * MIB)], [record()])
    assert row["memory"]["field"] == "peak_rss_bytes" and row["memory"]["verdict"] == "no change"


def test_memory_measured_on_one_side_only_is_inconclusive():
    row = _row([record()], [record(peak_rss_bytes=None)])
    assert row["memory"] == {"field": None, "baseline": None, "candidate": None, "change": None,
                             "p_value": None, "verdict": "inconclusive"}
    assert row["verdict"] == "inconclusive"
    assert row["why"].startswith("memory (inconclusive: measured on one side only); ")
    # a function benchmark measures no memory on either side: nothing to judge
    row = _row([_foreign("test_matmul")], [_foreign("test_matmul")])
    assert row["memory"]["verdict"] == "no change" and row["accuracy"]["verdict"] == "no change"


def test_memory_that_varies_with_too_few_runs_to_test_is_inconclusive():
    # baseline 100 and 102 MiB, candidate 150: two distinct values on one side, so the change
    # must be significant, and 2 + 1 samples cannot be (smallest p 2/C(3, 1) = 0.67).
    # Median 101 -> 150 MiB: +49/101 = +48.5%
    row = _row([record(train_rss_bytes=100 * MIB), record(train_rss_bytes=102 * MIB)],
               [record(train_rss_bytes=150 * MIB)])
    mem = row["memory"]
    assert (mem["field"], mem["baseline"], mem["candidate"]) == ("train_rss_bytes", 101 * MIB,
                                                                 150 * MIB)
    assert mem["p_value"] is None and mem["verdict"] == "inconclusive"
    assert row["why"].startswith("memory +48.5% (inconclusive: varies between runs); throughput")


def test_memory_significance_uses_the_settings_alpha():
    # 4 + 4 separated samples: p = 2/C(8, 4) = 2/70 = 0.029, significant at alpha 0.05
    # (though never at the default 0.01)
    base = [record(train_rss_bytes=(100 + i) * MIB) for i in range(4)]
    cand = [record(train_rss_bytes=(150 + i) * MIB) for i in range(4)]
    mem = _row(base, cand, alpha=0.05)["memory"]
    assert mem["p_value"] == pytest.approx(2 / math.comb(8, 4))
    assert mem["verdict"] == "regression"
    # a p-value equal to alpha is not significant (p < alpha is)
    rss_b, rss_c = [100, 101, 102, 103, 110], [104, 150, 151, 152, 153]
    p = sps.mannwhitneyu([m * MIB for m in rss_b], [m * MIB for m in rss_c],
                         alternative="two-sided").pvalue
    mem = _row([record(train_rss_bytes=m * MIB) for m in rss_b],
               [record(train_rss_bytes=m * MIB) for m in rss_c], alpha=float(p))["memory"]
    assert mem["p_value"] == pytest.approx(p) and mem["verdict"] == "inconclusive"


def test_records_without_per_repeat_samples_contribute_their_throughput():
    # one sample per record, from "throughput": 5 + 5 separated samples, -20%
    base = [record(throughput=s, repeat_throughputs=None) for s in SAMPLES]
    cand = [record(throughput=0.8 * s, repeat_throughputs=[]) for s in SAMPLES]
    tp = _row(base, cand)["throughput"]
    assert (tp["n_baseline"], tp["n_candidate"]) == (5, 5)
    assert tp["baseline_median"] == 1000.0 and tp["candidate_median"] == pytest.approx(800.0)
    assert tp["verdict"] == "regression"


def test_rounds_are_paired_only_when_both_sides_share_them():
    # a stored baseline without rounds against an A/B candidate: pooled, 5 vs 2 x 5 samples
    row = _row([record()], [record(ab_round=0), record(ab_round=1)])
    assert (row["throughput"]["strata"], row["throughput"]["test"]) == (1, "Mann-Whitney U")
    assert (row["throughput"]["n_baseline"], row["throughput"]["n_candidate"]) == (5, 10)
    # rounds of two different A/B runs that share no round number: pooled too
    row = _row([record(ab_round=0), record(ab_round=1)], [record(ab_round=2), record(ab_round=3)])
    assert row["throughput"]["strata"] == 1 and row["throughput"]["n_candidate"] == 10


def test_paired_rounds_use_the_settings_threshold_and_alpha():
    levels = [1.0, 0.5, 0.55, 1.0, 0.9, 0.5, 1.0, 0.6]
    base = [record(factor=lv, ab_round=r) for r, lv in enumerate(levels)]
    cand = [record(factor=lv / 1.1, ab_round=r) for r, lv in enumerate(levels)]
    # -9.1% in every round (p = 2/2^8) is within a 20% threshold
    tp = _row(base, cand, threshold=0.2)["throughput"]
    assert tp["strata"] == 8 and tp["verdict"] == "no change"
    # six rounds all slower: p = 2/2^6 = 0.031, significant at alpha 0.05 only
    tp = _row(base[:6], cand[:6], alpha=0.05)["throughput"]
    assert tp["p_value"] == pytest.approx(2 / 2 ** 6) and tp["verdict"] == "regression"


def test_labels_show_only_the_axes_that_tell_configs_apart():
    # lr differs between convnet and mlp but follows from the model: not shown. The unmatched
    # configs differ from matched ones in seed (baseline) and data_seed (candidate): shown there.
    base = [record(), record(model="mlp", lr=0.1), record(seed=1)]
    cand = [record(), record(model="mlp", lr=0.1), record(model="mlp", lr=0.1, data_seed=3)]
    result = _compare(base, cand)
    assert [r["label"] for r in result["rows"]] == ["convnet synthetic cpu bs=32 fp32 sgd",
                                                    "mlp synthetic cpu bs=32 fp32 sgd"]
    assert result["only_in_baseline"] == ["convnet synthetic cpu bs=32 fp32 sgd data_seed=0 seed=1"]
    assert result["only_in_candidate"] == ["mlp synthetic cpu bs=32 fp32 sgd data_seed=3 seed=0"]


def test_a_function_benchmark_is_labelled_by_its_name():
    base = [_foreign("test_matmul"), record(benchmark="test_train")]
    cand = [_foreign("test_matmul"), record(benchmark="test_train")]
    result = _compare(base, cand)
    assert "benchmark" in result["matched_on"]
    # a training record that also names a benchmark keeps its config label
    assert sorted(r["label"] for r in result["rows"]) == ["convnet synthetic cpu bs=32 fp32 sgd",
                                                          "test_matmul"]


def test_an_axis_recorded_only_in_the_baseline_is_noted(monkeypatch):
    result = _compare([record(benchmark="test_x")], [record()])
    assert result["notes"] == ["'benchmark' is recorded only in the baseline ('test_x'); "
                               "ignored for matching"]
    assert result["summary"]["configs"] == 1 and "benchmark" not in result["matched_on"]
    # a list-valued axis (JSON has no tuples) is hashable once read, and matches
    monkeypatch.setattr("harness.analysis.matching.EXTRA_AXES", ("params",))
    result = _compare([record(params=[16, "relu"])], [record(params=[16, "relu"])])
    assert result["rows"][0]["config"]["params"] == (16, "relu")


def test_refusals_say_why_in_full():
    with pytest.raises(UserError) as exc:
        _compare([record(injected_slowdown=0.1)], [record()])
    assert str(exc.value) == ("the baseline holds 1 record(s) measured with the test-only "
                              "slowdown knob (TRAINMARK_INJECT_SLOWDOWN=0.1); it cannot be a "
                              "baseline")
    with pytest.raises(UserError) as exc:
        _compare([record(), record(optimizer="adam", torch_version="2.14.2")],
                 [record(device_name="Other CPU", torch_version="2.15.0"),
                  record(optimizer="adam", device_name="Other CPU", torch_version="2.15.1")])
    assert str(exc.value) == (
        "baseline and candidate come from different machines or software (device_name: "
        "'Test CPU' vs 'Other CPU'; torch_version: '2.14.1/2.14.2' vs '2.15.0/2.15.1'); pass "
        "--allow-different-machines to compare anyway")
    with pytest.raises(UserError) as exc:
        _compare([record(batch_size=32)], [record(batch_size=64)])
    assert str(exc.value) == (
        "no config matched: the baseline has 1 configs, the candidate 1; they share no "
        "batch_size 32 vs 64")
    # an old baseline with a fixed warm-up against a candidate that warmed up until settled
    with pytest.raises(UserError) as exc:
        _compare([record(warmup_steps=2, timed_steps=5)], [record(warmup_steps=None)])
    assert str(exc.value).endswith("they share no warmup_steps 2 vs unset")
    # every field shares a value, but no pair of configs agrees on all of them
    with pytest.raises(UserError) as exc:
        _compare([record(batch_size=32), record(optimizer="adam", batch_size=64)],
                 [record(batch_size=64), record(optimizer="adam", batch_size=32)])
    assert str(exc.value).endswith("the candidate 2; no config agrees on every field")


def test_improvements_of_memory_and_accuracy_are_named_in_the_why():
    # memory 900 -> 600 MiB: -300/900 = -33.3%; accuracy 0.9 -> 0.95: +5.0 points
    row = _row([record()], [record(eval_accuracy=0.95, peak_rss_bytes=600 * MIB)])
    assert row["verdict"] == "improvement" and row["failed"] == []
    assert row["why"] == ("memory -33.3% (improvement); accuracy +5.0 pt (improvement); "
                          f"throughput: {row['throughput']['reason']}")


def test_accuracy_measured_on_the_candidate_only_says_so():
    row = _row([record(eval_accuracy=None)], [record()])
    assert row["accuracy"]["verdict"] == "inconclusive"
    assert row["why"].startswith("accuracy (inconclusive: measured on the candidate only); ")
