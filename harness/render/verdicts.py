"""Verdicts as text, Markdown (e.g. a CI job summary) and JSON: ``analysis.compare`` output in.

Every renderer takes the dict ``compare_frames`` returns and nothing else, so a verdict can be
re-rendered from its saved JSON.
"""

from __future__ import annotations

import json
from typing import Any

from harness.analysis import stats
from harness.analysis.matching import describe_differences


def _pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x * 100:+.{digits}f}%"


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.3g}"


def _cells(row: dict[str, Any]) -> list[str]:
    tp = row.get("throughput")
    if tp is None:
        return [row["label"], "-", "-", "-", "-", "-", "-", "-", row["verdict"], row["why"]]
    ci = ("-" if tp["ci_low"] is None
          else f"[{_pct(tp['ci_low'])}, {_pct(tp['ci_high'])}]")
    unit = (row.get("unit") or "").replace("/s", "")
    mem, acc = row["memory"], row["accuracy"]
    acc_text = "-" if acc["change"] is None else f"{100 * acc['change']:+.1f} pt"
    verdict = row["verdict"]
    if row["failed"]:
        verdict += f" ({', '.join(row['failed'])})"
    return [
        row["label"],
        f"{_num(tp['baseline_median'])} {unit} (n={tp['n_baseline']})".strip(),
        f"{_num(tp['candidate_median'])} (n={tp['n_candidate']})",
        _pct(tp["change"]),
        ci,
        "-" if tp["p_value"] is None else f"{tp['p_value']:.2g}",
        _pct(mem["change"]),
        acc_text,
        verdict,
        tp["reason"] if row["verdict"] in (stats.INCONCLUSIVE,) else "",
    ]


HEADER = ["config", "baseline", "candidate", "change", "95% CI", "p", "memory", "accuracy",
          "verdict", "note"]


def _headline(result: dict[str, Any]) -> str:
    s = result["summary"]
    return (f"{s['regression']} regression(s), {s['improvement']} improvement(s), "
            f"{s['no change']} no change, {s['inconclusive']} inconclusive "
            f"in {s['configs']} matched configs")


def _settings_line(result: dict[str, Any]) -> str:
    st = result["settings"]
    tests = sorted({r["throughput"]["test"] for r in result["rows"] if r.get("throughput")})
    return (f"throughput: regression = drop > {st['threshold']:.1%} and p < {st['alpha']:g} "
            f"({' / '.join(tests) or 'Mann-Whitney U'}); memory threshold "
            f"{st['memory_threshold']:.1%}; accuracy tolerance "
            f"{100 * st['accuracy_tolerance']:.2g} pt")


def _not_blocking(row: dict[str, Any]) -> str:
    """Why an inconclusive row does not fail the gate, or "" when it does."""
    if row.get("blocking", True):
        return ""
    if row.get("status", {}).get("baseline") == "unavailable":
        return " (runs on neither side here: does not fail the gate)"
    return " (a possible improvement: does not fail the gate)"


def _footer_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for row in result["rows"]:
        if row["verdict"] == stats.REGRESSION:
            lines.append(f"REGRESSION {row['label']}: {row['why']}")
    for row in result["rows"]:
        if row["verdict"] == stats.INCONCLUSIVE:
            lines.append(f"INCONCLUSIVE {row['label']}: {row['why']}" + _not_blocking(row))
    if result["summary"].get("exit_status") == 3:
        lines.append("exit 3: inconclusive verdicts remain; measure more repeats or rounds, or "
                     "pass --allow-inconclusive to accept them")
    if result.get("cpu_feature_differences"):
        lines.append("warning: the CPUs differ in features that decide speed (bf16, AVX-512, "
                     "AMX): " + describe_differences(
                         {k: (v["baseline"], v["candidate"])
                          for k, v in result["cpu_feature_differences"].items()}))
    if result["machine_differences"]:
        lines.append("warning: different machines or software (--allow-different-machines): "
                     + describe_differences({k: (v["baseline"], v["candidate"]) for k, v in
                                             result["machine_differences"].items()}))
    for label in result["only_in_baseline"]:
        lines.append(f"only in baseline (not compared): {label}")
    for label in result["only_in_candidate"]:
        lines.append(f"only in candidate (not compared): {label}")
    lines += [f"note: {n}" for n in result["notes"]]
    return lines


def render_text(result: dict[str, Any]) -> str:
    table = [HEADER] + [_cells(r) for r in result["rows"]]
    if not any(row[-1] for row in table[1:]):
        table = [row[:-1] for row in table]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += ["", _headline(result), _settings_line(result), *_footer_lines(result)]
    return "\n".join(lines)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(result: dict[str, Any], title: str = "trainmark compare") -> str:
    s = result["summary"]
    mark = ("REGRESSION" if s["regression"] else
            "INCONCLUSIVE" if s.get("exit_status") == 3 else "OK")
    table = [[_md_escape(c) for c in _cells(row)] for row in result["rows"]]
    header = HEADER if any(cells[-1] for cells in table) else HEADER[:-1]
    lines = [f"### {title}: **{mark}**: {_headline(result)}", "",
             "| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    for row, cells in zip(result["rows"], table, strict=True):
        if row["verdict"] == stats.REGRESSION:
            cells[-2] = f"**{cells[-2]}**"
        lines.append("| " + " | ".join(cells[:len(header)]) + " |")
    lines += ["", f"_{_settings_line(result)}._", ""]
    base, cand = result["baseline"], result["candidate"]
    lines.append(f"Baseline: {', '.join(base['git_commit']) or '?'} "
                 f"({base['records']} records); candidate: "
                 f"{', '.join(cand['git_commit']) or '?'} ({cand['records']} records); "
                 f"device: {', '.join(cand['device_name']) or '?'}, torch "
                 f"{', '.join(cand['torch_version']) or '?'}.")
    footer = _footer_lines(result)
    if footer:
        lines += [""] + [f"- {_md_escape(line)}" for line in footer]
    return "\n".join(lines) + "\n"


def render_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2, default=str, allow_nan=False)


RENDERERS = {"text": render_text, "md": render_markdown, "json": render_json}
