"""``trainmark compare BASELINE CANDIDATE``: per-config verdicts on speed, memory, accuracy, status.

Reads stored results only (JSON Lines or pytest-benchmark JSON, files or directories), matches
records on their config fields, and judges each matched config:

- **throughput**: Mann-Whitney U on the per-repeat samples (pooled over all records of the config
  on each side, e.g. the rounds of an A/B run) plus a relative threshold (``harness.stats``);
- **memory**: the allocator's peak on accelerators, the host process's peak RSS on the CPU;
  a regression is growth beyond ``--memory-threshold`` (and at least 1 MiB; 128 MiB for RSS);
- **accuracy**: held-out accuracy lower by more than ``--accuracy-tolerance`` points;
- **status**: ``ok`` in the baseline but not in the candidate is a regression.

Exit status: 0 no regression, 1 at least one regression, 2 usage error (bad file, nothing
matched, or results from different hardware/software without ``--allow-different-machines``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness import stats
from harness.config import CONFIG_FIELDS, RunConfig
from harness.errors import UserError
from harness.results import load_results

MIB = 1024 * 1024
# The number of repeats is the sample size, not part of what was measured: a 10-repeat baseline
# compares with a 5-repeat candidate.
NOT_IDENTITY = frozenset({"repeats"})
# Config axes that records from other trainmark versions (or pytest-benchmark files) may carry
# although this version's RunConfig lacks them.
EXTRA_AXES = ("compile", "channels_last", "nproc", "benchmark")
# Provenance that changes what a number means: a difference makes compare refuse (exit 2).
MACHINE_FIELDS = ("device_name", "cpu_model", "torch_version", "cuda_version", "cudnn_version",
                  "driver_version", "num_threads")
_CONFIG_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)
                    if f.default is not dataclasses.MISSING}
EXIT_OK, EXIT_REGRESSION, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class Settings:
    threshold: float = stats.DEFAULT_THRESHOLD  # relative throughput change (0.05 = 5%)
    memory_threshold: float = 0.05  # relative peak-memory growth
    accuracy_tolerance: float = 0.01  # absolute, as a fraction (0.01 = 1 point)
    alpha: float = stats.DEFAULT_ALPHA  # significance level of the two-sided test
    allow_different_machines: bool = False


# ------------------------------------------------------------------------------ loading


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; a directory stands for its ``*.jsonl`` and ``*.json`` files."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.iterdir()
                           if q.is_file() and q.suffix in (".jsonl", ".json"))
            if not found:
                raise UserError(f"{p}: no .jsonl or .json results files in this directory")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise UserError(f"results file not found: {p}")
    return out


def load_side(paths: Iterable[str | Path], name: str) -> pd.DataFrame:
    frame = load_results(expand_paths(paths))
    if frame.empty:
        raise UserError(f"{name}: no records in {', '.join(str(p) for p in paths)}")
    return frame


# ------------------------------------------------------------------------------ matching


def _py(value: Any) -> Any:
    """A hashable plain-Python value; pandas/NumPy missing values become None."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # NumPy scalar
        value = value.item()
    if isinstance(value, list):
        return tuple(value)
    return value


def _column(frame: pd.DataFrame, name: str) -> list[Any]:
    if name not in frame.columns:
        return [None] * len(frame)
    return [_py(v) for v in frame[name]]


