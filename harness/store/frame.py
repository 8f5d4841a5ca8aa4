"""Stored records as a pandas DataFrame with stable columns and dtypes, and exports.

``load_results(paths)`` returns the columns of ``harness.schema.COLUMNS`` in that order with
those dtypes whatever subset of files (or fields) it reads; extra fields follow as ``object``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from harness.errors import UserError
from harness.schema import COLUMNS
from harness.store.jsonl import iter_records


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


def load_results(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
                 columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read one or more results files into one DataFrame (see ``COLUMNS``), rows in file order
    then line order; ``source`` is the file a record came from unless the record names one.

    ``columns`` selects the columns a caller needs, in that order (each with its ``COLUMNS``
    dtype; a field no record has is all null; one outside ``COLUMNS`` is ``object``); None
    gives every column, ``COLUMNS`` first and then the extra fields."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    frame = records_to_frame(list(iter_records(paths)))
    return frame if columns is None else select_columns(frame, columns)


def select_columns(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``frame``'s ``columns`` in that order; absent ones all null with their stable dtype."""
    out = pd.DataFrame(index=frame.index)
    for col in columns:
        if col in frame.columns:
            out[col] = frame[col]
        else:
            dtype = COLUMNS.get(col, "object")
            out[col] = pd.Series([None] * len(frame), index=frame.index, dtype=dtype)
    return out


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
    """Records of files or directories, for one side of a comparison; ``UserError`` if none."""
    paths = list(paths)
    frame = load_results(expand_paths(paths), columns)
    if frame.empty:
        raise UserError(f"{name}: no records in {', '.join(str(p) for p in paths)}")
    return frame
