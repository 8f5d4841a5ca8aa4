"""The pure analysis behind reports: machines, matching, ratios, spreads, escaping helpers."""

from __future__ import annotations

import pandas as pd
import pytest

from harness.analysis import report_data as rd
from harness.analysis.hardware import hardware_comparison, match_key, resolve_baseline
from harness.errors import UserError
from harness.render.document import cell, markdown_table, md_text
from harness.render.figures import report_charts
from harness.store.frame import records_to_frame
from tests.test_report import markdown_tables


def rec(host="h1", device_name="GPU A", model="convnet", bs=32, precision="fp32",
        optimizer="sgd", throughput=100.0, status="ok", **extra):
    return {"host": host, "device_name": device_name, "model": model, "dataset": "synthetic",
            "batch_size": bs, "precision": precision, "optimizer": optimizer,
            "status": status, "throughput": throughput if status == "ok" else None,
            "throughput_unit": "samples/s", "repeat_throughputs": [throughput] * 3,
            "peak_memory_allocated_bytes": 64 * 2**20, "eval_accuracy": 0.5, **extra}


def frame(*records) -> pd.DataFrame:
    return rd.prepare(records_to_frame(list(records)))


def test_machine_labels_add_the_host_only_where_device_names_collide():
    df = frame(rec(host="a", device_name="H100"), rec(host="b", device_name="H100"),
               rec(host="a", device_name="EPYC"), rec(host=None, device_name=None))
    assert list(df["machine"]) == ["H100 @ a", "H100 @ b", "EPYC", "unknown device"]


def test_amp_matches_by_intent_unless_a_machine_ran_both_variants():
    df = frame(rec(precision="amp-bf16", throughput=100.0),
               rec(host="g", device_name="GPU B", precision="amp-fp16", throughput=300.0))
    table = hardware_comparison(df).table
    assert list(table["precision"]) == ["amp-bf16 / amp-fp16"]
    assert table["GPU B × ref"].iloc[0] == pytest.approx(3.0)

    both = frame(rec(precision="amp-bf16", throughput=100.0),
                 rec(precision="amp-fp16", throughput=150.0),
                 rec(host="g", device_name="GPU B", precision="amp-fp16", throughput=300.0),
                 rec(host="g", device_name="GPU B", precision="amp-bf16", throughput=200.0))
    cmp = hardware_comparison(both)
    ratios = dict(zip(cmp.table["precision"], cmp.table["GPU B × ref"], strict=True))
    assert ratios == pytest.approx({"amp-bf16": 2.0, "amp-fp16": 2.0})
    assert cmp.only_some.empty


def test_optional_axes_split_configs_only_where_they_vary():
    old = rec(throughput=100.0)  # an older file without the axis
    new = rec(host="g", device_name="GPU B", throughput=200.0, deterministic=False)
    assert match_key(frame(old, new)) == list(rd.BASE_KEY)
    assert len(hardware_comparison(frame(old, new)).table) == 1

    eager = rec(throughput=100.0, compile=False)
    compiled = rec(host="g", device_name="GPU B", throughput=250.0, compile=True)
    cmp = hardware_comparison(frame(eager, compiled))
    assert "compile" in cmp.key and cmp.table.empty  # never compare eager with compiled
    assert sorted(cmp.only_some["missing on"]) == ["GPU A", "GPU B"]


def test_sharding_and_checkpointing_are_axes_of_the_comparison():
    # The cpu-fsdp suite on two machines: DDP and FSDP, with and without checkpointing, are
    # four configs, never one median of the four.
    axes = [("ddp", "none"), ("fsdp", "none"), ("ddp", "selective"), ("fsdp", "selective")]
    df = frame(*[rec(host=h, device_name=d, throughput=t * (i + 1), parallel=p,
                     activation_checkpointing=ac)
                 for h, d, t in (("a", "Xeon", 100.0), ("b", "EPYC", 150.0))
                 for i, (p, ac) in enumerate(axes)])
    cmp = hardware_comparison(df)
    assert {"parallel", "activation_checkpointing"} <= set(cmp.key)
    assert len(cmp.table) == 4 and list(cmp.table["EPYC × ref"]) == pytest.approx([1.5] * 4)


def test_relative_throughput_is_a_geometric_mean_and_repeats_use_the_median():
    df = frame(rec(bs=32, throughput=100.0), rec(bs=64, throughput=100.0),
               rec(host="g", device_name="GPU B", bs=32, throughput=200.0),
               rec(host="g", device_name="GPU B", bs=64, throughput=800.0),
               rec(host="g", device_name="GPU B", bs=64, throughput=10.0, seed=1),
               rec(host="g", device_name="GPU B", bs=64, throughput=900.0, seed=2))
    cmp = hardware_comparison(df)
    gpu = cmp.relative[cmp.relative["machine"] == "GPU B"].iloc[0]
    assert gpu["relative throughput"] == pytest.approx((2.0 * 8.0) ** 0.5)  # median of seeds: 800
    assert cmp.relative[cmp.relative["machine"] == "GPU A"]["relative throughput"].iloc[0] == 1.0


