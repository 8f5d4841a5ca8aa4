"""`trainmark report --price LABEL=USD_PER_HOUR`: cost per million samples (tokens for language
models), checked against figures worked out by hand from a small synthetic results file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from harness.analysis.cost import cost_per_million, parse_prices
from harness.errors import UserError
from tests.test_report import markdown_tables, run_main

H200, A100 = "NVIDIA H200", "NVIDIA A100-SXM4-80GB"


def record(host: str, device_name: str, model: str, throughput: float | None, *,
           unit: str = "samples/s", status: str = "ok", seed: int = 0,
           samples_per_joule: float | None = None, batch_size: int = 32) -> dict[str, object]:
    return {
        "schema_version": 1, "host": host, "device_name": device_name, "device": "cuda:0",
        "run_id": f"run-{host}", "record_id": f"{host}-{model}-{batch_size}-{seed}-{status}",
        "timestamp": "2026-11-20T10:00:00+00:00", "model": model,
        "dataset": "synthetic-text" if unit == "tokens/s" else "synthetic",
        "batch_size": batch_size, "precision": "fp32", "optimizer": "sgd", "lr": 0.01,
        "seed": seed, "status": status, "error": None if status == "ok" else "OOM: out of memory",
        "throughput_unit": unit, "throughput": throughput, "samples_per_joule": samples_per_joule,
        "peak_memory_allocated_bytes": 100 * 2**20,
    }


def write(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    """An H200 box and an A100 box.

    H200: convnet at 900 and 1,100 samples/s (two seeds: median 1,000) with 4 samples per joule,
    an oom config (never priced), and the transformer at 50,000 tokens/s.
    A100: convnet at 600 samples/s and no energy recorded.
    """
    h200 = write(tmp_path / "h200.jsonl", [
        record("h200-box", H200, "convnet", 900.0, samples_per_joule=4.0),
        record("h200-box", H200, "convnet", 1100.0, seed=1, samples_per_joule=4.0),
        record("h200-box", H200, "convnet", None, status="oom", batch_size=4096),
        record("h200-box", H200, "transformer", 50_000.0, unit="tokens/s"),
    ])
    a100 = write(tmp_path / "a100.jsonl", [record("a100-box", A100, "convnet", 600.0)])
    return h200, a100


def report(tmp_path: Path, *argv: str) -> tuple[int, str, Path]:
    out = tmp_path / "r"
    code, _, err = run_main(["report", *argv, "--out", str(out)])
    return code, err, out


def cost_rows(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "cost.csv")


def test_cost_per_million_by_hand() -> None:
    # $3.60/h over 1,000 samples/s = 3.6 M samples/h -> $1.00 per million samples
    assert cost_per_million(3.60, 1000.0) == pytest.approx(1.00)
    assert cost_per_million(3.60, 50_000.0) == pytest.approx(0.02)  # 180 M tokens/h
    assert math.isnan(cost_per_million(3.60, 0.0))
    assert parse_prices(["h200=3.49", " a100-80gb = 1.79 ", "a=b=2"]) == {
        "h200": 3.49, "a100-80gb": 1.79, "a=b": 2.0}


def test_single_machine_cost_table_samples_and_tokens(tmp_path, files) -> None:
    code, err, out = report(tmp_path, str(files[0]), "--price", "h200-box=3.60")
    assert code == 0, err
    rows = cost_rows(out).set_index("model")
    assert list(rows.index) == ["convnet", "transformer"]  # the oom config is not priced
    convnet, lm = rows.loc["convnet"], rows.loc["transformer"]
    assert convnet["throughput"] == pytest.approx(1000.0)  # median of the two seeds
    assert convnet["USD per 1M items"] == pytest.approx(1.00)
    assert convnet["unit"] == "samples/s"
    assert convnet["J per item"] == pytest.approx(0.25)  # 1 / 4 samples per joule
    assert lm["unit"] == "tokens/s"
    assert lm["USD per 1M items"] == pytest.approx(0.02)  # $3.60 / 180 M tokens per hour
    assert pd.isna(lm["J per item"])  # no energy recorded: none made up
    assert "× ref" not in rows.columns  # one machine: nothing to be relative to

    md = (out / "report.md").read_text()
    assert "## Cost" in md and "NVIDIA H200: USD 3.6/h" in md
    table = next(t for t in markdown_tables(md) if "USD per 1M items" in t[0] and "dataset"
                 in t[0])
    header = table[0]
    by_model = {r[header.index("model")]: r for r in table[2:]}
    assert by_model["convnet"][header.index("USD per 1M items")] == "1.00"
    assert by_model["transformer"][header.index("USD per 1M items")] == "0.020"
    assert 'id="cost"' in (out / "report.html").read_text()


def test_cost_sits_beside_relative_throughput(tmp_path, files) -> None:
    code, err, out = report(tmp_path, *map(str, files), "--baseline", "h200-box",
                            "--price", "nvidia h200=3.60", "--price", "a100-box=1.80")
    assert code == 0, err
    rows = cost_rows(out)
    convnet = rows[rows["model"] == "convnet"].set_index("machine")
    assert list(convnet.index) == [H200, A100]  # the reference first
    a100 = convnet.loc[A100]
    # $1.80/h over 600 samples/s = 2.16 M samples/h -> $0.8333 per million
    assert a100["USD per 1M items"] == pytest.approx(1.80 / 2.16)
    assert a100["× ref"] == pytest.approx(0.6)  # 600 / 1,000: slower ...
    assert a100["cost × ref"] == pytest.approx(0.8333, abs=1e-4)  # ... and cheaper per sample
    assert convnet.loc[H200, "cost × ref"] == pytest.approx(1.0)
    assert pd.isna(a100["J per item"]) and convnet.loc[H200, "J per item"] == pytest.approx(0.25)
    md = (out / "report.md").read_text()
    assert md.index("## Hardware comparison") < md.index("## Cost") < md.index("## Figures")
    cheapest = next(t for t in markdown_tables(md) if "USD per 1M items" in t[0]
                    and "dataset" not in t[0])
    machine_col = cheapest[0].index("machine")
    assert [r[machine_col] for r in cheapest[2:]] == [A100, H200, H200]  # convnet, then LM


def test_unpriced_reference_and_unpriced_machine(tmp_path, files) -> None:
    code, err, out = report(tmp_path, *map(str, files), "--price", A100 + "=1.80")
    assert code == 0, err
    rows = cost_rows(out)
    assert list(rows["machine"]) == [A100]  # only priced machines are costed
    assert rows["× ref"][0] == pytest.approx(0.6)
    assert "cost × ref" not in rows.columns  # the reference (H200) has no price
    assert "price the reference too" in (out / "report.md").read_text()


def test_no_price_no_cost_section(tmp_path, files) -> None:
    code, err, out = report(tmp_path, *map(str, files))
    assert code == 0, err
    assert "## Cost" not in (out / "report.md").read_text()
    assert not (out / "cost.csv").exists()


@pytest.mark.parametrize("label", ["h200-box", "H200-BOX", "NVIDIA H200", "nvidia h200"])
def test_price_matches_host_or_device_name(tmp_path, files, label) -> None:
    code, err, out = report(tmp_path, *map(str, files), "--price", f"{label}=3.60")
    assert code == 0, err
    assert list(cost_rows(out)["machine"].unique()) == [H200]


def test_a_host_prices_every_machine_on_it(tmp_path) -> None:
    """An hourly price is for the instance, so a host's price covers its CPU and its GPU."""
    path = write(tmp_path / "box.jsonl", [
        record("box", H200, "convnet", 1000.0),
        {**record("box", "AMD EPYC 9654", "convnet", 100.0), "device": "cpu"},
    ])
    code, err, out = report(tmp_path, str(path), "--price", "box=3.60")
    assert code == 0, err
    rows = cost_rows(out).set_index("machine")["USD per 1M items"]
    assert rows[H200] == pytest.approx(1.0) and rows["AMD EPYC 9654"] == pytest.approx(10.0)


