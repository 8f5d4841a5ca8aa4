"""Results store: one JSON object per line, appended and fsynced as each config finishes.

A killed sweep loses at most the config in flight. A torn last line (the process died while
writing it) is skipped with a warning when reading, and cut off before the next append so the
file stays valid JSON Lines. Reading never executes code (plain ``json``, no pickle).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd

from harness.errors import UserError

SCHEMA_VERSION = 1

# Column -> pandas dtype. load_results() always returns these columns in this order with these
# dtypes, whatever subset of files (or fields) it reads; extra fields follow as ``object``.
COLUMNS: dict[str, str] = {
    # identity
    "schema_version": "Int64",
    "run_id": "string",
    "record_id": "string",
    "timestamp": "string",
    # config
    "model": "string",
    "task": "string",
    "dataset": "string",
    "device": "string",
    "batch_size": "Int64",
    "precision": "string",
    "optimizer": "string",
    "lr": "Float64",
    "seed": "Int64",
    "warmup_steps": "Int64",
    "timed_steps": "Int64",
    "repeats": "Int64",
    "eval_samples": "Int64",
    "train_samples": "Int64",
    "data_seed": "Int64",
    "deterministic": "boolean",
    "target_accuracy": "Float64",
    "eval_interval": "Int64",
    "max_steps": "Int64",
    "nproc": "Int64",
    "compile": "boolean",
    "channels_last": "boolean",
    "num_params": "Int64",
    # outcome
    "status": "string",
    "error": "string",
    # speed
    "throughput": "Float64",
    "throughput_unit": "string",
    "step_time_ms_median": "Float64",
    "step_time_ms_iqr": "Float64",
    "repeat_throughputs": "object",
    "wall_time_s": "Float64",
    "compile_backend": "string",
    "compile_time_s": "Float64",
    "scaling_efficiency": "Float64",
    "rank_step_time_ms_median": "object",
    # compute efficiency (FLOPs per step from torch.utils.flop_counter; peak from table/GEMM)
    "flops_per_step": "Float64",
    "achieved_flops_per_s": "Float64",
    "peak_flops_per_s": "Float64",
    "peak_flops_source": "string",
    "mfu": "Float64",
    # energy (NVML, timed regions only)
    "energy_j": "Float64",
    "power_w_mean": "Float64",
    "samples_per_joule": "Float64",
    "throttled": "boolean",
    "throttle_reasons": "object",
    "sm_clock_mhz_mean": "Float64",
    "temperature_c_max": "Float64",
    "gpu_util_mean": "Float64",
    "telemetry_samples": "Int64",
    "telemetry_note": "string",
    # memory
    "peak_memory_allocated_bytes": "Int64",
    "peak_memory_reserved_bytes": "Int64",
    "device_memory_used_bytes": "Int64",
    "peak_rss_bytes": "Int64",
    # quality
    "train_loss": "Float64",
    "eval_loss": "Float64",
    "eval_accuracy": "Float64",
    "loss_curve": "object",
    "loss_curve_every": "Int64",
    "loss_curve_sha256": "string",
    # time to accuracy (target_accuracy set)
    "target_reached": "boolean",
    "steps_to_accuracy": "Int64",
    "time_to_accuracy_s": "Float64",
    "train_time_s": "Float64",
    "steps_run": "Int64",
    # epoch-based experiments (reproduce article)
    "experiment": "string",
    "epoch": "Int64",
    # provenance
    "host": "string",
    "os": "string",
    "python": "string",
    "torch_version": "string",
    "torchvision_version": "string",
    "cuda_version": "string",
    "cudnn_version": "string",
    "device_name": "string",
    "driver_version": "string",
    "cpu_model": "string",
    "num_threads": "Int64",
    "git_commit": "string",
    "trainmark_version": "string",
    "tf32_matmul": "boolean",
    "tf32_cudnn": "boolean",
    "float32_matmul_precision": "string",
    "cudnn_benchmark": "boolean",
    "omp_num_threads_env": "string",
}
STATUSES = ("ok", "oom", "diverged", "unavailable", "error")


def _clean(value: object) -> object:
    """JSON-safe value: non-finite floats become null (never NaN-as-string)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class ResultsWriter:
    """Appends records to a JSON Lines file; each ``write`` is durable when it returns."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _cut_torn_tail(self.path)

    def write(self, record: dict[str, object]) -> None:
        line = json.dumps({k: _clean(v) for k, v in record.items()}, allow_nan=False)
        # One write() of one line, then flush + fsync: a crash leaves whole lines and at most
        # one torn last line behind.
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())


def _cut_torn_tail(path: Path) -> None:
    """Drop a partial last line left by a killed writer, so appends start on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    keep = data.rfind(b"\n") + 1
    warnings.warn(f"{path}: removing a torn last line ({len(data) - keep} bytes) before appending",
                  stacklevel=2)
    with open(path, "r+b") as f:
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())


def read_records(path: str | os.PathLike[str]) -> list[dict[str, object]]:
    """Records of one JSON Lines file (or pytest-benchmark ``.json`` file: ``pytest_bench``).
    A torn *last* line is skipped with a warning; any other malformed line is a ``UserError``
    naming the file and line number."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"results file not found: {p}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{p}: not a UTF-8 results file ({exc.reason})") from None
    except OSError as exc:
        raise UserError(f"cannot read results file {p}: {exc.strerror}") from None
    if p.suffix == ".json":  # a pytest-benchmark file (saved or --benchmark-json)?
        from harness.pytest_bench import records_from_text

        converted = records_from_text(text, p)
        if converted is not None:
            return converted
    lines = text.split("\n")
    torn_tail_possible = not text.endswith("\n")
    records: list[dict[str, object]] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            if torn_tail_possible and n == len(lines):
                warnings.warn(f"{p}:{n}: skipping a torn last line (the writer was interrupted)",
                              stacklevel=2)
                continue
            raise UserError(f"{p}:{n}: malformed record ({exc})") from None
        records.append(obj)
    return records


def iter_records(paths: Iterable[str | os.PathLike[str]]) -> Iterator[dict[str, object]]:
    for path in paths:
        for rec in read_records(path):
            rec.setdefault("source", str(path))
            yield rec


def records_to_frame(records: list[dict[str, object]]) -> pd.DataFrame:
    """Records -> DataFrame with the stable ``COLUMNS`` (and dtypes) first, extras after."""
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    extras = [c for c in frame.columns if c not in COLUMNS]
    out = pd.DataFrame(index=range(len(frame)))
    for col, dtype in COLUMNS.items():
        values = frame[col] if col in frame.columns else pd.Series([None] * len(frame))
        if dtype == "object":
            out[col] = values.astype("object").where(values.notna(), None)
        else:
            try:
                out[col] = pd.array(values.where(values.notna(), None).tolist(), dtype=dtype)
            except (TypeError, ValueError) as exc:
                raise UserError(
                    f"results field {col!r} holds a value that is not {dtype}: {exc}"
                ) from None
    for col in extras:
        out[col] = frame[col].astype("object")
    return out


def load_results(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> pd.DataFrame:
    """Read one or more results files into one DataFrame (see ``COLUMNS``)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    return records_to_frame(list(iter_records(paths)))


def export(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``frame`` as CSV or Parquet, chosen by the file extension."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix == ".csv":
        frame.to_csv(p, index=False)
    elif p.suffix == ".parquet":
        frame.to_parquet(p, index=False)
    else:
        raise UserError(f"unknown export format {p.suffix!r} for {p}; valid: .csv, .parquet")
    return p
