import errno
import json
import locale
import math
import os
import sys
import warnings

import pandas as pd
import pytest

from harness.errors import UserError
from harness.schema import COLUMNS
from harness.store import jsonl
from harness.store.frame import expand_paths, export, load_results, load_side, records_to_frame
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


def test_writer_creates_missing_directories_and_round_trips_exactly(tmp_path):
    """Nested output dirs are created; every JSON type comes back unchanged (tuple -> list,
    non-finite float inside a list -> null)."""
    path = tmp_path / "a" / "b" / "r.jsonl"
    record = {"model": "caf\u00e9", "batch_size": 32, "lr": 0.1, "compile": False, "error": None,
              "repeat_throughputs": (1.5, float("-inf")), "loss_curve": [[0, 2.25], [10, 1.0]]}
    ResultsWriter(path).write(record)
    assert read_records(path) == [{"model": "caf\u00e9", "batch_size": 32, "lr": 0.1,
                                   "compile": False, "error": None,
                                   "repeat_throughputs": [1.5, None],
                                   "loss_curve": [[0, 2.25], [10, 1.0]]}]


def test_nan_nested_in_an_object_becomes_null_and_the_record_is_kept(tmp_path):
    """NaN is not JSON (other readers reject a bare NaN token): nested in an object it becomes
    null like anywhere else, and the record is written, not lost to a ValueError."""
    path = tmp_path / "r.jsonl"
    w = ResultsWriter(path)
    w.write(rec(0))
    w.write(rec(1, extra={"loss": float("nan"), "deeper": {"curve": [1.0, float("inf")]}}))
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()
    assert read_records(path)[1]["extra"] == {"loss": None, "deeper": {"curve": [1.0, None]}}


def test_cut_keeps_every_whole_line_and_reports_the_torn_byte_count(tmp_path):
    path = tmp_path / "r.jsonl"
    w = ResultsWriter(path)
    w.write(rec(0))
    w.write(rec(1))
    whole = path.read_bytes()
    with open(path, "ab") as f:
        f.write(b'{"a": 1')  # 7 bytes: { " a " : <space> 1
    with pytest.warns(UserWarning) as caught:
        ResultsWriter(path)
    assert [str(x.message) for x in caught] == [
        f"{path}: removing a torn last line (7 bytes) before appending"]
    assert path.read_bytes() == whole
    # attributed to the code that opened the writer (this test), not to a line of the store;
    # under mutation testing mutmut's trampolines add stack frames, so a stack level cannot
    # point here from a mutated module and the check would fail on the unmutated code too
    if "mutmut" not in sys.modules:
        assert os.path.abspath(caught[0].filename) == os.path.abspath(__file__)


def test_a_one_byte_torn_file_is_cut_to_empty(tmp_path):
    """The writer died after writing a single byte: that byte goes, the next append is line 1."""
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"{")
    with pytest.warns(UserWarning, match=r"\(1 bytes\)"):
        w = ResultsWriter(path)
    w.write(rec(0))
    assert [r["record_id"] for r in read_records(path)] == ["id0"]


def test_whole_or_empty_files_are_left_alone_without_warning(tmp_path):
    empty, whole = tmp_path / "empty.jsonl", tmp_path / "whole.jsonl"
    empty.write_bytes(b"")
    whole.write_text(json.dumps(rec(0)) + "\n")
    before = whole.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ResultsWriter(empty)
        ResultsWriter(whole)
    assert empty.read_bytes() == b"" and whole.read_bytes() == before


def test_blank_lines_are_skipped_not_the_end_of_the_file(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(rec(0)) + "\n\n   \n" + json.dumps(rec(1)) + "\n")
    assert [r["record_id"] for r in read_records(path)] == ["id0", "id1"]


def test_a_line_that_is_json_but_not_an_object_is_an_exact_error(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(rec(0)) + "\n[1, 2]\n")
    with pytest.raises(UserError) as exc:
        read_records(path)
    assert str(exc.value) == f"{path}:2: malformed record (not a JSON object)"


def test_malformed_middle_line_is_an_error_even_when_the_last_line_is_torn(tmp_path):
    """Only the *last* line may be torn; a bad line 2 of 3 is corruption, never skipped."""
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(rec(0)) + "\nnot json\n" + json.dumps(rec(1)))  # no final \n
    with pytest.raises(UserError, match=r"r\.jsonl:2: malformed record"):
        read_records(path)


def test_torn_last_line_warning_is_exact_and_points_at_the_caller(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(rec(0)) + '\n{"a": 1')
    with pytest.warns(UserWarning) as caught:
        assert [r["record_id"] for r in read_records(path)] == ["id0"]
    assert [str(x.message) for x in caught] == [
        f"{path}:2: skipping a torn last line (the writer was interrupted)"]
    # attributed to the code that asked for the records, not to a line inside the store
    assert os.path.abspath(caught[0].filename) != os.path.abspath(jsonl.__file__)