@pytest.mark.parametrize("prices, needle", [
    (["h200"], "--price 'h200': expected LABEL=USD_PER_HOUR"),
    (["h200=abc"], "--price 'h200=abc': 'abc' is not a price in US dollars per hour"),
    (["h200=-1"], "--price 'h200=-1': '-1' is not a price in US dollars per hour"),
    (["h200=0"], "--price 'h200=0': '0' is not a price"),
    (["h200=nan"], "--price 'h200=nan': 'nan' is not a price"),
    (["=3"], "--price '=3': expected LABEL=USD_PER_HOUR"),
    (["h200-box=3", "H200-box=3.5"], "--price 'H200-box' is given twice (3 and 3.5)"),
    (["tpu-v9=1"], f"--price 'tpu-v9' matches no machine in the results; valid: {H200}, {A100}"),
    (["h200-box=3", "nvidia h200=3"], f"'h200-box' and 'nvidia h200' both name {H200}"),
])
def test_bad_price_is_one_line_exit_2_and_writes_nothing(tmp_path, files, prices, needle) -> None:
    argv = [*map(str, files)]
    for p in prices:
        argv += ["--price", p]
    code, err, out = report(tmp_path, *argv)
    assert code == 2
    assert needle in err, err
    assert err.startswith("trainmark: error: ") and err.count("\n") == 1
    assert not out.exists()


def test_parse_prices_errors_name_the_value() -> None:
    with pytest.raises(UserError, match="'h200=abc'.*LABEL=USD_PER_HOUR"):
        parse_prices(["h200=abc"])