def test_resolve_baseline_by_label_host_or_file_and_a_clear_error():
    df = frame(rec(), rec(host="g", device_name="GPU B"))
    df["source"] = ["a.jsonl", "results/b.jsonl"]
    assert resolve_baseline(df, None) == "GPU A"
    assert resolve_baseline(df, "gpu b") == "GPU B"
    assert resolve_baseline(df, "g") == "GPU B"
    assert resolve_baseline(df, "b.jsonl") == "GPU B"
    with pytest.raises(UserError, match=r"'nope' matches no results file or machine; valid: GPU A"):
        resolve_baseline(df, "nope")


def test_summary_failures_speedup_and_repeat_spread():
    df = frame(rec(bs=32, throughput=100.0), rec(bs=64, throughput=180.0, eval_accuracy=0.3),
               rec(bs=64, precision="amp-bf16", throughput=270.0),
               rec(bs=128, status="oom", error="OutOfMemoryError: boom"),
               {**rec(bs=16, throughput=100.0), "repeat_throughputs": [90.0, 100.0, "x", 125.0]})
    summary = rd.model_summary(df)
    assert summary.loc[0, ["best throughput", "batch size", "precision"]].tolist() == [
        270.0, 64, "amp-bf16"]
    assert summary.loc[0, "ok / configs"] == "4 / 5"
    fails = rd.failures_table(df)
    assert fails[["status", "error"]].values.tolist() == [["oom", "OutOfMemoryError: boom"]]
    speed = rd.amp_speedup(df)
    assert speed["speedup"].tolist() == pytest.approx([1.5])
    spread = rd.repeat_spread(df)
    pcts = spread[spread["config"] == "bs 16 fp32 sgd"]["step_time_pct"].tolist()
    assert pcts == pytest.approx([100 * (100 / 90 - 1), 0.0, 100 * (100 / 125 - 1)])


def test_power_gives_items_per_joule_and_cpu_memory_falls_back_to_rss():
    df = frame(rec(throughput=700.0, power_w_mean=350.0),
               rec(throughput=100.0, samples_per_joule=5.0),
               rec(throughput=100.0, power_w_mean=0.0, peak_memory_allocated_bytes=None,
                   peak_rss_bytes=3 * 2**20))
    assert df["per_watt"].tolist()[:2] == [2.0, 5.0] and pd.isna(df["per_watt"].iloc[2])
    assert df["memory_mib"].tolist() == [64.0, 64.0, 3.0]
    assert df["memory_kind"].tolist() == ["allocator", "allocator", "host RSS"]


def test_figures_draw_hostile_labels_without_parsing_them():
    df = frame(rec(device_name="GPU $\\frac{1}{", precision="fp32"),
               rec(device_name="GPU $\\frac{1}{", precision="amp-fp16", throughput=150.0),
               rec(host="g", device_name="<b>$x^", throughput=50.0))
    charts = report_charts(df, hardware_comparison(df))
    assert [c.name for c in charts] == ["throughput", "amp_speedup", "memory", "accuracy",
                                        "step_time_spread", "relative_throughput"]
    assert all(c.png.startswith(b"\x89PNG") for c in charts)


def test_markdown_cells_escape_html_and_table_syntax():
    assert md_text("a|b <x> *y* `z` [l](u) _w_") == (
        "a\\|b &lt;x&gt; \\*y\\* \\`z\\` \\[l\\](u) \\_w\\_")
    assert cell(float("nan")) == "—" and cell(pd.NA) == "—" and cell(1234.5) == "1,234"
    assert cell(0.9301) == "0.930" and cell(2.5) == "2.50" and cell("two\nlines") == "two lines"
    text = markdown_table(pd.DataFrame({"a|b": ["x|y", "\\"], "n": [1.0, None]}))
    (table,) = markdown_tables(text)
    assert [len(row) for row in table] == [2, 2, 2, 2]
    assert table[0] == ["a\\|b", "n"] and table[2] == ["x\\|y", "1.00"]


def test_a_report_of_only_failures_still_says_what_failed(tmp_path):
    from harness.render.report import write_report

    df = records_to_frame([rec(status="oom", error="OutOfMemoryError: CUDA out of memory"),
                           rec(bs=64, status="error", error="ValueError: <bad>")])
    write_report(df, tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    assert "No figures: no configuration ran ok." in md
    assert "| convnet | synthetic | 32 | fp32 | sgd | oom | OutOfMemoryError: CUDA" in md
    assert "ValueError: &lt;bad&gt;" in md and not list((tmp_path / "r").glob("*.png"))
