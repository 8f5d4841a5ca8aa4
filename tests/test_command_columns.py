"""``report`` reads only ``REPORT_COLUMNS`` and ``compare`` only ``COMPARE_COLUMNS`` (issue 31:
at 1M records, every column is ~3.7 GB).

Two checks each that fail if a list falls behind the code: every record column named in the
command's modules is in its list, and its output from those columns alone is its output from
every column. The report's inputs reach every section (two machines, a fleet partition with a
slow node, prices, power, failures); the comparisons cover a slowdown, memory and accuracy
changes, paired A/B rounds, failed configs and two machines.
"""

from __future__ import annotations

import ast
import json
import random
from pathlib import Path

import pandas as pd
import pytest

import harness.schema as schema
from harness.analysis.compare import COMPARE_COLUMNS, Settings, compare_frames
from harness.analysis.report_data import REPORT_COLUMNS
from harness.cli import main
from harness.render.report import load_inputs, write_report
from harness.store.frame import load_lenient, load_side

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "results" / "examples"
# What ``trainmark report`` runs: the command, its tables, figures, comparison, cost, health.
REPORT_MODULES = ("harness/cli/report.py", "harness/render/report.py",
                  "harness/render/figures.py", "harness/analysis/report_data.py",
                  "harness/analysis/hardware.py", "harness/analysis/cost.py",
                  "harness/analysis/node_health.py")


def _named_columns(tree: ast.AST) -> set[str]:
    """Record columns named in ``tree``: string constants that are columns, and the members of
    tuples of column names it imports from ``harness.schema`` (e.g. MACHINE_LABEL_FIELDS)."""
    known = set(schema.COLUMNS) | {"source"}
    found = {n.value for n in ast.walk(tree)
             if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in known}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "harness.schema":
            for alias in node.names:
                value = getattr(schema, alias.name)
                if isinstance(value, tuple):
                    found |= {v for v in value if v in known}
    return found


def test_every_column_the_report_names_is_read_and_no_other():
    named: set[str] = set()
    for module in REPORT_MODULES:
        named |= _named_columns(ast.parse((ROOT / module).read_text()))
    # the command checks the records' code identity with matching.code_identities
    source = (ROOT / "harness/analysis/matching.py").read_text()
    func = next(n for n in ast.walk(ast.parse(source))
                if isinstance(n, ast.FunctionDef) and n.name == "code_identities")
    named |= _named_columns(func)
    assert sorted(named - set(REPORT_COLUMNS)) == []  # named in the code, not read: a bug
    assert sorted(set(REPORT_COLUMNS) - named) == []  # read but never used: memory wasted
    assert len(set(REPORT_COLUMNS)) == len(REPORT_COLUMNS)


def _inputs(folder: Path) -> list[Path]:
    """Results files that reach every section of the report: the quick suite on two machines
    (one with power and a failure), and a fleet partition of three nodes, one 10% slow."""
    quick = [json.loads(x) for x in (EXAMPLES / "cpu-quick.jsonl").read_text().splitlines()
             if x.strip()]
    other = []
    for r in quick:
        r = dict(r, host="xeon-01", device_name="Intel Xeon", cpu_model="Intel Xeon",
                 throughput=r["throughput"] * 1.6, power_w_mean=210.0, cpu_capability="AVX2",
                 cpu_native_bf16=False)
        other.append(r)
    other[3].update(status="crashed", error="RuntimeError: boom", throughput=None)
    rng = random.Random(0)
    fleet = []
    for node, speed in (("n1", 1.0), ("n2", 1.0), ("n3", 0.9)):
        for r in quick[:8]:
            fleet.append(dict(r, host=node, node=node, partition="hw_a", job_id=f"7{node}",
                              device_name="EPYC", throughput=r["throughput"] * speed
                              * (1 + rng.uniform(-0.01, 0.01))))
    paths = []
    for name, recs in (("a", quick), ("b", other), ("fleet", fleet)):
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in recs))
        paths.append(path)
    return [*paths, *(EXAMPLES / n for n in ("cpu-fsdp.jsonl", "cpu-tta.jsonl"))]


def _without_date(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if "Generated " not in line)


