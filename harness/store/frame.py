"""Stored records as a pandas DataFrame with stable columns and dtypes, and exports.

``load_results(paths)`` returns the columns of ``harness.schema.COLUMNS`` in that order with
those dtypes whatever subset of files (or fields) it reads; extra fields follow as ``object``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path

import pandas as pd

from harness.errors import UserError
from harness.store.jsonl import iter_records, read_records
from harness.store.table import records_to_frame, select_columns

# Files smaller than this together are parsed on every read; larger ones go through the cache.
CACHE_MIN_BYTES = 4 * 2**20
# Columns that no comparison or report reads and that weigh most of a record (the loss curve is
# ~800 of a CPU record's ~3,700 bytes): ``load_side`` leaves them out.
HEAVY_COLUMNS = ("loss_curve",)


def load_results(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
                 columns: Sequence[str] | None = None, *, exclude: Collection[str] = (),
                 file_source: bool = False) -> pd.DataFrame:
    """Read one or more results files into one DataFrame (see ``COLUMNS``), rows in file order
    then line order; ``source`` is the file a record came from unless the record names one
    (``file_source``: always the file).

    ``columns`` selects the columns a caller needs, in that order (each with its ``COLUMNS``
    dtype; a field no record has is all null; one outside ``COLUMNS`` is ``object``); None
    gives every column, ``COLUMNS`` first and then the extra fields, less those in ``exclude``
    (e.g. ``HEAVY_COLUMNS``). Large inputs are read through the Parquet cache of
    ``store.columnar`` (the same frame, faster; only the asked columns are read)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    frame = None
    if _worth_caching(paths):
        from harness.store import columnar

        root = columnar.cache_root()
        if root is not None:
            try:
                frame = columnar.read(paths, columns, root, exclude=exclude,
                                      file_source=file_source)
            except OSError as exc:  # a cache we may not write, a full disk: parse instead
                warnings.warn(f"results cache {root} not usable ({exc}); reading the files "
                              f"without it (set {columnar.CACHE_ENV}=off to skip it)",
                              stacklevel=2)
                frame = None
    if frame is None:
        records = list(iter_records(paths))
        if file_source:
            for rec, path in zip(records, _file_of_each(paths), strict=True):
                rec["source"] = path
        frame = records_to_frame(records)
        if columns is None:
            frame = frame.drop(columns=[c for c in exclude if c in frame.columns])
    return frame if columns is None else select_columns(frame, columns)


def _file_of_each(paths: list[str | os.PathLike[str]]) -> Iterator[str]:
    for path in paths:
        for _ in read_records(path):
            yield str(path)


def load_lenient(paths: Sequence[str | os.PathLike[str]], columns: Sequence[str] | None = None,
                 *, exclude: Collection[str] = ()) -> tuple[pd.DataFrame, list[str]]:
    """What ``trainmark report`` reads: the records of every readable file (``source`` the
    file), and one line per file (or torn line) that was skipped. ``UserError`` only when
    nothing is readable. Large inputs that are all readable go through the cache at once.
    ``columns`` and ``exclude`` as for ``load_results`` (``source`` is always read)."""
    if columns is not None and "source" not in columns:
        columns = [*columns, "source"]  # which file a record came from: skipped files
    if _worth_caching(list(paths)):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                frame = load_results(paths, columns, exclude=exclude, file_source=True)
        except UserError:
            pass  # one bad file: sort them out one by one below
        else:
            skipped = [str(w.message) for w in caught]
            counted = set(frame["source"]) if "source" in frame.columns else set()
            skipped += [f"{p}: no records" for p in paths if str(p) not in counted]
            if counted:
                return frame, skipped
    records: list[dict[str, object]] = []
    skipped = []
    for path in paths:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                recs = read_records(path)
            skipped += [str(w.message) for w in caught]  # torn last lines: said, not hidden
            if not recs:
                skipped.append(f"{path}: no records")
                continue
            for rec in recs:
                rec["source"] = str(path)  # the file it came from, whatever the record claims
            try:
                records_to_frame(recs)  # type-check this file alone, so the others survive it
            except UserError as exc:
                raise UserError(f"{path}: {exc}") from None
        except UserError as exc:
            skipped.append(str(exc))
            continue
        records.extend(recs)
    if not records:
        raise UserError("no readable results: " + "; ".join(skipped))
    frame = records_to_frame(records)
    if columns is not None:
        return select_columns(frame, columns), skipped
    return frame.drop(columns=[c for c in exclude if c in frame.columns]), skipped


def _worth_caching(paths: list[str | os.PathLike[str]]) -> bool:
    """Whether the files are large enough for the Parquet cache (``store.columnar``) to pay:
    below ``CACHE_MIN_BYTES`` parsing them is as quick as reading the cache."""
    total = 0
    for p in paths:
        try:
            total += os.stat(p).st_size
        except OSError:
            return False  # parsing says what is wrong with it
        if total >= CACHE_MIN_BYTES:
            return True
    return False


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


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
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


def load_side(paths: Iterable[str | os.PathLike[str]], name: str,
              columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Records of files or directories, for one side of a comparison (without
    ``HEAVY_COLUMNS``); ``UserError`` if none."""
    paths = list(paths)
    frame = load_results(expand_paths(paths), columns, exclude=HEAVY_COLUMNS)
    if frame.empty:
        raise UserError(f"{name}: no records in {', '.join(str(p) for p in paths)}")
    return frame
