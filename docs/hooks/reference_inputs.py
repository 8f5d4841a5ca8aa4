"""What the generated reference states beyond the parsers and the schema's dicts, read from the
code when the site builds (docs/hooks/reference.py renders it):

- the record's sections: the groups that ``harness/schema.py`` writes as comments in
  ``COLUMNS``, so the page has the same headings as the contract, kept by its authors;
- per suite, how many configs it expands to (``core.suites.expand``, on a CPU and on a GPU);
- per suite, the committed example results that measured exactly its configs, with the time;
- the defaults a suite key takes when nothing sets it (``core.suites.DEFAULTS``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import json
import re
from pathlib import Path
from typing import Any

from harness import schema
from harness.cli.sweep_options import SWEEP_OPTIONS
from harness.core.config import RunConfig, record_key
from harness.core.suites import AUTO, DEFAULTS, expand, list_suites, load_suite, merge_settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "results" / "examples"
_COLUMN = re.compile(r'\s*"([^"]+)"\s*:')


def _heading(comment: str) -> str:
    """``# sharded training (core/parallel.py): how ...`` -> ``Sharded training``."""
    text = re.split(r" \(|:|;", comment.strip(), maxsplit=1)[0].strip()
    return text[:1].upper() + text[1:]


def record_sections() -> list[tuple[str, list[str]]]:
    """``schema.COLUMNS`` in its source's groups: a comment line (or a run of them) opens a
    group, named by the comment's first words. Fails the build if the parse does not place
    every column exactly once, in order (a changed layout of schema.py must be noticed)."""
    source = inspect.getsource(schema)
    body = source.split("COLUMNS: dict[str, str] = {", 1)[1].split("\n}", 1)[0]
    sections: list[tuple[str, list[str]]] = []
    after_comment = False
    for line in body.splitlines():
        text = line.strip()
        if text.startswith("#"):
            if not after_comment:
                sections.append((_heading(text[1:]), []))
            after_comment = True
            continue
        after_comment = False
        match = _COLUMN.match(line)
        if match:
            sections[-1][1].append(match.group(1))
    placed = [name for _, names in sections for name in names]
    if placed != list(schema.COLUMNS):
        raise RuntimeError("docs/hooks: could not read the groups of schema.COLUMNS")
    return sections


def _device(spec: str, gpu: str) -> str:
    """A suite's device spec on a machine whose accelerator is ``gpu`` (``cpu``: none)."""
    return "cpu" if spec == "cpu" else (gpu if spec in ("auto", "cuda") else spec)


def _settings(name: str) -> dict[str, Any]:
    return merge_settings(load_suite(name), {})


def suite_configs(name: str) -> dict[str, int]:
    """How many configs suite ``name`` expands to, on a CPU (unless it names a GPU) and on a
    GPU (unless it names the CPU)."""
    devices = {str(d) for d in _settings(name)["devices"]}
    out = {}
    if devices <= {"auto", "cpu"}:
        out["a CPU"] = len(expand(_settings(name), resolve=lambda d: _device(d, "cpu")))
    if devices != {"cpu"}:
        out["a GPU"] = len(expand(_settings(name), resolve=lambda d: _device(d, "cuda:0")))
    return out


def _example_runs() -> list[tuple[Path, list[dict[str, Any]]]]:
    runs = []
    for path in sorted(EXAMPLES.glob("*.jsonl")):
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                   if line.strip()]
        if records and all("model" in r and "dataset" in r for r in records):
            runs.append((path, records))
    return runs


def _span_s(records: list[dict[str, Any]]) -> float:
    """First config's start to last config's end: a record's timestamp is written when its
    config ends, and its ``wall_time_s`` is how long that config took."""
    times = sorted(dt.datetime.fromisoformat(r["timestamp"]) for r in records)
    first = min(records, key=lambda r: r["timestamp"])
    return (times[-1] - times[0]).total_seconds() + float(first.get("wall_time_s") or 0.0)


def measured_suites(link_prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Per suite, the committed example results whose configs are exactly the suite's on the
    device they ran on, with the sweep's time and machine (``link_prefix`` + file name: where
    the built site holds the file)."""
    out: dict[str, list[dict[str, Any]]] = {}
    runs = _example_runs()
    for name in list_suites():
        for path, records in runs:
            devices = {r["device"] for r in records}
            if len(devices) != 1:
                continue
            (device,) = devices
            configs = expand(_settings(name), resolve=lambda d, dev=device: _device(d, dev))
            if {c.key() for c in configs} != {record_key(r) for r in records}:
                continue
            first = records[0]
            out.setdefault(name, []).append({
                "file": f"results/examples/{path.name}", "link": link_prefix + path.name,
                "configs": len(records), "seconds": _span_s(records),
                "machine": first.get("device_name") or first.get("cpu_model") or "unknown",
                "threads": first.get("num_threads"), "date": first["timestamp"][:10]})
    return out


def _config_comments() -> dict[str, str]:
    """``RunConfig``'s fields -> the comment on their line (its documented meaning)."""
    comments = {}
    for line in inspect.getsource(RunConfig).splitlines():
        match = re.match(r"\s*(\w+):[^#]*#\s*(.+)$", line)
        if match:
            comments[match.group(1)] = match.group(2)
    return comments


def defaults() -> list[tuple[str, Any, str]]:
    """(suite key, its default, what it means) for every key a suite may set."""
    helps = {o.key: o.help for o in SWEEP_OPTIONS}
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    comments = _config_comments()
    rows = []
    # How the sweep reads two empty values (core.suites): no warm-up count is the adaptive
    # warm-up, and no dataset is each model's own.
    shown = {**DEFAULTS, "warmup": DEFAULTS["warmup"] if DEFAULTS["warmup"] is not None
             else AUTO, "datasets": DEFAULTS["datasets"] or "each model's default dataset"}
    for key, value in shown.items():
        meaning = helps.get(key) or (comments.get(key, "") if key in fields else "")
        rows.append((key, value[0] if isinstance(value, list) and len(value) == 1 else value,
                     meaning))
    return rows


def sweep_flag_defaults() -> dict[str, Any]:
    """Sweep flag -> the value it takes when neither the suite nor the command line sets it."""
    return {o.flag: DEFAULTS[o.key] for o in SWEEP_OPTIONS if o.key in DEFAULTS}
