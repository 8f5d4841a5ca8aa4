"""Parsing results files into Parquet packs, the results cache's unit (``store.columnar``).

A pack is an immutable Parquet file of the records of some files; its footer lists each file
with its key (``file_key``), its record count, its extra fields and the warnings that
parsing it gave. This module only makes packs: which files need one, and reading them, is
``columnar``'s.

Parsing is the one slow part of the cache: 115 s for a fleet-year (1M records, 3.6 GB) as it was
first written, in one process. Two things bring it to 45 s on 2 cores:

- the typed columns go from the parsed records into Arrow arrays in one pass; only a batch that
  holds a value Arrow would convert differently from ``records_to_frame`` (1 in a boolean
  field, a number in a text field, an integer beyond 2**53) goes through pandas, so the two
  paths give one frame and the same errors;
- a large cold read parses its files in a worker process per core (``python -m
  harness.store.packs``), a pack per ``PACK_BYTES`` of JSON (JSON decoding holds the GIL, so
  threads would not help).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from harness.errors import UserError
from harness.schema import COLUMNS
from harness.store.jsonl import read_records
from harness.store.table import records_to_frame

PACK_BYTES = 64 * 2**20  # JSON parsed into one pack at most (bounds a worker's memory)
PARALLEL_MIN_BYTES = 2 * PACK_BYTES  # below this, starting workers costs more than it saves
WORKERS = 0  # worker processes of a large cold read; 0: one per core this process may use
META = b"trainmark"
FORMAT = 2  # the pack layout below; a change must make old packs unreadable (columnar.LAYOUT)
FILE, KEY, LINE = "__tm_file", "__tm_key", "__tm_line"  # a pack's own columns
ARROW = {"Int64": pa.int64(), "Float64": pa.float64(), "boolean": pa.bool_(),
         "string": pa.string()}
_ENCODE = json.JSONEncoder(allow_nan=True).encode  # one encoder: json.dumps builds one a call
Todo = tuple[str, str, str]  # (path to read, resolved path, key)
USAGE = 2  # a worker's exit status for a malformed file (its UserError on stderr)


def file_key(st: os.stat_result) -> str:
    """A file's key: size, mtime_ns, ctime_ns, inode and device (``fill`` reads the size back)."""
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_dev}"


class NotPlain(Exception):
    """A value that Arrow would convert otherwise than pandas does: take the pandas path."""


def typed_columns() -> dict[str, str]:
    """The record columns with a type (not lists, dicts or extra fields): column -> dtype."""
    return {col: dtype for col, dtype in COLUMNS.items() if dtype != "object"}


def typed_arrays(raw: list[dict[str, object]]) -> dict[str, pa.Array]:
    """The typed columns of ``raw`` as the Arrow arrays ``records_to_frame`` would give, in one
    pass in Arrow; ``NotPlain`` where Arrow's conversion is not known to agree (pandas decides
    then: 1 in a boolean field, a number in a text field, an integer beyond 2**53)."""
    typed = typed_columns()
    # Integers are read as doubles, then cast: pandas takes 3.0 and True as integers too, and
    # refuses 3.5, which Arrow's int64 conversion from Python would cut to 3.
    fields = [(c, pa.float64() if d == "Int64" else ARROW[d]) for c, d in typed.items()]
    try:  # from_pandas: NaN is null, as records_to_frame makes it; other fields are ignored
        struct = pa.array(raw, type=pa.struct(fields), from_pandas=True)
        out = {}
        for i, (col, dtype) in enumerate(typed.items()):
            values = struct.field(i)
            if dtype == "Int64":  # a safe cast: 3.5 or inf raises, as pandas refuses them
                values = values.cast(pa.int64())
            out[col] = values
        return out
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        raise NotPlain from None


def frame_arrays(raw: list[dict[str, object]]) -> dict[str, pa.Array]:
    """The typed columns through ``records_to_frame``: its conversions and its errors."""
    frame = records_to_frame(raw)
    return {col: pa.Array.from_pandas(frame[col].astype(object).where(frame[col].notna(), None),
                                      type=ARROW[dtype])
            for col, dtype in typed_columns().items()}


def _json_column(raw: list[dict[str, object]], col: str) -> pa.Array:
    """A list- or dict-valued (or extra) field as JSON text; null where a record lacks it."""
    return pa.array([_ENCODE(r[col]) if col in r else None for r in raw], pa.string())


