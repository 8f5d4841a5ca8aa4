"""Stored records into MLflow, where many teams already look (``trainmark export mlflow``).

Each record becomes one MLflow run: its config as params, its numeric results (throughput,
step times, memory, accuracy, losses, MFU, energy, ...) as metrics, its provenance and code
identity as tags (``git_commit`` also as MLflow's own ``mlflow.source.git.commit``), the loss
curve as the history of metric ``loss_curve`` (step = the training step each stored point
ends, as ``core.losscurve.curve_steps`` counts) and every repeat's throughput as the history
of ``repeat_throughput``. A run is FINISHED for an ``ok`` record, else FAILED with the
record's status and error as tags.

Experiments: ``--experiment NAME`` puts every run in NAME; otherwise a record goes to
``trainmark/SUITE``, named by its ``suite`` field (the suite its sweep was expanded from), and a
record without one (files from before the field, ``reproduce``) to ``trainmark``. The prefix
keeps trainmark's experiments together, beside the default one, on a shared tracking server,
where a bare ``ci`` or ``quick`` is a name another team or tool may already use.

Exporting twice creates no duplicates, whichever experiments the records went to: every run
carries the tag ``trainmark.record_id``; before anything is created the export reads the runs
of every live experiment it has ever put runs in (each carries the tag ``trainmark``) and of
the ones it is about to use, and a record already in any of them is skipped (the summary says
where). So ``--experiment`` does not copy records exported before; delete the experiment that
holds them to export them again. A record without a ``record_id`` (files from before it
existed) is named by the SHA-256 of its JSON instead, which is as stable as the file.

This is the one module that imports mlflow (an import-linter contract keeps it so); it is an
optional extra: ``pip install 'trainmark[mlflow]'``.
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
from dataclasses import dataclass, field
from typing import Any

from harness.core.config import CONFIG_FIELDS
from harness.errors import UserError

RECORD_TAG = "trainmark.record_id"
EXPERIMENT_TAG = "trainmark"  # "1" on every experiment an export has put runs in
DEFAULT_EXPERIMENT = "trainmark"
BATCH = 1000  # MLflow's log_batch takes at most 1000 metrics (and 1000 entities) per call
MAX_TAG = 5000  # characters of a tag value (MLflow allows 8000; an error line is shorter)
# Numbers that describe the machine or the record, not a result: tags, not metrics.
NUMERIC_TAGS = frozenset({"schema_version", "num_threads", "loss_curve_every", "epoch"})
HISTORIES = {"loss_curve": "loss_curve", "repeat_throughputs": "repeat_throughput"}
SKIPPED = frozenset({"source"})  # where the loader read it: this machine's path, not the run's


@dataclass(frozen=True)
class ExportSummary:
    experiments: dict[str, str]  # name -> experiment id, of the experiments runs were meant for
    created: int
    skipped: int  # already in MLflow (same record id), in this or another experiment
    seconds: float
    found_in: dict[str, int] = field(default_factory=dict)  # skipped, by the experiment holding it


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


def experiment_name(record: Mapping[str, object], experiment: str | None = None) -> str:
    """Where ``record``'s run goes (module docstring): ``experiment``, else ``trainmark/SUITE``,
    else ``trainmark``."""
    if experiment:
        return experiment
    suite = record.get("suite")
    return f"{DEFAULT_EXPERIMENT}/{suite}" if suite else DEFAULT_EXPERIMENT


def trainmark_experiments(mlflow: Any) -> dict[str, str]:
    """{id: name} of the live experiments trainmark has exported into (tagged ``trainmark``)."""
    from mlflow.entities import ViewType

    found: dict[str, str] = {}
    token = None
    while True:
        page = mlflow.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=1000,
                                         filter_string=f"tags.{EXPERIMENT_TAG} = '1'",
                                         page_token=token)
        found.update((e.experiment_id, e.name) for e in page)
        token = page.token
        if not token:
            return found


def existing_keys(mlflow: Any, experiment_ids: Sequence[str]) -> dict[str, str]:
    """{record id: experiment id} of the experiments' runs (every page, deleted runs too)."""
    from mlflow.entities import ViewType

    keys: dict[str, str] = {}
    token = None
    while experiment_ids:
        page = mlflow.search_runs(list(experiment_ids), run_view_type=ViewType.ALL,
                                  max_results=1000, page_token=token)
        keys.update((r.data.tags[RECORD_TAG], r.info.experiment_id) for r in page
                    if RECORD_TAG in r.data.tags)
        token = page.token
        if not token:
            break
    return keys


