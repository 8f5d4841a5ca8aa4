"""``trainmark history``: series over commits and the steps found in them.

Expected p-values are worked out by hand: a two-sided exact Mann-Whitney U test of two fully
separated samples of sizes m and n gives p = 2 / C(m + n, m); binary segmentation over 20 points
with at least 4 on each side tries splits 4..16, 13 of them (the Bonferroni factor).
"""

from __future__ import annotations

import json
import math

import pytest

from harness.analysis.history import build_history, detect_steps, location_range, regressions
from harness.cli import main
from harness.store.frame import records_to_frame

# A deterministic wiggle of +-1% (no two values equal, so the exact test applies).
WIGGLE = [0.004, -0.008, 0.010, -0.002, 0.006, -0.010, 0.001, -0.005, 0.008, -0.003,
          0.009, -0.007, 0.003, -0.001, 0.007, -0.009, 0.002, -0.006, 0.005, -0.004]


def series(n: int = 20, step_at: int | None = None, size: float = -0.08,
           base: float = 100.0) -> list[float]:
    return [base * (1 + WIGGLE[i % len(WIGGLE)]) * (1 + size if step_at is not None
                                                    and i >= step_at else 1)
            for i in range(n)]


def test_an_eight_percent_drop_is_found_at_its_commit_with_the_hand_computed_p():
    [(index, change, p, adjusted)] = detect_steps(series(step_at=12))
    assert index == 12
    assert p == pytest.approx(2 / math.comb(20, 8))
    assert adjusted == pytest.approx(13 * 2 / math.comb(20, 8))
    assert change == pytest.approx(-0.08, abs=0.01)


def test_a_flat_noisy_series_has_no_step():
    assert detect_steps(series()) == []
    # +-1% noise but larger: still nothing, the medians never differ by 5%
    assert detect_steps([v * (1 + 2 * w) for v, w in zip(series(), WIGGLE, strict=True)]) == []


def test_a_significant_change_within_the_threshold_is_not_a_step():
    # a clean 3% step: as significant as the 8% one, but below the 5% threshold
    assert detect_steps(series(step_at=10, size=-0.03)) == []
    assert [i for i, *_ in detect_steps(series(step_at=10, size=-0.03), threshold=0.02)] == [10]


def test_a_step_needs_enough_commits_on_each_side():
    # 4 | 16: p = 2 / C(20, 4) = 4.1e-4, adjusted x13 = 0.0054 < 0.01: found
    [(index, _, p, adjusted)] = detect_steps(series(step_at=16))
    assert index == 16 and adjusted == pytest.approx(13 * 2 / math.comb(20, 4))
    # 3 | 17 cannot be a candidate with min_segment 4, and its nearest candidate is not clean
    assert detect_steps(series(step_at=17)) == []


def test_two_steps_are_both_found():
    values = [v * (0.9 if i >= 7 else 1) * (1.15 if i >= 14 else 1)
              for i, v in enumerate(series(n=21))]
    steps = detect_steps(values)
    assert [i for i, *_ in steps] == [7, 14]
    assert steps[0][1] < -0.05 and steps[1][1] > 0.05


# ------------------------------------------------------------------ records -> series

PROVENANCE = {"host": "ci-1", "device_name": "AMD EPYC 7B13", "device": "cpu",
              "cpu_model": "AMD EPYC 7B13", "torch_version": "2.14.1", "num_threads": 2,
              "schema_version": 1}


def records(n: int = 20) -> list[dict]:
    """Two configs over ``n`` commits: the ConvNet's throughput drops 8% at commit 12, the
    transformer's memory grows 20% at commit 5 (commit times one hour apart)."""
    out = []
    for i in range(n):
        commit = f"{i:02d}" + "c" * 38
        when = f"2026-11-{1 + i // 24:02d}T{i % 24:02d}:00:00+00:00"
        for model, tput, mem in (("convnet", series(n, 12)[i], 100_000_000),
                                 ("transformer", 500 * (1 + WIGGLE[i]),
                                  round((120e6 if i >= 5 else 100e6) * (1 + WIGGLE[i] / 10)))):
            out.append({**PROVENANCE, "model": model, "dataset": "synthetic", "batch_size": 32,
                        "precision": "fp32", "optimizer": "sgd", "status": "ok",
                        "git_commit": commit, "git_commit_time": when,
                        "timestamp": "2026-12-01T00:00:00+00:00", "throughput": tput,
                        "throughput_unit": "samples/s", "train_rss_bytes": mem,
                        "eval_accuracy": 0.5})
    return out