def match_axes(base: pd.DataFrame, cand: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Fields to match records on, and notes about fields only one side has.

    RunConfig fields a record lacks (written by an older trainmark) take the field's default.
    An extra axis recorded on one side only is ignored when it has a single value there;
    with several values it stays in the key, so those configs are reported unmatched.
    """
    axes = [f for f in CONFIG_FIELDS if f not in NOT_IDENTITY]
    notes: list[str] = []
    for name in EXTRA_AXES:
        if name in CONFIG_FIELDS:
            continue
        in_b = any(v is not None for v in _column(base, name))
        in_c = any(v is not None for v in _column(cand, name))
        if in_b and in_c:
            axes.append(name)
        elif in_b or in_c:
            side, frame = ("baseline", base) if in_b else ("candidate", cand)
            values = {v for v in _column(frame, name) if v is not None}
            if len(values) > 1:
                axes.append(name)
            else:
                notes.append(f"{name!r} is recorded only in the {side} ({values.pop()!r}); "
                             "ignored for matching")
    return axes, notes


def config_keys(frame: pd.DataFrame, axes: Sequence[str]) -> list[tuple]:
    cols = []
    for name in axes:
        default = _CONFIG_DEFAULTS.get(name)
        cols.append([default if v is None else v for v in _column(frame, name)])
    return list(zip(*cols, strict=True)) if cols else [()] * len(frame)


def _groups(frame: pd.DataFrame, axes: Sequence[str]) -> dict[tuple, list[int]]:
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(config_keys(frame, axes)):
        groups.setdefault(key, []).append(i)
    return groups


# ------------------------------------------------------------------------------ machines


def machine_differences(base: pd.DataFrame, cand: pd.DataFrame) -> dict[str, tuple[list, list]]:
    """Provenance fields whose known values differ between the sides (unknown is not a
    difference: older files or pytest-benchmark files may lack a field)."""
    diffs: dict[str, tuple[list, list]] = {}
    for name in MACHINE_FIELDS:
        vb = sorted({str(v) for v in _column(base, name) if v is not None})
        vc = sorted({str(v) for v in _column(cand, name) if v is not None})
        if vb and vc and vb != vc:
            diffs[name] = (vb, vc)
    return diffs


def describe_differences(diffs: dict[str, tuple[list, list]]) -> str:
    return "; ".join(f"{k}: {'/'.join(b)!r} vs {'/'.join(c)!r}" for k, (b, c) in diffs.items())


# ------------------------------------------------------------------------------ analysis


def _throughput_samples(rows: pd.DataFrame) -> list[float]:
    samples: list[float] = []
    for _, r in rows.iterrows():
        if _py(r.get("status")) != "ok":
            continue
        reps = r.get("repeat_throughputs")
        if isinstance(reps, (list, tuple)) and reps:
            samples.extend(stats.clean_samples(reps))
        elif _py(r.get("throughput")) is not None:
            samples.append(float(r["throughput"]))
    return samples


def _throughput(b: pd.DataFrame, c: pd.DataFrame, s: Settings) -> stats.SampleComparison:
    """Per-repeat throughput test: within A/B pairs when every record carries ``ab_round``
    (``trainmark ab``), else on all samples of each side pooled."""
    rounds_b, rounds_c = _column(b, "ab_round"), _column(c, "ab_round")
    common = sorted(set(rounds_b) & set(rounds_c) - {None})
    if common and None not in rounds_b and None not in rounds_c:
        strata = [(_throughput_samples(b[[x == r for x in rounds_b]]),
                   _throughput_samples(c[[x == r for x in rounds_c]])) for r in common]
        return stats.compare_stratified(strata, threshold=s.threshold, alpha=s.alpha)
    return stats.compare_samples(_throughput_samples(b), _throughput_samples(c),
                                 threshold=s.threshold, alpha=s.alpha)


def _median(values: Iterable[Any]) -> float | None:
    vals = [float(v) for v in values if _py(v) is not None]
    if not vals:
        return None
    vals.sort()
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def _status(rows: pd.DataFrame) -> tuple[str, str | None]:
    """``ok`` when every record of the config is ok, else the first other status and error."""
    for _, r in rows.iterrows():
        status = _py(r.get("status")) or "unknown"
        if status != "ok":
            return status, _py(r.get("error"))
    return "ok", None


# Growth smaller than this never counts. The allocator's peak is exact; the host's peak RSS
# (the CPU's memory figure) includes the ~1.2 GiB torch runtime, grows over a process's life,
# and two A/B workers running identical code differed by up to 75 MiB on this project's CPU
# machine, so only gross growth of RSS is a regression.
MEMORY_FLOOR = {"peak_memory_allocated_bytes": MIB, "peak_rss_bytes": 128 * MIB}


def _memory(b: pd.DataFrame, c: pd.DataFrame, s: Settings) -> dict[str, Any]:
    for field, floor in MEMORY_FLOOR.items():
        mb = _median(_column(b, field))
        mc = _median(_column(c, field))
        if mb is not None and mc is not None:
            change, verdict = stats.compare_values(
                mb, mc, threshold=s.memory_threshold, higher_is_better=False,
                min_abs_change=floor)
            return {"field": field, "baseline": mb, "candidate": mc, "change": change,
                    "verdict": verdict}
    measured = any(_median(_column(side, f)) is not None for side in (b, c)
                   for f in ("peak_memory_allocated_bytes", "peak_rss_bytes"))
    # Not measured on either side (e.g. a pytest-benchmark of a function): nothing to judge.
    return {"field": None, "baseline": None, "candidate": None, "change": None,
            "verdict": stats.INCONCLUSIVE if measured else stats.NO_CHANGE}


def _accuracy(b: pd.DataFrame, c: pd.DataFrame, s: Settings) -> dict[str, Any]:
    ab = _median(_column(b, "eval_accuracy"))
    ac = _median(_column(c, "eval_accuracy"))
    change, verdict = stats.compare_values(ab, ac, threshold=s.accuracy_tolerance,
                                           higher_is_better=True, absolute=True)
    if ab is None and ac is None:
        verdict = stats.NO_CHANGE  # nothing to judge (e.g. a pytest-benchmark of a function)
    return {"baseline": ab, "candidate": ac, "change": change, "verdict": verdict}


CORE_AXES = ("model", "dataset", "device", "batch_size", "precision", "optimizer")


def _distinguishing(axes: Sequence[str], keys: Sequence[tuple]) -> set[str]:
    """Axes besides the core ones needed to tell the configs apart (labels stay short: lr,
    which follows from model and optimizer, is not shown)."""
    core = [i for i, a in enumerate(axes) if a in CORE_AXES]
    by_core: dict[tuple, list[tuple]] = {}
    for k in keys:
        by_core.setdefault(tuple(k[i] for i in core), []).append(k)
    return {a for i, a in enumerate(axes) if a not in CORE_AXES
            and any(len({k[i] for k in group}) > 1 for group in by_core.values())}


def _label(config: dict[str, Any], varying: set[str]) -> str:
    if config.get("model") is None and config.get("benchmark"):
        return str(config["benchmark"])
    parts = [str(config.get("model")), str(config.get("dataset")), str(config.get("device")),
             f"bs={config.get('batch_size')}", str(config.get("precision")),
             str(config.get("optimizer"))]
    parts += [f"{k}={config[k]}" for k in sorted(varying - set(CORE_AXES)) if k in config]
    return " ".join(parts)


def compare_frames(base: pd.DataFrame, cand: pd.DataFrame,
                   settings: Settings = Settings()) -> dict[str, Any]:
    """The whole comparison as a JSON-ready dict (rows, summary, unmatched configs, notes)."""
    diffs = machine_differences(base, cand)
    if diffs and not settings.allow_different_machines:
        raise UserError("baseline and candidate come from different machines or software ("
                        + describe_differences(diffs)
                        + "); pass --allow-different-machines to compare anyway")
    axes, notes = match_axes(base, cand)
    gb, gc = _groups(base, axes), _groups(cand, axes)
    matched = [k for k in gb if k in gc]
    if not matched:
        raise UserError(f"no config matched: the baseline has {len(gb)} configs, the candidate "
                        f"{len(gc)}, none with the same {', '.join(a for a in axes[:6])}, ...")
    varying = _distinguishing(axes, matched)
    rows: list[dict[str, Any]] = []
    for key in matched:
        b, c = base.iloc[gb[key]], cand.iloc[gc[key]]
        config = {a: v for a, v in zip(axes, key, strict=True) if v is not None}
        st_b, err_b = _status(b)
        st_c, err_c = _status(c)
        row: dict[str, Any] = {"config": config, "label": _label(config, varying),
                               "unit": _py(c["throughput_unit"].iloc[0])
                               or _py(b["throughput_unit"].iloc[0]),
                               "records": [len(b), len(c)],
                               "status": {"baseline": st_b, "candidate": st_c,
                                          "error": err_c or err_b}}
        if st_b == "ok" and st_c != "ok":
            row.update(verdict=stats.REGRESSION, failed=["status"],
                       why=f"ok -> {st_c}: {err_c or ''}".rstrip(": "))
        elif st_b != "ok" and st_c == "ok":
            row.update(verdict=stats.IMPROVEMENT, failed=[], why=f"{st_b} -> ok")
        elif st_b != "ok":
            row.update(verdict=stats.INCONCLUSIVE, failed=[],
                       why=f"not ok on both sides ({st_b} / {st_c})")
        else:
            tp = _throughput(b, c, settings)
            mem, acc = _memory(b, c, settings), _accuracy(b, c, settings)
            row.update(throughput=tp.as_dict(), memory=mem, accuracy=acc)
            parts = {"throughput": tp.verdict, "memory": mem["verdict"],
                     "accuracy": acc["verdict"]}
            row["verdict"] = stats.combine([tp.verdict, mem["verdict"], acc["verdict"]])
            row["failed"] = [k for k, v in parts.items() if v == stats.REGRESSION]
            row["why"] = _why(row, tp, parts)
        rows.append(row)
    counts = {v: sum(r["verdict"] == v for r in rows) for v in stats.VERDICTS}
    unmatched = [k for k in gb if k not in gc] + [k for k in gc if k not in gb]
    shown = _distinguishing(axes, matched + unmatched)
    only_b = [_label(dict(zip(axes, k, strict=True)), shown) for k in gb if k not in gc]
    only_c = [_label(dict(zip(axes, k, strict=True)), shown) for k in gc if k not in gb]
    return {
        "summary": {"configs": len(rows), **counts,
                    "exit_status": EXIT_REGRESSION if counts[stats.REGRESSION] else EXIT_OK},
        "settings": dataclasses.asdict(settings),
        "matched_on": axes,
        "machine_differences": {k: {"baseline": b, "candidate": c}
                                for k, (b, c) in diffs.items()},
        "baseline": _side_info(base),
        "candidate": _side_info(cand),
        "rows": rows,
        "only_in_baseline": only_b,
        "only_in_candidate": only_c,
        "notes": notes,
    }


def _why(row: dict[str, Any], tp: stats.SampleComparison, parts: dict[str, str]) -> str:
    bits = []
    if parts["memory"] in (stats.REGRESSION, stats.IMPROVEMENT):
        bits.append(f"memory {row['memory']['change']:+.1%} ({parts['memory']})")
    if parts["accuracy"] in (stats.REGRESSION, stats.IMPROVEMENT):
        bits.append(f"accuracy {100 * row['accuracy']['change']:+.1f} pt ({parts['accuracy']})")
    bits.append(f"throughput: {tp.reason}")
    return "; ".join(bits)


def _side_info(frame: pd.DataFrame) -> dict[str, Any]:
    def values(name: str) -> list[Any]:
        return sorted({str(v) for v in _column(frame, name) if v is not None})

    return {"records": len(frame), "sources": values("source"), "git_commit": values("git_commit"),
            **{k: values(k) for k in MACHINE_FIELDS}}


# ------------------------------------------------------------------------------ rendering


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


def _footer_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for row in result["rows"]:
        if row["verdict"] == stats.REGRESSION:
            lines.append(f"REGRESSION {row['label']}: {row['why']}")
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
    mark = "REGRESSION" if s["regression"] else "OK"
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


# ------------------------------------------------------------------------------ CLI


def parse_percent(text: str, flag: str) -> float:
    """``5%`` or ``5`` -> 0.05 (a bare number is in percent too)."""
    raw = str(text).strip()
    number = raw[:-1] if raw.endswith("%") else raw
    try:
        value = float(number)
    except ValueError:
        raise UserError(f"{flag} takes a percentage such as 5% or 2.5, got {text!r}") from None
    if not (math.isfinite(value) and 0 <= value < 100):
        raise UserError(f"{flag} must be a percentage in [0, 100), got {text!r}")
    return value / 100


def add_compare_options(p: argparse.ArgumentParser) -> None:
    """Verdict and output options shared by ``compare``, ``ab`` and ``baseline check``."""
    p.add_argument("--threshold", default="5%",
                   help="smallest throughput change that counts (default 5%%)")
    p.add_argument("--memory-threshold", default="5%",
                   help="smallest peak-memory growth that counts (default 5%%)")
    p.add_argument("--accuracy-tolerance", default="1.0",
                   help="accuracy drop in percentage points that counts (default 1.0)")
    p.add_argument("--alpha", default="0.01",
                   help="significance level of the Mann-Whitney U test (default 0.01)")
    p.add_argument("--format", choices=sorted(RENDERERS), default="text",
                   help="what to print: text table, Markdown, or JSON")
    p.add_argument("--md-out", metavar="FILE", help="also write the Markdown verdict here")
    p.add_argument("--json-out", metavar="FILE", help="also write the JSON verdict here")
    p.add_argument("--allow-different-machines", action="store_true",
                   help="compare results from different hardware or software anyway")


def settings_from_args(args: argparse.Namespace) -> Settings:
    try:
        tolerance = float(str(args.accuracy_tolerance).rstrip("%").removesuffix("pt"))
        alpha = float(args.alpha)
    except ValueError:
        raise UserError(f"--accuracy-tolerance takes points (e.g. 1.0) and --alpha a "
                        f"probability; got {args.accuracy_tolerance!r}, {args.alpha!r}") from None
    if not (math.isfinite(tolerance) and 0 <= tolerance <= 100):
        raise UserError(f"--accuracy-tolerance must be in [0, 100] points, got {tolerance}")
    if not 0 < alpha < 1:
        raise UserError(f"--alpha must be in (0, 1), got {args.alpha!r}")
    return Settings(threshold=parse_percent(args.threshold, "--threshold"),
                    memory_threshold=parse_percent(args.memory_threshold, "--memory-threshold"),
                    accuracy_tolerance=tolerance / 100, alpha=alpha,
                    allow_different_machines=bool(args.allow_different_machines))


def report(base: pd.DataFrame, cand: pd.DataFrame, args: argparse.Namespace,
           title: str = "trainmark compare") -> int:
    """Compare, print in ``--format``, write ``--md-out``/``--json-out``; the exit status."""
    settings = settings_from_args(args)
    result = compare_frames(base, cand, settings)
    for path, text in ((args.md_out, lambda: render_markdown(result, title)),
                       (args.json_out, lambda: render_json(result))):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text(), encoding="utf-8")
    if args.format == "md":
        print(render_markdown(result, title), end="")
    else:
        print(RENDERERS[args.format](result))
    return int(result["summary"]["exit_status"])


def cmd_compare(args: argparse.Namespace) -> int:
    settings_from_args(args)  # bad options fail before any file is read
    base = load_side(args.baseline, "baseline")
    cand = load_side(args.candidate, "candidate")
    return report(base, cand, args)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", allow_abbrev=False,
                       help="regression verdicts: baseline vs candidate results",
                       description=__doc__.splitlines()[0])
    p.add_argument("baseline", nargs=1, metavar="BASELINE",
                   help="results file or directory (.jsonl, pytest-benchmark .json)")
    p.add_argument("candidate", nargs=1, metavar="CANDIDATE", help="results file or directory")
    add_compare_options(p)
    p.set_defaults(func=cmd_compare)