def test_results_are_read_as_utf8_whatever_the_locale(tmp_path):
    """A file holding raw UTF-8 (e.g. written by another tool) reads the same under an ASCII
    locale (the C locale's codeset is ANSI_X3.4-1968)."""
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"model": "caf\xc3\xa9"}\n')  # U+00E9 is C3 A9 in UTF-8
    old = locale.setlocale(locale.LC_CTYPE)
    try:
        locale.setlocale(locale.LC_CTYPE, "C")
        records = read_records(path)
    finally:
        locale.setlocale(locale.LC_CTYPE, old)
    assert records == [{"model": "caf\u00e9"}]


def test_unreadable_files_are_exact_user_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\xff\n")  # 0xFF never occurs in UTF-8 (RFC 3629)
    with pytest.raises(UserError) as exc:
        read_records(bad)
    assert str(exc.value) == f"{bad}: not a UTF-8 results file (invalid start byte)"
    with pytest.raises(UserError) as exc:
        read_records(tmp_path)  # a directory: EISDIR
    assert str(exc.value) == f"cannot read results file {tmp_path}: {os.strerror(errno.EISDIR)}"


def test_broken_pytest_benchmark_file_error_names_the_file(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text('{"benchmarks": 3}')
    with pytest.raises(UserError) as exc:
        read_records(path)
    assert str(exc.value) == f"{path}: pytest-benchmark file whose 'benchmarks' is not a list"


def test_expand_paths_takes_only_results_files_of_a_directory(tmp_path):
    d = tmp_path / "runs"
    d.mkdir()
    for name in ("b.json", "a.jsonl", "notes.txt"):
        (d / name).write_text("")
    (d / "sub.jsonl").mkdir()  # a directory named like a results file is not one
    single = tmp_path / "x.txt"
    single.write_text("")
    assert expand_paths([d, single]) == [d / "a.jsonl", d / "b.json", single]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError) as exc:
        expand_paths([empty])
    assert str(exc.value) == f"{empty}: no .jsonl or .json results files in this directory"
    with pytest.raises(UserError) as exc:
        expand_paths([tmp_path / "nope.jsonl"])
    assert str(exc.value) == f"results file not found: {tmp_path / 'nope.jsonl'}"


def test_load_side_with_no_records_names_the_side_and_every_path(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "r.jsonl").write_text("")
    with pytest.raises(UserError) as exc:
        load_side([a, b], "baseline")
    assert str(exc.value) == f"baseline: no records in {a}, {b}"


def test_export_writes_no_index_and_creates_directories(tmp_path):
    """A filtered frame (index [1]) exports as plain rows: no index column in CSV, no stored
    index in Parquet."""
    src = tmp_path / "r.jsonl"
    w = ResultsWriter(src)
    w.write(rec(0, status="error"))
    w.write(rec(1))
    df = load_results(src)
    ok = df[df["status"] == "ok"]
    back_csv = pd.read_csv(export(ok, tmp_path / "out" / "deep" / "t.csv"))
    assert list(back_csv.columns) == list(df.columns)
    assert back_csv["record_id"].tolist() == ["id1"]
    back_pq = pd.read_parquet(export(ok, tmp_path / "out2" / "deep" / "t.parquet"))
    assert list(back_pq.columns) == list(df.columns)
    assert back_pq.index.tolist() == [0]
    assert back_pq["record_id"].tolist() == ["id1"]


def test_missing_value_in_an_object_column_is_none_whatever_the_other_values(tmp_path):
    """An object column stays Python objects with None for missing, even when the present
    values are bare numbers (a hand-written single-repeat record)."""
    df = records_to_frame([{"repeat_throughputs": 250.0}, {"model": "m"}])
    assert str(df["repeat_throughputs"].dtype) == "object"
    assert df.loc[0, "repeat_throughputs"] == 250.0
    assert df.loc[1, "repeat_throughputs"] is None


def test_tuples_and_negative_infinity_are_cleaned_like_lists(tmp_path):
    """A tuple (e.g. a config's shape) holding a non-finite value, and -inf at the top level,
    become nulls too; finite values and non-float values pass through unchanged."""
    path = tmp_path / "r.jsonl"
    ResultsWriter(path).write(rec(0, shape=(3, float("nan"), 32), eval_loss=float("-inf"),
                                  flag=True, count=7, name="x"))
    (back,) = read_records(path)
    assert back["shape"] == [3, None, 32] and back["eval_loss"] is None
    assert (back["flag"], back["count"], back["name"]) == (True, 7, "x")
