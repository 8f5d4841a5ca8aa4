"""``trainmark run --profile`` and ``trainmark explain``: profiles are taken outside the
measurements, and explain names the operator that made a step slower.

The slower candidate is the same config with one extra operator (``models.variants``: an MLP
whose forward also sorts a widened copy of its input when TRAINMARK_TEST_SLOW_OP is set), so the
operator explain must rank first is known in advance: ``aten::sort``.
"""

from __future__ import annotations

import json

import pytest

from harness.analysis.explain import explain_ops
from harness.cli import main
from harness.store.jsonl import read_records
from models.variants import SLOW_OP_ENV

SWEEP = ["--models", "test_slow_op", "--devices", "cpu", "--precisions", "fp32",
         "--optimizers", "sgd", "--batch-sizes", "32", "--steps", "3", "--warmup", "1",
         "--repeats", "2", "--eval-samples", "64", "--train-samples", "256", "--quiet",
         "--no-report"]


def test_explain_ops_by_hand():
    base = {"aten::mm": {"self_cpu_us": 100.0}, "aten::relu": {"self_cpu_us": 10.0}}
    cand = {"aten::mm": {"self_cpu_us": 110.0}, "aten::relu": {"self_cpu_us": 10.0},
            "aten::sort": {"self_cpu_us": 30.0}}
    first, second, third = explain_ops(base, cand)
    # net change +40 us: sort +30 (75%), mm +10 (25%), relu 0
    assert (first.name, first.change_us, first.share) == ("aten::sort", 30.0, 0.75)
    assert (second.name, second.change_us, second.share) == ("aten::mm", 10.0, 0.25)
    assert (third.name, third.change_us) == ("aten::relu", 0.0)


def test_device_time_is_used_where_the_profile_has_it():
    base = {"k": {"self_cpu_us": 5.0, "self_device_us": 100.0}}
    cand = {"k": {"self_cpu_us": 50.0, "self_device_us": 120.0}}
    [row] = explain_ops(base, cand)
    assert (row.baseline_us, row.candidate_us) == (100.0, 120.0)


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    """Two profiled runs of one config: the plain model, then with the extra sort."""
    tmp = tmp_path_factory.mktemp("explain")
    mp = pytest.MonkeyPatch()
    try:
        # One intra-op thread: on a loaded 2-core machine a thread of a parallel matmul that
        # is descheduled keeps the other spinning at the barrier, and that matmul's self time
        # then grew 400-fold (111 us -> 48 ms per step) in one suite run, outranking the sort.
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.delenv(SLOW_OP_ENV, raising=False)
        assert main(["run", *SWEEP, "--out", str(tmp / "base.jsonl"),
                     "--profile", str(tmp / "pb")]) == 0
        mp.setenv(SLOW_OP_ENV, "1")
        assert main(["run", *SWEEP, "--out", str(tmp / "cand.jsonl"),
                     "--profile", str(tmp / "pc")]) == 0
    finally:
        mp.undo()
    return tmp


def test_profiles_are_saved_per_record_with_the_phase_split(profiled):
    [rec] = read_records(profiled / "base.jsonl")
    assert rec["status"] == "ok" and rec["profile_steps"] == 5
    folder = profiled / "pb" / rec["record_id"]
    assert rec["profile_dir"] == str(folder.resolve())
    trace = json.loads((folder / "trace.json").read_text())
    names = {e.get("name") for e in trace["traceEvents"]}
    assert {"forward", "backward", "optimizer"} <= names  # the marked phases are in the trace
    assert {"aten::addmm", "aten::relu"} <= names  # so are the model's operators
    for phase in ("forward", "backward", "optimizer"):
        assert rec[f"profile_{phase}_ms"] > 0
    ops = json.loads((folder / "ops.json").read_text())
    assert ops["steps"] == 5 and all(op["self_cpu_us"] >= 0 for op in ops["ops"])
    # the plain model never sorts
    assert "aten::sort" not in {op["name"] for op in ops["ops"]}