def live_experiment(mlflow: Any, name: str) -> Any:
    """The experiment named ``name``, None if there is none; ``UserError`` if it is deleted
    (MLflow keeps the name: nothing can be created under it)."""
    found = mlflow.get_experiment_by_name(name)
    if found is not None and found.lifecycle_stage == "deleted":
        raise UserError(f"experiment {name!r} is a deleted MLflow experiment; restore it, or "
                        "name another with --experiment")
    return found


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


def _reach(tracking_uri: str, exc: Exception) -> UserError:
    return UserError(f"--tracking-uri {tracking_uri!r}: MLflow could not be reached or "
                     f"refused: {str(exc).splitlines()[0][:300]}")


def export_records(records: Iterable[Mapping[str, object]], tracking_uri: str,
                   experiment: str | None = None) -> ExportSummary:
    """Log every record not yet in MLflow as a run of its experiment (module docstring)."""
    start = time.perf_counter()
    mlflow = client(tracking_uri)
    groups: dict[str, list[Mapping[str, object]]] = {}
    for rec in records:
        groups.setdefault(experiment_name(rec, experiment), []).append(rec)
    try:
        targets = {name: live_experiment(mlflow, name) for name in groups}
        names = trainmark_experiments(mlflow)
        names.update((e.experiment_id, n) for n, e in targets.items() if e is not None)
        seen = existing_keys(mlflow, sorted(names))
    except UserError:
        raise
    except Exception as exc:  # the server or store refused: say where, in one line
        raise _reach(tracking_uri, exc) from None
    ids: dict[str, str] = {}
    created = 0
    found: dict[str, int] = {}
    for name, recs in groups.items():
        for rec in recs:
            key = record_key(rec)
            if key in seen:
                where = names.get(seen[key], name)
                found[where] = found.get(where, 0) + 1
                continue
            if name not in ids:  # created only for a run to put in it
                ids[name] = ensure_experiment(mlflow, name, targets[name], tracking_uri)
            log_run(mlflow, ids[name], rec)
            seen[key] = ids[name]
            names[ids[name]] = name
            created += 1
    for name, exp in targets.items():
        if exp is not None:
            ids.setdefault(name, exp.experiment_id)
    return ExportSummary(ids, created, sum(found.values()), time.perf_counter() - start, found)


def ensure_experiment(mlflow: Any, name: str, existing: Any, tracking_uri: str) -> str:
    """``existing``'s id, tagged as trainmark's so that later exports read its runs, or a new
    experiment's."""
    try:
        if existing is None:
            return mlflow.create_experiment(name, tags={EXPERIMENT_TAG: "1"})
        if existing.tags.get(EXPERIMENT_TAG) != "1":  # a user's own, named by --experiment
            mlflow.set_experiment_tag(existing.experiment_id, EXPERIMENT_TAG, "1")
        return existing.experiment_id
    except Exception as exc:
        raise _reach(tracking_uri, exc) from None


def runs_of(tracking_uri: str, experiment: str) -> Sequence[Any]:
    """Every run of ``experiment`` (for tests and checks)."""
    mlflow = client(tracking_uri)
    found = mlflow.get_experiment_by_name(experiment)
    return [] if found is None else mlflow.search_runs([found.experiment_id], max_results=5000)
