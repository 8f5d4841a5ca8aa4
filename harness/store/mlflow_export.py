"""Stored records into MLflow, where many teams already look (``trainmark export mlflow``).

Each record becomes one MLflow run: its config as params, its numeric results (throughput,
step times, memory, accuracy, losses, MFU, energy, ...) as metrics, its provenance and code
identity as tags (``git_commit`` also as MLflow's own ``mlflow.source.git.commit``), the loss
curve as the history of metric ``loss_curve`` (step = the training step each stored point
ends, as ``core.losscurve.curve_steps`` counts) and every repeat's throughput as the history
of ``repeat_throughput``. A run is FINISHED for an ``ok`` record, else FAILED with the
record's status and error as tags.

Exporting twice creates no duplicates: every run carries the tag ``trainmark.record_id``, the
experiment's runs are read before anything is created, and a record already there is skipped.
A record without a ``record_id`` (files from before it existed) is named by the SHA-256 of its
JSON instead, which is as stable as the file.

The experiment is ``--experiment`` when given, else the record's ``suite`` field where records
carry one, else ``trainmark``. This is the one module that imports mlflow (an import-linter
contract keeps it so); it is an optional extra: ``pip install 'trainmark[mlflow]'``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.core.config import CONFIG_FIELDS
from harness.errors import UserError

RECORD_TAG = "trainmark.record_id"
DEFAULT_EXPERIMENT = "trainmark"
BATCH = 1000  # MLflow's log_batch takes at most 1000 metrics (and 1000 entities) per call
MAX_TAG = 5000  # characters of a tag value (MLflow allows 8000; an error line is shorter)
# Numbers that describe the machine or the record, not a result: tags, not metrics.
NUMERIC_TAGS = frozenset({"schema_version", "num_threads", "loss_curve_every", "epoch"})
HISTORIES = {"loss_curve": "loss_curve", "repeat_throughputs": "repeat_throughput"}
SKIPPED = frozenset({"source"})  # where the loader read it: this machine's path, not the run's


@dataclass(frozen=True)
class ExportSummary:
    experiments: dict[str, str]  # name -> experiment id
    created: int
    skipped: int  # already in MLflow (same record id)
    seconds: float


def client(tracking_uri: str) -> Any:
    """An ``MlflowClient`` for ``tracking_uri``; a one-line ``UserError`` naming the extra when
    mlflow is not installed."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise UserError("export mlflow needs the mlflow package: pip install "
                        "'trainmark[mlflow]'") from None
    for name in ("mlflow.store", "alembic"):  # a new SQLite store logs every migration
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=tracking_uri)


def record_key(record: Mapping[str, object]) -> str:
    """The id a record's run is tagged with: its record_id, else a digest of its JSON."""
    rid = record.get("record_id")
    if rid:
        return str(rid)
    text = json.dumps({k: v for k, v in record.items() if k not in SKIPPED}, sort_keys=True,
                      default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:24]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _millis(timestamp: object) -> int:
    import datetime as dt

    try:
        return int(dt.datetime.fromisoformat(str(timestamp)).timestamp() * 1000)
    except ValueError:
        return int(time.time() * 1000)


def run_contents(record: Mapping[str, object]) -> tuple[dict[str, str], dict[str, float],
                                                        dict[str, str],
                                                        dict[str, list[tuple[int, float]]]]:
    """(params, metrics, tags, histories) of one record (module docstring)."""
    params = {f: str(record[f]) for f in CONFIG_FIELDS if record.get(f) is not None}
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {RECORD_TAG: record_key(record)}
    histories: dict[str, list[tuple[int, float]]] = {}
    for key, value in record.items():
        if key in CONFIG_FIELDS or key in SKIPPED or value is None:
            continue
        if key in HISTORIES and isinstance(value, list):
            every = int(record.get("loss_curve_every") or 1) if key == "loss_curve" else 1
            n = len(value)
            steps = [min((i + 1) * every, n * every) for i in range(n)] if key == "loss_curve" \
                else list(range(n))
            points = [(s, v) for s, v in zip(steps, map(_number, value), strict=True)
                      if v is not None]
            if points:
                histories[HISTORIES[key]] = points
            continue
        number = _number(value)
        if number is not None and key not in NUMERIC_TAGS:
            metrics[key] = number
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            tags[f"trainmark.{key}"] = text[:MAX_TAG]
    if record.get("git_commit"):
        tags["mlflow.source.git.commit"] = str(record["git_commit"])
    return params, metrics, tags, histories


