import json
import math

import pandas as pd
import pytest

from harness.errors import UserError
from harness.schema import COLUMNS
from harness.store.frame import export, load_results
from harness.store.jsonl import ResultsWriter, read_records


def rec(i, **kw):
    base = {"schema_version": 1, "run_id": "r", "record_id": f"id{i}", "model": "convnet",
            "batch_size": 8 * (i + 1), "status": "ok", "throughput": 100.0 + i,
            "repeat_throughputs": [99.0 + i, 101.0 + i], "eval_accuracy": 0.5}
    base.update(kw)
    return base


def test_round_trip_and_nan_becomes_null(tmp_path):
    path = tmp_path / "r.jsonl"
    w = ResultsWriter(path)
    w.write(rec(0))
    w.write(rec(1, eval_loss=float("nan"), throughput=float("inf")))
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and "NaN" not in lines[1] and "Infinity" not in lines[1]
    assert json.loads(lines[1])["eval_loss"] is None
    assert [r["record_id"] for r in read_records(path)] == ["id0", "id1"]


def test_torn_last_line_is_skipped_with_a_warning_and_cut_before_append(tmp_path):
    path = tmp_path / "r.jsonl"
    ResultsWriter(path).write(rec(0))
    with open(path, "a") as f:
        f.write('{"record_id": "torn", "thr')
    with pytest.warns(UserWarning, match="torn last line"):
        assert [r["record_id"] for r in read_records(path)] == ["id0"]
    with pytest.warns(UserWarning, match="removing a torn last line"):
        w = ResultsWriter(path)
    w.write(rec(1))
    assert [r["record_id"] for r in read_records(path)] == ["id0", "id1"]


def test_malformed_middle_line_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(rec(0)) + "\nnot json\n" + json.dumps(rec(1)) + "\n")
    with pytest.raises(UserError, match=r"r\.jsonl:2: malformed record"):
        read_records(path)
    with pytest.raises(UserError, match="results file not found"):
        read_records(tmp_path / "missing.jsonl")


def test_load_results_has_stable_columns_and_dtypes_for_any_subset(tmp_path):
    full, sparse = tmp_path / "full.jsonl", tmp_path / "sparse.jsonl"
    ResultsWriter(full).write(rec(0, peak_memory_allocated_bytes=123, eval_loss=1.5))
    ResultsWriter(sparse).write({"model": "resnet20", "status": "error", "error": "x"})
    frames = [load_results([full]), load_results([sparse]), load_results([full, sparse]),
              load_results([])]
    for df in frames:
        assert list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
        assert {c: str(df[c].dtype) for c in COLUMNS} == {c: str(frames[0][c].dtype)
                                                          for c in COLUMNS}
    both = frames[2]
    assert both["batch_size"].dtype == "Int64" and both["batch_size"].isna().tolist() == [False,
                                                                                          True]
    assert both.loc[0, "repeat_throughputs"] == [99.0, 101.0]
    assert both.loc[1, "repeat_throughputs"] is None
    assert both["source"].tolist() == [str(full), str(sparse)]


def test_wrongly_typed_field_is_a_clear_error(tmp_path):
    path = tmp_path / "r.jsonl"
    ResultsWriter(path).write(rec(0, batch_size="lots"))
    with pytest.raises(UserError, match="'batch_size'"):
        load_results(path)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_round_trips(tmp_path, suffix):
    src = tmp_path / "r.jsonl"
    ResultsWriter(src).write(rec(0))
    ResultsWriter(src).write(rec(1))
    df = load_results(src)
    out = export(df, tmp_path / f"t{suffix}")
    back = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert back["throughput"].tolist() == [100.0, 101.0]
    assert math.isclose(back["eval_accuracy"][1], 0.5)
    with pytest.raises(UserError, match="valid: .csv, .parquet"):
        export(df, tmp_path / "t.xlsx")
