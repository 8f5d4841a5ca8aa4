"""pytest-benchmark JSON files as trainmark records, so ``load_results`` and ``compare`` read them.

Both kinds of file pytest-benchmark writes have the same shape: ``--benchmark-json FILE`` and the
files ``--benchmark-autosave`` / ``--benchmark-save`` put under ``.benchmarks/<machine>/``::

    {"machine_info": {...}, "commit_info": {...}, "datetime": "...", "version": "5.2.3",
     "benchmarks": [{"name", "fullname", "params", "extra_info": {...}, "options": {...},
                     "stats": {"min", "median", "iqr", "ops", "rounds", ..., "data"?}}]}

- A benchmark from ``benchmarks/test_training.py`` carries the harness's own record in
  ``extra_info`` (throughput samples, memory, accuracy, status, provenance): that record is used
  as it is, with the test's name added as ``benchmark_name``.
- Any other benchmark becomes a minimal record identified by its ``benchmark`` name, with
  ``throughput`` in calls/s (1 / median time) and, when the file was saved with
  ``--benchmark-save-data``, one throughput sample per round.

Parsing is plain ``json``; nothing is unpickled or evaluated.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from harness.errors import UserError
from harness.schema import MACHINE_FIELDS, SCHEMA_VERSION


def is_pytest_benchmark(obj: object) -> bool:
    return isinstance(obj, dict) and "benchmarks" in obj


def is_trainmark_record(extra: object) -> bool:
    return isinstance(extra, dict) and "schema_version" in extra and "model" in extra


def records_from_text(text: str, path: str | os.PathLike[str]) -> list[dict[str, Any]] | None:
    """Records of a pytest-benchmark JSON document, or None if ``text`` is not one."""
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if not is_pytest_benchmark(obj):
        return None
    return records_from_json(obj, path)


def records_from_json(obj: dict[str, Any], path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    benches = obj.get("benchmarks")
    if not isinstance(benches, list):
        raise UserError(f"{path}: pytest-benchmark file whose 'benchmarks' is not a list")
    machine = obj.get("machine_info") if isinstance(obj.get("machine_info"), dict) else {}
    commit = obj.get("commit_info") if isinstance(obj.get("commit_info"), dict) else {}
    records = []
    for i, bench in enumerate(benches):
        if not isinstance(bench, dict):
            raise UserError(f"{path}: benchmark {i} is not a JSON object")
        name = bench.get("fullname") or bench.get("name") or f"benchmark-{i}"
        extra = bench.get("extra_info")
        if is_trainmark_record(extra):
            rec = dict(extra)
            rec["benchmark_name"] = name
        else:
            rec = _foreign_record(bench, name, obj, path)
        _fill_provenance(rec, machine, commit)
        records.append(rec)
    return records


def _seconds(stats: dict[str, Any], key: str) -> float | None:
    value = stats.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _foreign_record(bench: dict[str, Any], name: str, obj: dict[str, Any],
                    path: str | os.PathLike[str]) -> dict[str, Any]:
    stats = bench.get("stats")
    if not isinstance(stats, dict):
        raise UserError(f"{path}: benchmark {name!r} has no 'stats' object")
    median = _seconds(stats, "median")
    iqr = _seconds(stats, "iqr")
    data = stats.get("data")
    samples = None
    if isinstance(data, list):
        samples = [1.0 / t for t in data
                   if isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0]
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": f"pytest-benchmark-{obj.get('datetime')}",
        "timestamp": obj.get("datetime"),
        "benchmark": name,
        "status": "ok",
        "error": None,
        "throughput": 1.0 / median if median else None,
        "throughput_unit": "calls/s",
        "repeat_throughputs": samples,
        "step_time_ms_median": None if median is None else median * 1e3,
        "step_time_ms_iqr": None if iqr is None else iqr * 1e3,
    }


def _fill_provenance(rec: dict[str, Any], machine: dict[str, Any],
                     commit: dict[str, Any]) -> None:
    """Fields the record lacks, from the file's machine_info and commit_info."""
    # benchmarks/conftest.py adds these to machine_info (pytest_benchmark_update_machine_info)
    for key in MACHINE_FIELDS:
        if rec.get(key) is None and machine.get(key) is not None:
            rec[key] = machine[key]
    cpu = machine.get("cpu") if isinstance(machine.get("cpu"), dict) else {}
    fallbacks = {"host": machine.get("node"), "python": machine.get("python_version"),
                 "cpu_model": cpu.get("brand_raw")}
    for key, value in fallbacks.items():
        if rec.get(key) is None and value is not None:
            rec[key] = value
    if rec.get("git_commit") is None and commit.get("id"):
        rec["git_commit"] = str(commit["id"]) + ("-dirty" if commit.get("dirty") else "")