def run_name(record: Mapping[str, object]) -> str:
    keys = ("model", "batch_size", "precision", "optimizer", "device")
    parts = [f"bs{record[k]}" if k == "batch_size" else str(record[k])
             for k in keys if record.get(k) is not None]
    return " ".join(parts) or record_key(record)


def existing_keys(mlflow: Any, experiment_id: str) -> set[str]:
    """The record ids of the experiment's runs (every page of them, deleted runs too)."""
    from mlflow.entities import ViewType

    keys: set[str] = set()
    token = None
    while True:
        page = mlflow.search_runs([experiment_id], run_view_type=ViewType.ALL,
                                  max_results=1000, page_token=token)
        keys.update(r.data.tags[RECORD_TAG] for r in page if RECORD_TAG in r.data.tags)
        token = page.token
        if not token:
            return keys


def experiment_id(mlflow: Any, name: str) -> str:
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            raise UserError(f"--experiment {name!r} is a deleted MLflow experiment; restore it "
                            "or name another")
        return found.experiment_id
    return mlflow.create_experiment(name, tags={"trainmark": "1"})


def log_run(mlflow: Any, exp_id: str, record: Mapping[str, object]) -> str:
    """One MLflow run for ``record``; its run id."""
    from mlflow.entities import Metric, Param

    params, metrics, tags, histories = run_contents(record)
    when = _millis(record.get("timestamp"))
    run = mlflow.create_run(exp_id, start_time=when, tags=tags, run_name=run_name(record))
    run_id = run.info.run_id
    entries = [Metric(k, v, when, 0) for k, v in metrics.items()]
    for key, points in histories.items():
        entries.extend(Metric(key, v, when, step) for step, v in points)
    param_list = [Param(k, v) for k, v in params.items()]
    for i in range(0, max(len(entries), 1), BATCH):
        mlflow.log_batch(run_id, metrics=entries[i:i + BATCH],
                         params=param_list if i == 0 else [])
    status = "FINISHED" if record.get("status") == "ok" else "FAILED"
    with contextlib.redirect_stdout(io.StringIO()):  # mlflow prints two links per run
        mlflow.set_terminated(run_id, status=status, end_time=when)
    return run_id


def export_records(records: Iterable[Mapping[str, object]], tracking_uri: str,
                   experiment: str | None = None) -> ExportSummary:
    """Log every record not yet in its experiment as an MLflow run (module docstring)."""
    start = time.perf_counter()
    mlflow = client(tracking_uri)
    by_experiment: dict[str, list[Mapping[str, object]]] = {}
    for rec in records:
        name = experiment or str(rec.get("suite") or DEFAULT_EXPERIMENT)
        by_experiment.setdefault(name, []).append(rec)
    ids: dict[str, str] = {}
    created = skipped = 0
    for name, recs in by_experiment.items():
        try:
            ids[name] = experiment_id(mlflow, name)
            seen = existing_keys(mlflow, ids[name])
        except UserError:
            raise
        except Exception as exc:  # the server or store refused: say where, in one line
            raise UserError(f"--tracking-uri {tracking_uri!r}: MLflow could not be reached or "
                            f"refused: {str(exc).splitlines()[0][:300]}") from None
        for rec in recs:
            key = record_key(rec)
            if key in seen:
                skipped += 1
                continue
            log_run(mlflow, ids[name], rec)
            seen.add(key)
            created += 1
    return ExportSummary(ids, created, skipped, time.perf_counter() - start)


def runs_of(tracking_uri: str, experiment: str) -> Sequence[Any]:
    """Every run of ``experiment`` (for tests and checks)."""
    mlflow = client(tracking_uri)
    found = mlflow.get_experiment_by_name(experiment)
    return [] if found is None else mlflow.search_runs([found.experiment_id], max_results=5000)