def test_explain_names_the_operator_that_made_the_step_slower(profiled, capsys):
    assert main(["explain", str(profiled / "base.jsonl"), str(profiled / "cand.jsonl"),
                 "--format", "json"]) == 0
    [found] = json.loads(capsys.readouterr().out)
    top = found["operators"][0]
    assert top["name"] == "aten::sort" and top["baseline_us"] == 0.0
    assert top["change_us"] > 0 and found["net_change_us"] > 0
    assert main(["explain", str(profiled / "base.jsonl"), str(profiled / "cand.jsonl")]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[2].lstrip().startswith("aten::sort")


def test_compare_explain_explains_flagged_configs(profiled, capsys):
    code = main(["compare", str(profiled / "base.jsonl"), str(profiled / "cand.jsonl"),
                 "--explain", "--allow-inconclusive", "--threshold", "0"])
    out = capsys.readouterr().out
    # Flagged either way: throughput is inconclusive (2 + 2 repeats never reach p < 0.01;
    # allowed, so exit 0), unless the sort's buffers (up to +300% of the small host memory
    # training adds) make it a memory regression (exit 1). The exit status follows the verdict.
    assert ("1 regression(s)" in out and code == 1) or ("1 inconclusive" in out and code == 0), out
    assert "explain: 1 flagged config(s)" in out and "aten::sort" in out


def test_explain_without_profiles_is_a_usage_error(profiled, tmp_path, capsys):
    plain = tmp_path / "plain.jsonl"
    recs = [{k: v for k, v in r.items() if not k.startswith("profile")}
            for r in read_records(profiled / "base.jsonl")]
    plain.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert main(["explain", str(plain), str(profiled / "cand.jsonl")]) == 2
    assert "no config has a profile on both sides" in capsys.readouterr().err


def test_an_ab_worker_profiles_when_the_request_asks(tmp_path):
    import io

    from harness.core.suites import suite_path
    from harness.execution import ab_worker

    request = {**ab_worker.hello_request(str(suite_path("smoke")),
                                         {"models": ["test_slow_op"], "batch_sizes": [8]},
                                         str(tmp_path / "data"), False),
               "run_id": "r", "profile_dir": str(tmp_path / "prof")}
    out = tmp_path / "side.jsonl"
    stdin = io.StringIO(json.dumps(request) + "\n" + json.dumps(
        {"op": "run", "index": 0, "out": str(out), "annotate": {"ab_side": "baseline"}}) + "\n")
    assert ab_worker.serve(stdin, io.StringIO()) == 0
    [rec] = read_records(out)
    assert rec["status"] == "ok" and rec["profile_steps"] == 5
    assert (tmp_path / "prof" / rec["record_id"] / "ops.json").exists()


def test_the_pr_comment_holds_the_verdict_and_the_explanation(profiled, tmp_path):
    from harness.cli.ab import write_comment

    # an A/B folder: the verdict, and the profile round's records of both sides
    (tmp_path / "profile").mkdir()
    for side, name in (("baseline", "base.jsonl"), ("candidate", "cand.jsonl")):
        (tmp_path / "profile" / f"{side}.jsonl").write_text((profiled / name).read_text())
    md = tmp_path / "verdict.md"
    md.write_text("### trainmark ab main: **REGRESSION**\n")
    [rec] = read_records(profiled / "base.jsonl")
    flagged = {"rows": [{"config": {"model": rec["model"]}, "verdict": "regression"}]}
    body = write_comment(tmp_path, md, flagged, profiled=True).read_text()
    assert body.startswith("### trainmark ab main: **REGRESSION**")
    assert "Which operators changed" in body
    assert body.split("```")[1].strip().splitlines()[2].lstrip().startswith("aten::sort")
    # nothing flagged: the verdict alone
    calm = {"rows": [{"config": {"model": rec["model"]}, "verdict": "no change"}]}
    assert write_comment(tmp_path, md, calm, profiled=True).read_text() == md.read_text()
