"""The results store's Parquet cache (store.columnar) and history's fast change points (issue 31).

The cache must give the frame that parsing the files gives, and never a stale one: each test
compares with ``records_to_frame`` of the parsed records, computed independently of the cache.
The change-point search must split where the quadratic reference search
(benchmarks/history_reference.py, the code before issue 31) splits.
"""

import io
import json
import os
import random
import warnings

import pandas as pd
import pytest

from benchmarks import history_reference as reference
from benchmarks.store_data import STEPPED_CONFIG, commit_sha, generate
from harness.analysis import changepoints
from harness.analysis.history import HISTORY_COLUMNS, build_history, regressions, runner_steps
from harness.store import columnar
from harness.store import frame as store_frame
from harness.store.frame import expand_paths, load_lenient, load_results
from harness.store.jsonl import ResultsWriter, iter_records
from harness.store.table import records_to_frame, select_columns

EXAMPLES = [p for p in expand_paths(["results/examples"]) if p.suffix == ".jsonl"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """Every read goes through a fresh cache folder, however small the files."""
    root = tmp_path / "cache"
    monkeypatch.setenv(columnar.CACHE_ENV, str(root))
    monkeypatch.setattr(store_frame, "CACHE_MIN_BYTES", 0)
    return root


def parsed(paths, columns=None):
    frame = records_to_frame(list(iter_records(paths)))
    return frame if columns is None else select_columns(frame, columns)


def test_cache_gives_the_parsed_frame_for_every_example_and_column_choice(cache):
    expected = parsed(EXAMPLES)
    for _ in range(2):  # cold (parses into packs), then warm (reads packs only)
        pd.testing.assert_frame_equal(load_results(EXAMPLES), expected)
    assert list(cache.rglob("*.parquet"))
    cols = ["throughput", "model", "loss_curve", "source", "no_such_field", "batch_size",
            "injected_slowdown"]
    pd.testing.assert_frame_equal(load_results(EXAMPLES, cols), parsed(EXAMPLES, cols))
    pd.testing.assert_frame_equal(load_results(EXAMPLES, exclude=("loss_curve",)),
                                  expected.drop(columns=["loss_curve"]))
    lenient, skipped = load_lenient(EXAMPLES)
    assert skipped == [] and lenient["source"].tolist() == [str(p) for p in EXAMPLES
                                                            for _ in iter_records([p])]


def test_append_truncate_and_rewrite_between_loads_are_seen(cache, tmp_path):
    path = tmp_path / "runs" / "r.jsonl"
    writer = ResultsWriter(path)
    for i in range(3):
        writer.write({"model": "convnet", "batch_size": 8, "status": "ok", "throughput": 100.0 + i})
    assert load_results([path])["throughput"].tolist() == [100.0, 101.0, 102.0]

    writer.write({"model": "convnet", "batch_size": 8, "status": "ok", "throughput": 200.0,
                  "new_field": [1, 2]})  # append: one more row and a new extra column
    got = load_results([path])
    pd.testing.assert_frame_equal(got, parsed([path]))
    assert got["throughput"].tolist()[-1] == 200.0 and got["new_field"].iloc[-1] == [1, 2]

    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]))  # truncate to two records
    assert load_results([path])["throughput"].tolist() == [100.0, 101.0]

    # rewrite in place with the same size and the same mtime: only the change time differs
    stat = path.stat()
    text = path.read_text().replace('"throughput": 100.0', '"throughput": 900.0')
    assert len(text) == stat.st_size
    path.write_text(text)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert load_results([path])["throughput"].tolist() == [900.0, 101.0]
    assert load_results([path], ["throughput"])["throughput"].tolist() == [900.0, 101.0]


def test_torn_line_warns_on_every_read_and_bad_types_stay_errors(cache, tmp_path):
    path = tmp_path / "torn.jsonl"
    ResultsWriter(path).write({"model": "convnet", "status": "ok", "throughput": 1.0})
    with open(path, "a") as f:
        f.write('{"model": "res')
    for _ in range(2):  # the second read comes from the cache and must still say so
        with pytest.warns(UserWarning, match="torn last line"):
            assert load_results([path])["throughput"].tolist() == [1.0]
    bad = tmp_path / "bad.jsonl"
    ResultsWriter(bad).write({"model": "convnet", "batch_size": "lots"})
    with pytest.raises(Exception, match="not Int64"):
        load_results([bad])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame, skipped = load_lenient([path, bad])  # the report's reading skips the bad file
    assert frame["throughput"].tolist() == [1.0] and any("bad.jsonl" in s for s in skipped)


