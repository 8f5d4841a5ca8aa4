"""Records as a DataFrame with the stable ``COLUMNS`` and dtypes (``frame.load_results``'s
contract, shared by the parsing path and the Parquet cache of ``store.columnar``)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from harness.errors import UserError
from harness.schema import COLUMNS


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