def pack_table(files: Sequence[tuple[str, str, list[dict[str, object]]]]) -> tuple[pa.Table,
                                                                                      list]:
    """Records of ``files`` ((resolved path, key, records)) as one Arrow table, and the
    footer's file list. Wrongly typed fields raise ``UserError`` as ``records_to_frame``."""
    names: list[str] = []
    keys: list[str] = []
    lines: list[int] = []
    listing = []
    extras_seen: dict[str, None] = {}
    raw: list[dict[str, object]] = []
    for name, key, records in files:
        extras: dict[str, None] = {}
        known = set(COLUMNS)  # COLUMNS and the extras seen so far: a set difference per record
        for rec in records:
            if rec.keys() - known:  # new fields, in this record's order
                extras.update(dict.fromkeys(k for k in rec if k not in known))
                known.update(rec.keys())
            if "source" not in rec and "source" not in extras:
                extras["source"] = None  # where iter_records' default goes in the key order
                known.add("source")
        extras_seen.update(extras)
        listing.append([name, key, len(records), list(extras), []])
        names += [name] * len(records)
        keys += [key] * len(records)
        lines += range(len(records))
        raw += records
    arrays: dict[str, pa.Array] = {FILE: pa.array(names, pa.string()),
                                   KEY: pa.array(keys, pa.string()),
                                   LINE: pa.array(lines, pa.int64())}
    try:
        converted = typed_arrays(raw)
    except NotPlain:
        converted = frame_arrays(raw)
    for col, dtype in COLUMNS.items():
        arrays[col] = _json_column(raw, col) if dtype == "object" else converted[col]
    for col in extras_seen:
        arrays[col] = _json_column(raw, col)
    return pa.table(arrays), listing


def write_pack(folder: Path, table: pa.Table, listing: list) -> Path:
    """``table`` as a new pack in ``folder``, atomically (a temporary name, then a rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{uuid.uuid4().hex}.parquet"
    tmp = folder / f".{final.name}.tmp"
    meta = {META: json.dumps({"files": listing}).encode()}
    pq.write_table(table.replace_schema_metadata(meta), tmp, compression="zstd")
    os.replace(tmp, final)
    return final


def _parse(path: str, resolved: str, key: str) -> tuple[str, str, list[dict[str, object]],
                                                        list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = read_records(path)
    return resolved, key, records, [str(w.message) for w in caught]


def fill_chunk(folder: str, todo: list[Todo]) -> str:
    """Parse ``todo``'s files into one new pack in ``folder``; its path. A worker's task."""
    batch = [_parse(*item) for item in todo]
    table, listing = pack_table([(n, k, r) for n, k, r, _ in batch])
    for entry, (*_, warns) in zip(listing, batch, strict=True):
        entry[4] = warns
    return str(write_pack(Path(folder), table, listing))


def chunks(todo: list[Todo], sizes: list[int]) -> list[list[Todo]]:
    """``todo`` in order, cut into runs of at most ``PACK_BYTES`` of JSON (a larger file alone)."""
    out: list[list[Todo]] = []
    run: list[Todo] = []
    total = 0
    for item, size in zip(todo, sizes, strict=True):
        if run and total + size > PACK_BYTES:
            out.append(run)
            run, total = [], 0
        run.append(item)
        total += size
    if run:
        out.append(run)
    return out


def fill(folder: Path, todo: list[Todo]) -> list[str]:
    """Parse ``todo``'s files into new packs in ``folder``; their paths, in ``todo``'s order.
    Large reads use a worker process per core (a malformed file raises its ``UserError``)."""
    sizes = [int(key.split(":", 1)[0]) for _, _, key in todo]  # file_key starts with it
    runs = chunks(todo, sizes)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = min(len(runs), WORKERS or cores or 1)
    if workers < 2 or sum(sizes) < PARALLEL_MIN_BYTES:
        return [fill_chunk(str(folder), run) for run in runs]
    # Plain ``python -m`` workers, not multiprocessing: spawn would re-run a user's script that
    # called load_results at its top level, and fork copies DuckDB's and Arrow's threads.
    share = [runs[i::workers] for i in range(workers)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory(prefix="trainmark-packs-") as tmp:
        procs = []
        for i, mine in enumerate(share):
            job = Path(tmp) / f"job-{i}.json"
            job.write_text(json.dumps({"folder": str(folder), "runs": [
                [[str(path), resolved, key] for path, resolved, key in run] for run in mine]}))
            procs.append(subprocess.Popen([sys.executable, "-m", "harness.store.packs", str(job)],
                                          env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
        try:
            made = [_result(proc) for proc in procs]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    return [made[i % workers][i // workers] for i in range(len(runs))]


def _result(proc: subprocess.Popen) -> list[str]:
    out, err = proc.communicate()
    if proc.returncode == USAGE:  # a malformed file: the parent says it as parsing would
        raise UserError(err.strip().splitlines()[-1])
    if proc.returncode:
        raise RuntimeError(f"a results-parsing worker failed (exit {proc.returncode}): "
                           f"{err.strip()[-2000:]}")
    return json.loads(out)


def main() -> int:
    """A worker: a job file ({"folder", "runs"}) as its argument, the packs' paths (one per
    run) on stdout."""
    job = json.loads(Path(sys.argv[1]).read_text())
    try:
        made = [fill_chunk(job["folder"], [tuple(item) for item in run]) for run in job["runs"]]
    except UserError as exc:
        print(exc, file=sys.stderr)
        return USAGE
    print(json.dumps(made))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
