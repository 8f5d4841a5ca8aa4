"""What the published site's pages show, as plain JSON-able data: one overview entry and one
page payload per series (``analysis.history.Series``), and the hardware matrix.

Pure functions: no files here (``site.files`` writes them, ``site.build`` decides which). Every
string is data for the browser, which puts it into the page as text, never as markup.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence

from harness.analysis.cost import cost_per_million
from harness.analysis.history import Series
from harness.render.figures import series_label

SPARK_POINTS = 120  # a sparkline shows at most this many values: bucket means of longer series
# Config fields shown as filters and columns; the rest of a series' config is its "details".
SHOWN = ("model", "dataset", "batch_size", "precision", "optimizer", "device")


def series_id(series: Series) -> str:
    """A stable, file-name-safe id: the same config, machine and metric give the same id in
    every build, so a series page's address survives rebuilds."""
    parts = [series.machine, series.metric, sorted(series.config.items())]
    if series.host is not None:  # a runner's own series (pooled ones keep their old ids)
        parts.append(series.host)
    key = json.dumps(parts, default=str)
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def _num(value: float) -> float | None:
    return float(f"{value:.6g}") if value is not None and math.isfinite(value) else None


def spark(values: Sequence[float], limit: int = SPARK_POINTS) -> list[float | None]:
    """At most ``limit`` values: the series itself, or the means of equal buckets of it."""
    n = len(values)
    if n <= limit:
        return [_num(v) for v in values]
    out = []
    for b in range(limit):
        chunk = values[b * n // limit:(b + 1) * n // limit]
        out.append(_num(sum(chunk) / len(chunk)))
    return out


def _plain(value: object) -> object:
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def _steps(series: Series) -> list[dict[str, object]]:
    index = {p.commit: i for i, p in enumerate(series.points)}
    n = len(series.points)
    return [{"index": st.index, "at": st.index / max(1, n - 1),
             "first": index.get(st.earliest, st.index), "last": index.get(st.latest, st.index),
             "last_before": st.last_before, "first_after": st.first_after,
             "earliest": st.earliest, "latest": st.latest, "candidates": st.candidates,
             "time": series.points[st.index].time, "before": _num(st.before),
             "after": _num(st.after), "change": _num(st.change), "p": _num(st.p_value),
             "p_adjusted": _num(st.p_adjusted), "verdict": st.verdict}
            for st in series.steps]


def overview_entry(series: Series, sid: str) -> dict[str, object]:
    """What the overview's row of a series needs: identity, filters, sparkline, latest value and
    the steps (the newest regression decides the row's place)."""
    config = {k: _plain(v) for k, v in series.config.items() if v is not None}
    last = series.points[-1]
    return {
        "id": sid, "metric": series.metric, "unit": series.unit,
        "higher_is_better": series.higher_is_better, "machine": series.machine,
        "runner": series.host,  # a runner's own series; None: every runner of the machine
        **{k: config.get(k) for k in SHOWN}, "label": series_label(series.config),
        "details": {k: v for k, v in config.items() if k not in SHOWN},
        "n": len(series.points), "first_time": series.points[0].time,
        "last": {"commit": last.commit, "time": last.time, "value": _num(last.value)},
        "spark": spark([p.value for p in series.points]),
        "steps": _steps(series),
    }


def series_payload(series: Series, sid: str, records: Sequence[Sequence[tuple[str, str]]],
                   params: Mapping[str, object]) -> dict[str, object]:
    """A series page's data: every point (commit, time, value, records per point as
    ``[shard, record_id]`` pairs for the record page), the steps with their commit ranges, and
    the detection's settings."""
    entry = overview_entry(series, sid)
    entry.pop("spark")
    pts = series.points
    entry.update({
        "config": {k: _plain(v) for k, v in series.config.items()},
        "column": series.column,
        "points": {"commit": [p.commit for p in pts], "time": [p.time for p in pts],
                   "value": [_num(p.value) for p in pts], "runs": [p.records for p in pts]},
        "records": [[list(pair) for pair in per] for per in records],
        "params": dict(params),
    })
    return entry


def varying_details(entries: Sequence[dict[str, object]]) -> list[dict[str, object]]:
    """The entries with only the details that tell series apart: a config field with one value
    in every series (a default nobody swept) is left out, as the hardware comparison does."""
    values: dict[str, set[str]] = {}
    for e in entries:
        for k, v in e["details"].items():
            values.setdefault(k, set()).add(json.dumps(v, default=str))
    counts = {k: sum(1 for e in entries if k in e["details"]) for k in values}
    keep = {k for k, v in values.items() if len(v) > 1 or counts[k] < len(entries)}
    return [{**e, "details": {k: v for k, v in e["details"].items() if k in keep}}
            for e in entries]


def newest_regression(entry: Mapping[str, object]) -> str:
    """The time of the newest regression step of an overview entry ('' if none): the overview
    lists these first, newest on top."""
    times = [str(st["time"]) for st in entry["steps"] if st["verdict"] == "regression"]
    return max(times, default="")


def order_entries(entries: Sequence[dict[str, object]]) -> list[dict[str, object]]:
    """Series with a regression first, newest regression on top; then the rest by name."""
    flagged = sorted((e for e in entries if newest_regression(e)),
                     key=lambda e: (newest_regression(e), e["label"]), reverse=True)
    rest = sorted((e for e in entries if not newest_regression(e)),
                  key=lambda e: (e["label"], e["machine"], e["metric"]))
    return [*flagged, *rest]


def matrix(entries: Sequence[Mapping[str, object]], machines: Mapping[str, Mapping[str, object]],
           prices: Mapping[str, float], reference: str) -> dict[str, object]:
    """The hardware matrix: per metric, one row per config (the series' config without the
    device, which differs between machines by nature), one cell per machine with the value of
    its series' latest point and that point's commit; each machine's latest commit; prices and
    USD per million items at the latest throughput where a price is given. The page divides by
    the reference the reader picks (``reference`` first)."""
    latest: dict[str, tuple[str, str]] = {}  # machine -> (time, commit) of its newest point
    rows: dict[tuple[str, str], dict[str, object]] = {}
    for e in entries:
        if e.get("runner"):
            continue  # the matrix compares machines: their pooled series
        last = e["last"]
        m = str(e["machine"])
        if (last["time"], last["commit"]) > latest.get(m, ("", "")):
            latest[m] = (last["time"], last["commit"])
        config = {k: e[k] for k in SHOWN if k != "device" and e.get(k) is not None}
        config.update(e["details"])
        label = " ".join(f"{k}={v}" for k, v in e["details"].items())
        key = (str(e["metric"]), json.dumps(sorted(config.items()), default=str))
        row = rows.setdefault(key, {"metric": e["metric"], "unit": e["unit"],
                                    "higher_is_better": e["higher_is_better"],
                                    **{k: e.get(k) for k in SHOWN if k != "device"},
                                    "details": label, "cells": {}})
        cell = {"value": last["value"], "commit": last["commit"], "time": last["time"],
                "series": e["id"]}
        if e["metric"] == "throughput" and m in prices and last["value"]:
            cell["usd_per_million"] = _num(cost_per_million(prices[m], float(last["value"])))
        row["cells"][m] = cell
    order = [reference, *sorted(m for m in machines if m != reference)]
    return {
        "reference": reference, "machines": order,
        "info": {m: {**machines[m], "latest_commit": latest.get(m, ("", ""))[1],
                     "latest_time": latest.get(m, ("", ""))[0], "usd_per_hour": prices.get(m)}
                 for m in order},
        "rows": sorted(rows.values(), key=lambda r: (str(r["metric"]), str(r["model"]),
                                                      str(r["dataset"]), r["batch_size"] or 0,
                                                      str(r["precision"]), str(r["optimizer"]),
                                                      str(r["details"]))),
    }


PROVENANCE = ("host", "os", "python", "torch_version", "torchvision_version", "cuda_version",
              "cudnn_version", "device_name", "driver_version", "cpu_model", "num_threads",
              "tf32_matmul", "tf32_cudnn", "float32_matmul_precision", "cudnn_benchmark",
              "omp_num_threads_env", "host_heap", "isolation", "executor", "job_id",
              "partition", "node")
CODE_IDENTITY = ("git_commit", "git_commit_time", "code_identity", "code_digest",
                 "trainmark_version", "schema_version", "run_id", "record_id", "timestamp",
                 "recorded_by", "injected_slowdown")


def record_fields(config_fields: Sequence[str], columns: Sequence[str]) -> dict[str, object]:
    """How the record page groups a record's fields: config, outcome, code identity,
    provenance, then every other schema column (the results) in the schema's order; fields
    the schema does not know come last. The loss curve is drawn, not listed."""
    named = {*config_fields, *PROVENANCE, *CODE_IDENTITY, "status", "error", "loss_curve"}
    return {"groups": [["Config", list(config_fields)], ["Outcome", ["status", "error"]],
                       ["Code identity", list(CODE_IDENTITY)], ["Provenance", list(PROVENANCE)],
                       ["Results", [c for c in columns if c not in named]]],
            "hidden": ["loss_curve", "source"]}