def test_a_report_from_its_columns_equals_one_from_every_column(tmp_path):
    paths = _inputs(tmp_path)
    narrow, skipped = load_inputs(paths)
    wide, _ = load_lenient(paths)
    assert len(wide.columns) > 2 * len(narrow.columns)  # the point: far fewer columns read
    prices = {"Intel Xeon": 4.0, "AMD EPYC": 2.0}
    outs = {}
    for name, frame in (("narrow", narrow), ("wide", wide)):
        out = tmp_path / name
        write_report(frame, out, skipped=skipped, prices=prices)
        outs[name] = out
    html = (outs["wide"] / "report.html").read_text()
    for section in ("Hardware comparison", "Cost", "Node health", "Failures"):
        assert f">{section}<" in html  # the inputs reach every section
    files = sorted(p.relative_to(outs["wide"]) for p in outs["wide"].rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(outs["narrow"]) for p in outs["narrow"].rglob("*")
                           if p.is_file())
    for rel in files:
        a, b = outs["wide"] / rel, outs["narrow"] / rel
        if rel.suffix in (".html", ".md"):
            assert _without_date(a.read_text()) == _without_date(b.read_text()), rel
        elif rel.suffix == ".parquet":
            pd.testing.assert_frame_equal(pd.read_parquet(a), pd.read_parquet(b))
        else:
            assert a.read_bytes() == b.read_bytes(), rel


COMPARE_MODULES = ("harness/cli/compare.py", "harness/analysis/compare.py",
                   "harness/analysis/matching.py", "harness/analysis/paired.py",
                   "harness/analysis/stats.py", "harness/analysis/confirmation.py",
                   "harness/render/verdicts.py")


def test_every_column_compare_names_is_read():
    named: set[str] = set()
    for module in COMPARE_MODULES:
        named |= _named_columns(ast.parse((ROOT / module).read_text()))
    assert sorted(named - set(COMPARE_COLUMNS)) == []
    assert len(COMPARE_COLUMNS) < len(schema.COLUMNS) / 2


def _pair(folder: Path) -> tuple[Path, Path]:
    """The quick suite as baseline, and a candidate in eight paired A/B rounds where one
    config is 10% slower, one uses 50% more memory, one lost 5 points of accuracy and one
    crashed."""
    quick = [json.loads(x) for x in (EXAMPLES / "cpu-quick.jsonl").read_text().splitlines()
             if x.strip()]
    rng = random.Random(1)
    base, cand = [], []
    for k in range(8):
        for i, r in enumerate(quick):
            noise = 1 + rng.uniform(-0.005, 0.005)
            base.append(dict(r, ab_round=k, throughput=r["throughput"] * noise))
            slow = noise * (0.9 if i == 1 else 1)
            c = dict(r, ab_round=k, throughput=r["throughput"] * slow,
                     repeat_throughputs=[v * slow for v in r["repeat_throughputs"]])
            base[-1]["repeat_throughputs"] = [v * noise for v in r["repeat_throughputs"]]
            if i == 2:
                for field in ("train_memory_allocated_bytes", "peak_memory_allocated_bytes",
                              "train_rss_bytes", "peak_rss_bytes"):
                    if r.get(field):
                        c[field] = int(r[field] * 1.5)
            if i == 3 and r.get("eval_accuracy") is not None:
                c["eval_accuracy"] = r["eval_accuracy"] - 0.05
            if i == 4:
                c.update(status="crashed", error="RuntimeError: boom", throughput=None)
            cand.append(c)
    paths = []
    for name, recs in (("base", base), ("cand", cand)):
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in recs))
        paths.append(path)
    return paths[0], paths[1]


@pytest.mark.parametrize("pair", ["ab", "machines"])
def test_a_comparison_from_its_columns_equals_one_from_every_column(tmp_path, pair):
    if pair == "ab":
        base, cand = _pair(tmp_path)
        settings = Settings()
    else:
        base, cand = (EXAMPLES / n for n in ("cpu-fsdp.jsonl", "cpu-fsdp-epyc.jsonl"))
        settings = Settings(allow_different_machines=True)
    verdicts = []
    for columns in (None, COMPARE_COLUMNS):
        b, c = (load_side([p], "side", columns) for p in (base, cand))
        verdicts.append(json.dumps(compare_frames(b, c, settings), default=str, sort_keys=True))
    assert verdicts[0] == verdicts[1]
    if pair == "machines":  # an Intel Xeon against an AMD EPYC: 8 configs, CPUs named
        result = json.loads(verdicts[1])
        assert result["summary"]["configs"] == 8 and "cpu_model" in result["machine_differences"]
    if pair == "ab":
        result = json.loads(verdicts[1])
        failed = sorted(f for r in result["rows"] for f in r["failed"])
        assert failed == ["accuracy", "memory", "status", "throughput"]
        assert result["summary"]["no change"] == 32


def test_the_command_reads_its_columns(tmp_path, monkeypatch, capsys):
    """``trainmark compare`` asks the store for ``COMPARE_COLUMNS`` (every column with
    --explain, which reads profiles)."""
    import harness.store.frame as frame

    asked = []
    real = frame.load_side

    def spy(paths, name, columns=None):
        asked.append(columns)
        return real(paths, name, columns)

    monkeypatch.setattr(frame, "load_side", spy)
    base, cand = _pair(tmp_path)
    assert main(["compare", str(base), str(cand)]) == 1
    assert asked == [COMPARE_COLUMNS, COMPARE_COLUMNS]
