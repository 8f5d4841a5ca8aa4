"""Replay recorded configs: every record carries its full ``RunConfig`` (``config_from_record``),
so a results file is its own recipe. ``trainmark rerun`` stores the replays; ``trainmark verify``
also checks them (``analysis.verify``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.core.config import RunConfig, config_from_record
from harness.core.determinism import prepare_process
from harness.errors import UserError
from harness.execution.isolation import DEFAULT_TIMEOUT_S
from harness.execution.sweep import config_runner
from harness.schema import new_run_id
from harness.store.jsonl import ResultsWriter, read_records


def select(records: list[dict], record_id: str | None) -> list[dict]:
    """Records to replay: all replayable ones, or the one named (``UserError`` if absent)."""
    usable = [r for r in records if r.get("model") and r.get("experiment") is None]
    if record_id is None:
        return usable
    chosen = [r for r in usable if r.get("record_id") == record_id]
    if not chosen:
        ids = ", ".join(str(r.get("record_id")) for r in usable[:8])
        raise UserError(f"no record {record_id!r} in the file; valid: {ids}"
                        + (", ..." if len(usable) > 8 else ""))
    return chosen


def replayable(path: str, record_id: str | None) -> list[tuple[dict, RunConfig]]:
    """The records to replay with their configs; ``UserError`` before anything runs."""
    records = select(read_records(path), record_id)
    if not records:
        raise UserError(f"{path}: no replayable benchmark records")
    return [(r, config_from_record(r)) for r in records]


def replay(path: str, record_id: str | None, data_dir: str, out: Path | None,
           isolation: str = "process",
           timeout_s: float = DEFAULT_TIMEOUT_S) -> list[tuple[dict, dict, RunConfig]]:
    """Run each selected record's config again: ``(old record, new record, config)`` triples;
    the new records are also appended to ``out`` when given."""
    chosen = replayable(path, record_id)
    return remeasure([r for r, _ in chosen], data_dir, out, isolation, timeout_s)


def remeasure(records: list[dict], data_dir: str, out: Path | None,
              isolation: str = "process", timeout_s: float = DEFAULT_TIMEOUT_S,
              as_run: bool = True) -> list[tuple[dict, dict, RunConfig]]:
    """Measure each record's config again with this tree's code, in order (a fresh worker each
    by default): ``(old record, new record, config)`` triples, the new records also appended to
    ``out`` when given (each names the record it replays in ``replay_of`` and keeps its
    ``suite``). ``as_run``: the exact steps the record ran (a replay), else the config as asked
    (a re-measurement)."""
    configs = [config_from_record(r, as_run=as_run) for r in records]
    prepare_process(any(c.deterministic for c in configs))
    measure = config_runner(isolation, configs, run_id=new_run_id(), data_dir=data_dir,
                            download=False, timeout_s=timeout_s)
    writer = ResultsWriter(out) if out else None
    triples = []
    for old, cfg in zip(records, configs, strict=True):
        print(f"replaying {cfg.label()} ...", file=sys.stderr, flush=True)
        new = measure(cfg)
        new["replay_of"] = old.get("record_id")
        if old.get("suite"):  # the same config, so the same suite (and MLflow experiment)
            new["suite"] = old["suite"]
        if writer:
            writer.write(new)
        triples.append((old, new, cfg))
    return triples