def test_series_follow_commit_time_not_file_order_and_steps_name_their_commits():
    recs = records()
    history = build_history(records_to_frame(list(reversed(recs))))
    assert len(history) == 6  # 2 configs x 3 metrics
    regs = regressions(history)
    assert [(s.config["model"], s.metric) for s, _ in regs] == [("transformer", "memory"),
                                                               ("convnet", "throughput")]
    mem, tput = (st for _, st in regs)
    assert (mem.last_before[:2], mem.first_after[:2]) == ("04", "05")
    assert mem.change == pytest.approx(0.20, abs=0.01)  # more memory: a regression
    assert (tput.last_before[:2], tput.first_after[:2]) == ("11", "12")
    assert tput.change == pytest.approx(-0.08, abs=0.01)
    # accuracy is flat everywhere: no steps there
    assert all(not s.steps for s in history if s.metric == "accuracy")


def test_failed_records_and_records_without_a_commit_are_left_out():
    recs = records()
    recs.append({**recs[0], "status": "error", "throughput": 1.0})
    recs.append({**recs[1], "git_commit": None, "throughput": 1.0})
    history = build_history(records_to_frame(recs), ["throughput"])
    assert all(len(s.points) == 20 for s in history)


def test_the_command_writes_html_markdown_and_pngs(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    for i, chunk in enumerate((records()[:20], records()[20:])):  # two files, one folder
        (results / f"ci-{i}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chunk))
    out = tmp_path / "history"
    assert main(["history", str(results), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "REGRESSION convnet bs32 fp32 sgd cpu throughput -7.9%" in printed  # ~ -8%
    assert "between 11cccccccccc and 12cccccccccc" in printed
    assert printed.strip().endswith("2 regression steps in 6 series")
    for name in ("history.html", "history.md", "history_throughput.png", "history_memory.png"):
        assert (out / name).stat().st_size > 0, name
    md = (out / "history.md").read_text()
    regressions_part = md.split("## Method")[0]
    assert "| convnet bs32 fp32 sgd cpu |" in regressions_part
    assert "11cccccccccc" in regressions_part and "12cccccccccc" in regressions_part


def test_hostile_strings_are_escaped_in_the_html(tmp_path):
    recs = [{**r, "model": "<script>alert(1)</script>"} for r in records()]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert main(["history", str(tmp_path / "r.jsonl"), "--out", str(tmp_path / "h")]) == 0
    page = (tmp_path / "h" / "history.html").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)" in page


@pytest.mark.parametrize("flags, names", [
    (["--metrics", "speed"], ["'speed'", "throughput, memory, accuracy"]),
    (["--threshold", "fast"], ["--threshold", "'fast'"]),
    (["--alpha", "2"], ["--alpha", "'2'"]),
    (["--min-segment", "0"], ["--min-segment", "0"]),
])
def test_bad_options_are_one_line_usage_errors(tmp_path, capsys, flags, names):
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records()))
    assert main(["history", str(tmp_path / "r.jsonl"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(n in err for n in names), err
    assert not (tmp_path / "reports").exists()


def test_results_without_commits_are_a_usage_error(tmp_path, capsys):
    recs = [{**r, "git_commit": None} for r in records()]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert main(["history", str(tmp_path / "r.jsonl"), "--out", str(tmp_path / "h")]) == 2
    assert "no ok records with a git commit" in capsys.readouterr().err


# ------------------------------------------------------------------ where exactly: the range


def test_a_noisy_boundary_point_widens_the_range_by_hand():
    # Levels 100 (points 0-6) and 90 (points 7-13); point 6 measured 96, between them.
    values = [100, 102, 98, 100, 101, 99, 96, 90, 92, 88, 90, 91, 89, 90]
    [(k, *_)] = detect_steps(values, alpha=0.05)
    assert k == 7  # split 7 costs 10 + 6 = 16 absolute deviation, split 6 costs 6 + 12 = 18
    # Scale b = (10 + 6) / 14; moving the split to 6 costs 18 - 16 = 2 <= b ln 20 = 3.42: in.
    # To 5: 2 + |99 - 90| - |99 - 100| = 10 > 3.42; to 8: |90 - 100| - |90 - 90| = 10: out.
    assert location_range(values, 7, 0, 14) == (6, 7)


def test_a_clean_step_has_a_single_commit_and_a_noiseless_one_too():
    assert location_range(series(step_at=12), 12, 0, 20) == (12, 12)
    flat_levels = [100.0] * 8 + [90.0] * 8
    assert location_range(flat_levels, 8, 0, 16) == (8, 8)


def test_the_range_is_reported_in_every_output(tmp_path, capsys):
    # a 10% drop at commit 12 whose commit-12 point measured 6% fast, and noise of +-3%
    values = [100 * (1 + 3 * w) for w in WIGGLE]
    values = [v * (0.9 if i >= 12 else 1) for i, v in enumerate(values)]
    values[12] = 96.0
    recs = [{**PROVENANCE, "model": "convnet", "dataset": "synthetic", "batch_size": 32,
             "precision": "fp32", "optimizer": "sgd", "status": "ok",
             "git_commit": f"{i:02d}" + "c" * 38, "git_commit_time":
             f"2026-11-01T{i:02d}:00:00+00:00", "timestamp": "2026-12-01T00:00:00+00:00",
             "throughput": v, "throughput_unit": "samples/s", "eval_accuracy": 0.5}
            for i, v in enumerate(values)]
    [step] = [st for s in build_history(records_to_frame(recs)) for st in s.steps]
    assert step.first_after[:2] == "13"  # the noisy point 12 fooled the best split ...
    assert (step.earliest[:2], step.latest[:2], step.candidates) == ("12", "13", 2)  # not this
    path = tmp_path / "h.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert main(["history", str(path), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "may be any of 2 from 12cccccccccc to 13cccccccccc" in out
    assert main(["history", str(path), "--out", str(tmp_path / "out"), "--format", "json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert [c[:2] for c in row["first_changed_range"]] == ["12", "13"]
    assert "12cccccccccc .. 13cccccccccc (2 commits)" in (tmp_path / "out" / "history.md") \
        .read_text()


def test_a_commits_point_is_the_median_of_its_runs_so_a_shift_in_one_round_is_left_out(
        tmp_path, capsys):
    """A backfill's three rounds: the machine ran 25% fast during round 1's runs of commits 3-6
    and 20% slow during round 2's of commits 14-17. Alone, round 2 puts the step at commit 14,
    where the slow stretch begins; with every round, each commit's median is its true value,
    and only the real step (ConvNet throughput, -8% at commit 12) remains."""
    def shifted(factor: float, commits: range) -> list[dict]:
        return [{**r, "throughput": r["throughput"] * factor}
                if int(r["git_commit"][:2]) in commits and r["model"] == "convnet" else r
                for r in records()]

    round1, round2 = shifted(1.25, range(3, 7)), shifted(0.8, range(14, 18))
    alone = regressions(build_history(records_to_frame(round2), ["throughput"]))
    assert [st.first_after[:2] for _, st in alone] == ["14"]  # the slow stretch moved the step
    history = build_history(records_to_frame(records() + round1 + round2), ["throughput"])
    (series,) = [s for s in history if s.config["model"] == "convnet"]
    assert {p.records for p in series.points} == {3}
    assert [(st.first_after[:2], round(st.change, 2)) for st in series.steps] == [("12", -0.08)]
    results = tmp_path / "r.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in records() + round1 + round2))
    assert main(["history", str(results), "--out", str(tmp_path / "h"),
                 "--metrics", "throughput"]) == 0
    md = (tmp_path / "h" / "history.md").read_text()
    assert "| runs per commit |" in md and "| convnet bs32 fp32 sgd cpu | " in md
    row = next(ln for ln in md.splitlines() if ln.startswith("| convnet") and "| 20 |" in ln)
    assert "| 20 | 3 |" in row  # 20 commits, 3 runs each
    capsys.readouterr()