def test_compaction_keeps_only_live_rows(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(columnar, "MAX_PACKS", 2)
    paths = []
    for i in range(4):  # four reads, each adding a file: packs pile up, then merge
        p = tmp_path / "runs" / f"{i}.jsonl"
        ResultsWriter(p).write({"model": "m", "status": "ok", "throughput": float(i)})
        paths.append(p)
        assert load_results(paths)["throughput"].tolist() == [float(j) for j in range(i + 1)]
    assert len(list(cache.rglob("*.parquet"))) <= 3
    paths[0].write_text(json.dumps({"model": "m", "status": "ok", "throughput": 50.0}) + "\n")
    assert load_results(paths)["throughput"].tolist() == [50.0, 1.0, 2.0, 3.0]


def test_cache_off_parses_and_an_unusable_cache_is_said_and_bypassed(tmp_path, monkeypatch):
    monkeypatch.setenv(columnar.CACHE_ENV, "off")
    monkeypatch.setattr(store_frame, "CACHE_MIN_BYTES", 0)
    pd.testing.assert_frame_equal(load_results(EXAMPLES[:2]), parsed(EXAMPLES[:2]))
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv(columnar.CACHE_ENV, str(tmp_path / "a-file" / "cache"))
    with pytest.warns(UserWarning, match="results cache .* not usable"):
        pd.testing.assert_frame_equal(load_results(EXAMPLES[:2]), parsed(EXAMPLES[:2]))


# ------------------------------------------------------------------------ change points


def planted(rng, n, steps, noise, rounding):
    values, level = [], 100.0
    for i in range(n):
        if i in steps:
            level *= rng.choice([0.88, 0.92, 1.1])
        v = level * (1 + rng.gauss(0, noise))
        values.append(round(v) if rounding else v)
    return values


def test_fast_search_splits_where_the_quadratic_reference_splits():
    rng = random.Random(7)
    for trial in range(150):
        n = rng.choice([9, 16, 30, 60])
        steps = set(rng.sample(range(2, n - 1), rng.choice([0, 1, 2])))
        values = planted(rng, n, steps, rng.choice([0.0, 0.01, 0.03]), trial % 3 == 0)
        for m in (1, 4):
            assert changepoints.best_split(values, m) == reference.best_split(values, m)
        old = reference.detect_steps(values)
        assert changepoints.detect_steps(values) == old
        bounds = [0, *(k for k, *_ in old), n]
        for j, (k, *_) in enumerate(old, start=1):
            assert (changepoints.location_range(values, k, bounds[j - 1], bounds[j + 1])
                    == reference.location_range(values, k, bounds[j - 1], bounds[j + 1]))


def test_prefix_costs_are_the_l1_costs():
    rng = random.Random(3)
    values = [rng.choice([1.0, 2.0, 2.5, 7.0]) + rng.random() for _ in range(40)]
    assert changepoints.prefix_costs(values)[1:] == pytest.approx(
        [reference.l1_cost(values[:i]) for i in range(1, 41)], abs=1e-9)


def test_injected_step_found_at_its_commit_and_a_runner_alone_is_visible(tmp_path):
    generate(tmp_path / "both", commits=40, runners=2, configs=12)
    frame = load_results(expand_paths([tmp_path / "both"]), HISTORY_COLUMNS)
    history = build_history(frame, ["throughput"], by_runner=True)
    regs = regressions(history)
    assert [(s.host, st.first_after, round(st.change, 2)) for s, st in regs] == [
        (None, commit_sha(20), -0.1)]
    assert runner_steps(history) == []  # both runners stepped: the code, not a runner

    generate(tmp_path / "one", commits=40, runners=2, configs=12, step_runners=[1])
    frame = load_results(expand_paths([tmp_path / "one"]), HISTORY_COLUMNS)
    pooled_only = build_history(frame, ["throughput"])
    assert all(s.host is None for s in pooled_only) and len(pooled_only) == 12
    history = build_history(frame, ["throughput"], by_runner=True)
    alone = runner_steps(history)
    assert [(s.host, st.first_after) for s, st in alone] == [("runner-01", commit_sha(20))]
    assert alone[0][0].config["model"] == "convnet" and alone[0][1].change < -0.08
    stepped = [s for s in history if s.host is None and s.config == alone[0][0].config]
    assert all(abs(st.change) < 0.08 for s in stepped for st in s.steps)  # pooled: half size
    assert STEPPED_CONFIG < 12


def test_the_command_names_a_runner_that_alone_got_slower(tmp_path, capsys):
    from harness.cli import main

    generate(tmp_path / "runs", commits=24, runners=2, configs=8, step_runners=[1])
    out = tmp_path / "h"
    assert main(["history", str(tmp_path / "runs"), "--out", str(out),
                 "--metrics", "throughput"]) == 0
    printed = capsys.readouterr().out
    assert "RUNNER runner-01: convnet bs64 fp32 adam cpu throughput" in printed
    assert "1 steps of one runner alone" in printed
    assert "on runner-01" in (out / "history.md").read_text().split("## Runners")[1]


def test_a_file_parsed_by_two_readers_at_once_is_read_once(cache, tmp_path, monkeypatch):
    import shutil

    a, b = tmp_path / "runs" / "a.jsonl", tmp_path / "runs" / "b.jsonl"
    for path, value in ((a, 1.0), (b, 2.0)):
        ResultsWriter(path).write({"model": "m", "status": "ok", "throughput": value})
    assert load_results([a])["throughput"].tolist() == [1.0]
    (pack,) = cache.rglob("*.parquet")
    shutil.copy(pack, pack.with_name("f" * 32 + ".parquet"))  # the other reader's pack of a
    assert load_results([a])["throughput"].tolist() == [1.0]
    monkeypatch.setattr(columnar, "MAX_PACKS", 1)  # merge them with b's pack
    assert load_results([a, b])["throughput"].tolist() == [1.0, 2.0]
    assert load_results([a, b])["throughput"].tolist() == [1.0, 2.0]


@pytest.mark.parametrize("seed", range(4))
def test_random_fields_and_nulls_load_as_parsing_loads_them(cache, tmp_path, seed):
    """Extra fields of every JSON type, explicit nulls and missing fields, a record's own
    source, a file read twice and an empty one: the cached frame is the parsed one."""
    rng = random.Random(seed)
    values = [None, 1, 2.5, "x", True, False, [1, 2], {"a": 1}, 10**18, -0.0]
    paths = []
    for f in range(5):
        lines = []
        for _ in range(rng.randint(0, 5)):
            rec = {"model": rng.choice(["a", "b", None]), "status": "ok",
                   "throughput": rng.choice([None, 1, 2.5]),
                   "batch_size": rng.choice([None, 8, 16.0]),
                   "repeat_throughputs": rng.choice([None, [1.0, 2.0], []])}
            rec.update({f"extra{rng.randint(0, 6)}": rng.choice(values)
                        for _ in range(rng.randint(0, 4))})
            if rng.random() < 0.2:
                rec["source"] = rng.choice(["elsewhere", None])
            keys = list(rec)
            rng.shuffle(keys)
            lines.append(json.dumps({k: rec[k] for k in keys}) + "\n")
        path = tmp_path / f"{f}.jsonl"
        path.write_text("".join(lines))
        paths.append(path)
    own = tmp_path / "own-source.jsonl"  # a null source beside the files' names: pandas
    own.write_text('{"model": "a", "source": null}\n{"model": "b"}\n')  # infers strings
    paths += [paths[0], own]
    pd.testing.assert_frame_equal(load_results(paths), parsed(paths))


def test_a_pack_made_under_other_columns_is_never_read(cache, tmp_path, monkeypatch):
    """A field that becomes typed (e.g. ``suite``, once an extra field stored as JSON text)
    must not come back from a pack made before: the new columns read a fresh pack."""
    path = tmp_path / "r.jsonl"
    ResultsWriter(path).write({"model": "m", "status": "ok", "newly_typed": "ci"})
    assert load_results([path])["newly_typed"].tolist() == ["ci"]  # an extra field
    monkeypatch.setattr(columnar, "COLUMNS", {**columnar.COLUMNS, "newly_typed": "string"})
    monkeypatch.setattr(columnar, "LAYOUT", json.dumps(sorted(columnar.COLUMNS.items())))
    monkeypatch.setattr("harness.store.packs.COLUMNS", columnar.COLUMNS)
    monkeypatch.setattr("harness.store.table.COLUMNS", columnar.COLUMNS)
    got = load_results([path], ["newly_typed"])
    assert got["newly_typed"].tolist() == ["ci"] and str(got["newly_typed"].dtype) == "string"
    assert len(list(cache.rglob("*.parquet"))) == 2  # the old pack untouched, a new one made


@pytest.mark.parametrize("seed", range(3))
def test_plain_values_go_straight_to_arrow_as_pandas_converts_them(seed):
    """The cold read's fast path (``packs.typed_arrays``) gives the arrays of the pandas path
    (``records_to_frame``) for every plain value, and refuses the values they disagree on."""
    from harness.store import packs

    rng = random.Random(seed)
    pools = {"Int64": [None, 0, 7, -3, 2**52, 3.0, True, float("nan")],
             "boolean": [None, True, False],
             "Float64": [None, 0, 1.5, -2, float("inf"), float("nan"), True, 1e300, 2**52],
             "string": [None, "", "x", "ü", "9"]}
    raw = [{c: rng.choice(pools[d]) for c, d in packs.typed_columns().items() if rng.random() < 0.7}
           for _ in range(60)]
    for r in raw[:5]:
        r.update(extra_field=[1, 2], loss_curve=[0.5])  # fields outside the typed ones
    fast, slow = packs.typed_arrays(raw), packs.frame_arrays(raw)
    assert list(fast) == list(slow)
    for col in packs.typed_columns():
        assert fast[col].equals(slow[col]), col
    for value, dtype in ((3.5, "Int64"), (float("inf"), "Int64"), (2**62, "Int64"),
                         (1, "boolean"), (5, "string"), ("1.5", "Float64"), (2**62, "Float64")):
        col = next(c for c, d in packs.typed_columns().items() if d == dtype)
        with pytest.raises(packs.NotPlain):
            packs.typed_arrays([{col: value}])


def test_a_large_cold_read_parses_in_workers_even_from_a_plain_script(tmp_path):
    """Worker processes parse a large cold read (the reading process cannot: its
    ``fill_chunk`` is gone); the frame is the parsed one, and a script that reads at its top
    level (no ``__main__`` guard, which multiprocessing's spawn would run again in each
    worker) works. A malformed file is the same one-line error as when parsing."""
    import subprocess
    import sys

    generate(tmp_path / "runs", commits=12, runners=2, configs=6)
    bad = tmp_path / "bad" / "bad.jsonl"
    bad.parent.mkdir()
    bad.write_text('{"model": "m"}\nnot json\n{"model": "m"}\n')
    for good in sorted((tmp_path / "runs").iterdir())[:3]:  # a run for each worker
        (bad.parent / good.name).write_text(good.read_text())
    script = tmp_path / "read.py"
    script.write_text("""
import sys
from harness.store import frame, packs
from harness.store.frame import expand_paths, load_results
frame.CACHE_MIN_BYTES, packs.PARALLEL_MIN_BYTES, packs.PACK_BYTES, packs.WORKERS = 0, 0, 8000, 2
packs.fill_chunk = None  # parsing here, not in a worker, would fail
print(load_results(expand_paths([sys.argv[1]])).to_json(orient="split", index=False))
""")
    env = {**os.environ, "TRAINMARK_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "runs")], env=env,
                         capture_output=True, text=True, cwd=os.getcwd(), timeout=120)
    assert run.returncode == 0, run.stderr
    expected = parsed(expand_paths([tmp_path / "runs"]))
    got = pd.read_json(io.StringIO(run.stdout), orient="split")
    assert got["throughput"].tolist() == pytest.approx(expected["throughput"].tolist())
    assert got["source"].tolist() == expected["source"].tolist()
    run = subprocess.run([sys.executable, str(script), str(bad.parent)], env=env,
                         capture_output=True, text=True, cwd=os.getcwd(), timeout=120)
    assert run.returncode == 1 and "bad.jsonl:2: malformed record" in run.stderr
