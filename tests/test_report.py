"""Reports: from a tiny real sweep and from hand-written results of several machines."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.store.jsonl import read_records

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CPU, GPU = FIXTURES / "machine_a_cpu.jsonl", FIXTURES / "machine_b_gpu.jsonl"
HOSTILE, MALFORMED = FIXTURES / "hostile_strings.jsonl", FIXTURES / "malformed.jsonl"
H100, EPYC = "NVIDIA H100 80GB HBM3", "AMD EPYC 7B13"
TINY = ["--devices", "cpu", "--steps", "2", "--warmup", "1", "--repeats", "2",
        "--eval-samples", "32", "--train-samples", "64"]


def split_row(line: str) -> list[str]:
    """Cells of a GFM table row: split on pipes not escaped by a backslash (as GitHub does)."""
    cells, cur, i = [], "", 0
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            cur += body[i:i + 2]
            i += 2
            continue
        if ch == "|":
            cells.append(cur.strip())
            cur = ""
        else:
            cur += ch
        i += 1
    if cur.strip():
        cells.append(cur.strip())
    return cells


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Every table (consecutive lines starting with '|') as rows of cells."""
    tables, current = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            current.append(split_row(line))
        elif current:
            tables.append(current)
            current = []
    return tables


@contextlib.contextmanager
def chdir(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A real 4-config sweep (ConvNet, fp32/AMP, two batch sizes) and the report run writes."""
    work = tmp_path_factory.mktemp("sweep")
    with chdir(work):
        code, out, err = run_main(["run", "--models", "convnet", "--batch-sizes", "4,8",
                                   "--precisions", "fp32,amp", "--optimizers", "sgd", *TINY,
                                   "--allow-emulated",  # amp's figures on any CPU
                                   "--out", "r.jsonl", "--quiet"])
    assert code == 0, err
    return work, out


@pytest.fixture(scope="module")
def fixture_report(tmp_path_factory):
    """Three machines (one with hostile strings) plus a malformed file, reported together."""
    out_dir = tmp_path_factory.mktemp("fx") / "report"
    code, out, err = run_main(["report", str(CPU), str(GPU), str(HOSTILE), str(MALFORMED),
                               "--out", str(out_dir)])
    return code, out, err, out_dir


# ----------------------------------------------------------------------------- real sweep


def test_run_writes_its_report_with_inline_figures(sweep):
    work, stdout = sweep
    run_id = read_records(work / "r.jsonl")[0]["run_id"]
    html_path = Path("reports") / run_id / "report.html"
    assert f"report: {html_path}" in stdout
    folder = work / html_path.parent
    html = (folder / "report.html").read_text()
    md = (folder / "report.md").read_text()
    pngs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {"throughput.png", "amp_speedup.png", "memory.png", "accuracy.png",
            "step_time_spread.png"} <= set(pngs)
    for name in pngs:  # the same PNG beside the Markdown is inline in the page
        data = (folder / name).read_bytes()
        assert data.startswith(b"\x89PNG")
        assert "data:image/png;base64," + base64.b64encode(data).decode() in html
    # self-contained: every src/href is inline data or an in-page anchor
    for ref in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert ref.startswith(("data:image/png;base64,", "#")), ref
    assert "<script" not in html.lower()


def test_run_report_tables_hold_the_results(sweep):
    work, _ = sweep
    (folder,) = (work / "reports").iterdir()
    records = read_records(work / "r.jsonl")
    summary = pd.read_csv(folder / "summary.csv")
    assert list(summary["model"]) == ["convnet"]
    best = max(records, key=lambda r: r["throughput"])
    assert summary["best throughput"][0] == pytest.approx(best["throughput"])
    assert summary["batch size"][0] == best["batch_size"]
    assert summary["precision"][0] == best["precision"]
    assert summary["ok / configs"][0] == "4 / 4"
    rows = pd.read_csv(folder / "records.csv")
    assert sorted(rows["throughput"]) == pytest.approx(sorted(r["throughput"] for r in records))
    assert set(rows["precision"]) == {"fp32", "amp-bf16"}
    parquet = pd.read_parquet(folder / "records.parquet")
    assert list(parquet.columns) == list(rows.columns) and len(parquet) == 4
    assert "No failures: all 4 records are ok." in (folder / "report.md").read_text()


def test_run_no_report_and_report_failure_keep_results(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    one = ["run", "--models", "convnet", "--batch-sizes", "4", "--precisions", "fp32",
           "--optimizers", "sgd", "--quiet", *TINY]
    assert main([*one, "--out", "a.jsonl", "--no-report"]) == 0
    assert "report:" not in capsys.readouterr().out
    assert not (tmp_path / "reports").exists()

    import harness.render.report

    def broken(*args, **kwargs):
        raise RuntimeError("figure code exploded")

    monkeypatch.setattr(harness.render.report, "write_report", broken)
    assert main([*one, "--out", "b.jsonl"]) == 0
    captured = capsys.readouterr()
    assert "report not written (RuntimeError: figure code exploded)" in captured.err
    assert "results are safe in b.jsonl" in captured.err
    assert len(read_records(tmp_path / "b.jsonl")) == 1


# ------------------------------------------------------------ several machines (fixtures)


def test_malformed_file_is_one_warning_and_the_rest_still_report(fixture_report):
    code, out, err, folder = fixture_report
    assert code == 0
    assert err.count("\n") == 1
    assert f"{MALFORMED}:2: malformed record" in err and "warning" in err
    assert (folder / "report.html").is_file()
    assert f"Skipped: {MALFORMED}:2" in (folder / "report.md").read_text().replace("\\", "")


def test_hardware_comparison_relative_memory_and_per_watt(fixture_report):
    folder = fixture_report[3]
    assert "all from one machine" not in fixture_report[2]  # three machines: no warning
    cmp = pd.read_csv(folder / "comparison.csv")
    conv = cmp[(cmp["model"] == "convnet") & (cmp["batch size"] == 32)]
    fp32 = conv[conv["precision"] == "fp32"].iloc[0]
    assert fp32[f"{H100} × ref"] == pytest.approx(10.0)  # fixture: H100 fp32 = 10x the CPU
    assert fp32[f"{H100} peak MiB"] == pytest.approx(210)
    assert fp32[f"{EPYC} peak MiB"] == pytest.approx(920)
    assert fp32[f"{H100} items/J"] == pytest.approx(25000 / 351)
    amp = conv[conv["precision"] == "amp-bf16 / amp-fp16"].iloc[0]  # AMP matched by intent
    assert amp[f"{H100} × ref"] == pytest.approx(20.0)
    oom = cmp[(cmp["model"] == "transformer") & (cmp["batch size"] == 16)
              & (cmp["precision"] != "fp32")].iloc[0]
    assert pd.isna(oom[f"{H100} × ref"]) and f"oom on {H100}" in oom["notes"]
    md = (folder / "report.md").read_text()
    assert "![Relative throughput per model and precision](relative_throughput.png)" in md
    only = md.split("Configurations not run on every machine")[1].split("## Figures")[0]
    assert f"| convnet | synthetic | 128 | fp32 | sgd | {H100} | {EPYC}, " in only


def test_failures_and_missing_fields_are_listed(fixture_report):
    md = (fixture_report[3] / "report.md").read_text()
    failures = md.split("## Failures")[1].split("## All configurations")[0]
    (table,) = markdown_tables(failures)
    assert len(table) == 2 + 5  # header, delimiter, every not-ok record of the readable files
    statuses = sorted(row[6] for row in table[2:])
    assert statuses == ["diverged", "error", "error", "oom", "unavailable"]
    assert "CUDA out of memory. Tried to allocate 2.00 GiB" in failures
    assert "| resnet20 | — | — | — | — | unavailable |" in failures  # fields absent: shown as —
    assert "RuntimeError: bad thing \\| with a pipe and \\*stars\\*" in failures
    assert "| driver | — | 570.86.15 |" in md


def test_hostile_strings_are_text_in_html_and_markdown(fixture_report):
    folder = fixture_report[3]
    html = (folder / "report.html").read_text()
    assert "<script" not in html.lower()
    assert "<img src=x" not in html and "<h1>cpu" not in html and "<b>cc" not in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    assert "Content-Security-Policy" in html
    md = (folder / "report.md").read_text()
    for raw in ("<script", "<img", "</td>", "<h1>", "<i>1"):
        assert raw not in md
    assert "&lt;script&gt;window.\\_\\_pwned=1&lt;/script&gt;" in md


@pytest.mark.parametrize("which", ["sweep", "fixture"])
def test_markdown_tables_have_the_same_columns_in_every_row(which, sweep, fixture_report):
    folder = (next((sweep[0] / "reports").iterdir()) if which == "sweep"
              else fixture_report[3])
    tables = markdown_tables((folder / "report.md").read_text())
    assert len(tables) >= 4
    for table in tables:
        widths = {len(row) for row in table}
        assert len(widths) == 1, table
        assert all(set(c) <= set("-:") for c in table[1])  # the delimiter row


@pytest.mark.parametrize("baseline", [str(GPU), "nvidia h100 80gb hbm3", "gpu-box"])
def test_baseline_picks_the_reference_machine(tmp_path, baseline):
    code, out, err = run_main(["report", str(CPU), str(GPU), "--baseline", baseline,
                               "--out", str(tmp_path / "r")])
    assert code == 0, err
    cmp = pd.read_csv(tmp_path / "r" / "comparison.csv")
    row = cmp[(cmp["model"] == "convnet") & (cmp["batch size"] == 32)
              & (cmp["precision"] == "fp32")].iloc[0]
    assert row[f"{EPYC} × ref"] == pytest.approx(0.1)
    assert f"{H100} × ref" not in cmp.columns


def test_several_files_of_one_machine_get_a_warning_not_a_silent_single_machine(tmp_path):
    # Two copies of one machine's results (e.g. two VMs both called `vm`, same CPU model): the
    # report has no comparison to make, and says so instead of only leaving it out.
    other = tmp_path / "other.jsonl"
    other.write_text(CPU.read_text(encoding="utf-8"), encoding="utf-8")
    code, out, err = run_main(["report", str(CPU), str(other), "--out", str(tmp_path / "r")])
    assert code == 0, err
    assert "2 files, all from one machine (AMD EPYC 7B13 on host ci-runner-7)" in err
    assert not (tmp_path / "r" / "comparison.csv").exists()


@pytest.mark.parametrize("argv, needle", [
    (["report", str(CPU), str(GPU), "--baseline", "tpu-v9"],
     "--baseline 'tpu-v9' matches no results file or machine; valid: AMD EPYC 7B13, NVIDIA"),
    (["report", str(MALFORMED), "nothere.jsonl"], "no readable results: "),
])
def test_bad_report_input_is_one_line_exit_2_and_writes_nothing(tmp_path, argv, needle):
    code, out, err = run_main([*argv, "--out", str(tmp_path / "r")])
    assert code == 2
    assert needle in err and err.startswith("trainmark: error: ") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()
