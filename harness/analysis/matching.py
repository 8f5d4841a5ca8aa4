"""Which records of two results describe the same config, and whether two results come from
the same machine and software: the matching half of ``compare`` (``explain`` and the verdict
renderer use it too). Also whether records merged into one side (a report, a fleet's folder, one
side of a comparison) were produced by one code (``check_same_code``).

Records match on their ``RunConfig`` fields (a field an older record lacks takes its default),
the number of repeats excepted: it is the sample size, not part of what was measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from harness.core.config import CONFIG_DEFAULTS, CONFIG_FIELDS
from harness.errors import UserError
from harness.schema import MACHINE_FIELDS

# The number of repeats is the sample size, not part of what was measured: a 10-repeat baseline
# compares with a 5-repeat candidate.
NOT_IDENTITY = frozenset({"repeats"})
# Config axes that records from other trainmark versions (or pytest-benchmark files) may carry
# although this version's RunConfig lacks them.
EXTRA_AXES = ("compile", "channels_last", "nproc", "benchmark")


def plain(value: Any) -> Any:
    """A hashable plain-Python value; pandas/NumPy missing values become None."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # NumPy scalar
        value = value.item()
    if isinstance(value, list):
        return tuple(value)
    return value


def column_values(frame: pd.DataFrame, name: str) -> list[Any]:
    if name not in frame.columns:
        return [None] * len(frame)
    return [plain(v) for v in frame[name]]


def match_axes(base: pd.DataFrame, cand: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Fields to match records on, and notes about fields only one side has.

    RunConfig fields a record lacks (written by an older trainmark) take the field's default.
    An extra axis recorded on one side only is ignored when it has a single value there;
    with several values it stays in the key, so those configs are reported unmatched.
    """
    axes = [f for f in CONFIG_FIELDS if f not in NOT_IDENTITY]
    notes: list[str] = []
    for name in EXTRA_AXES:
        if name in CONFIG_FIELDS:
            continue
        in_b = any(v is not None for v in column_values(base, name))
        in_c = any(v is not None for v in column_values(cand, name))
        if in_b and in_c:
            axes.append(name)
        elif in_b or in_c:
            side, frame = ("baseline", base) if in_b else ("candidate", cand)
            values = {v for v in column_values(frame, name) if v is not None}
            if len(values) > 1:
                axes.append(name)
            else:
                notes.append(f"{name!r} is recorded only in the {side} ({values.pop()!r}); "
                             "ignored for matching")
    return axes, notes


def config_keys(frame: pd.DataFrame, axes: Sequence[str]) -> list[tuple]:
    cols = []
    for name in axes:
        default = CONFIG_DEFAULTS.get(name)
        cols.append([default if v is None else v for v in column_values(frame, name)])
    return list(zip(*cols, strict=True)) if cols else [()] * len(frame)


def unmatched_reason(axes: Sequence[str], base: list[tuple], cand: list[tuple]) -> str:
    """Why no key matched: the axes whose values the sides do not share (e.g. a baseline
    recorded with ``--warmup 2`` against a candidate that warmed up until settled)."""
    def shown(values: set) -> str:
        return "/".join(sorted("unset" if v is None else repr(v) for v in values))

    apart = [(name, {k[i] for k in base}, {k[i] for k in cand}) for i, name in enumerate(axes)]
    said = [f"{name} {shown(vb)} vs {shown(vc)}" for name, vb, vc in apart if not vb & vc]
    return ("they share no " + "; no ".join(said)) if said else "no config agrees on every field"


def group_rows(frame: pd.DataFrame, axes: Sequence[str]) -> dict[tuple, list[int]]:
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(config_keys(frame, axes)):
        groups.setdefault(key, []).append(i)
    return groups


# ------------------------------------------------------------------------------ machines


def machine_differences(base: pd.DataFrame, cand: pd.DataFrame,
                        fields: Sequence[str] = MACHINE_FIELDS) -> dict[str, tuple[list, list]]:
    """Machine fields (``schema.MACHINE_FIELDS``, or ``fields``, e.g. ``CPU_FEATURE_FIELDS``)
    whose known values differ between the sides (unknown is not a difference: older files or
    pytest-benchmark files may lack a field)."""
    diffs: dict[str, tuple[list, list]] = {}
    for name in fields:
        vb = sorted({str(v) for v in column_values(base, name) if v is not None})
        vc = sorted({str(v) for v in column_values(cand, name) if v is not None})
        if vb and vc and vb != vc:
            diffs[name] = (vb, vc)
    return diffs


def describe_differences(diffs: dict[str, tuple[list, list]]) -> str:
    return "; ".join(f"{k}: {'/'.join(b)!r} vs {'/'.join(c)!r}" for k, (b, c) in diffs.items())


# ---------------------------------------------------------------------------------- code


def code_identities(frame: pd.DataFrame) -> dict[str, tuple[str, int]]:
    """{code digest: (code identity as shown, records)} of the records that carry one, in
    order of first appearance (older records have none: unknown is not a difference)."""
    found: dict[str, tuple[str, int]] = {}
    for digest, ident in zip(column_values(frame, "code_digest"),
                             column_values(frame, "code_identity"), strict=True):
        if digest is None:
            continue
        shown, n = found.get(str(digest), (str(ident or digest), 0))
        found[str(digest)] = (shown, n + 1)
    return found


def check_same_code(frame: pd.DataFrame, what: str, allow: bool = False) -> None:
    """``UserError`` naming two code identities when ``frame``'s records were produced by
    different code (digests of the installed sources differ), unless ``allow``: numbers from
    different code are not one measurement of one thing."""
    found = code_identities(frame)
    if len(found) < 2 or allow:
        return
    (a, na), (b, nb) = list(found.values())[:2]
    more = f" and {len(found) - 2} more" if len(found) > 2 else ""
    raise UserError(f"{what} merges records of different code: {a} ({na} records) vs {b} "
                    f"({nb} records){more}; report each code apart, or pass "
                    "--allow-different-code")
