"""Cost for buyers: US dollars per million samples (tokens for language models) at an hourly
price per machine, from ``trainmark report --price LABEL=USD_PER_HOUR``.

cost = USD/h / (throughput × 3600 s/h) × 1e6, with throughput the median over a machine's ok
records of one configuration (seeds, merged files), as in the hardware comparison. Configurations
are paired across machines the same way too (``hardware.match_key``, AMP by intent), so a
machine's cost sits beside its throughput relative to the reference machine: "1.8× faster,
1.3× dearer per sample" is what a buyer weighs. Energy per item is 1 / items per joule where the
record has energy or power (``report_data.prepare``'s ``per_watt``), never made up where it is null.

Pure functions on a ``report_data.prepare``d DataFrame; ``render.report`` shows the tables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from harness.analysis.hardware import MATCH, machines_named, match_key, precision_match
from harness.analysis.report_data import machines, sort_precisions
from harness.errors import UserError

SECONDS_PER_HOUR = 3600.0
PER = 1e6  # cost is quoted per million items: per-item figures are fractions of a cent
FORM = "expected LABEL=USD_PER_HOUR with a price above 0, e.g. h200=3.49"
COST = "USD per 1M items"
CHEAPEST_COLUMNS = ["model", "machine", "batch size", "precision", "optimizer", "throughput",
                    "unit", "USD/h", COST]


def parse_prices(items: Sequence[str]) -> dict[str, float]:
    """``--price`` values -> {label: USD per hour}, in the order given. ``UserError`` naming the
    value for a malformed item or a label given twice (case-insensitively: labels match so)."""
    prices: dict[str, float] = {}
    for item in items:
        # rpartition: the price is after the last '=', so a label may itself hold one
        label, eq, text = (part.strip() for part in item.rpartition("="))
        if not eq or not label:
            raise UserError(f"--price {item!r}: {FORM}")
        try:
            usd = float(text)
        except ValueError:
            usd = math.nan
        if not (math.isfinite(usd) and usd > 0):  # nan, inf, 0 and negatives make no cost
            raise UserError(f"--price {item!r}: {text!r} is not a price in US dollars per hour; "
                            f"{FORM}")
        twice = [k for k in prices if k.casefold() == label.casefold()]
        if twice:
            raise UserError(f"--price {label!r} is given twice ({prices[twice[0]]:g} and "
                            f"{usd:g}); give each machine one price")
        prices[label] = usd
    return prices


def resolve_prices(df: pd.DataFrame, prices: Mapping[str, float]) -> dict[str, float]:
    """{machine label: USD per hour} for ``parse_prices``' labels, each matched like
    ``--baseline`` (machine label, host or device name; a host prices every machine on it, since
    an hourly price is for the whole instance). ``UserError`` for a label that names no machine
    (listing the machines present) or two labels that name the same machine."""
    by_machine: dict[str, float] = {}
    named_by: dict[str, str] = {}
    for label, usd in prices.items():
        named = machines_named(df, label)
        if not named:
            raise UserError(f"--price {label!r} matches no machine in the results; valid: "
                            f"{', '.join(machines(df))} (a machine label, host or device name)")
        for m in named:
            if m in named_by:
                raise UserError(f"--price {named_by[m]!r} and {label!r} both name {m}; give "
                                "each machine one price")
            named_by[m] = label
            by_machine[m] = usd
    return by_machine


def cost_per_million(usd_per_hour: float, throughput: float) -> float:
    """US dollars per million items at ``throughput`` items per second (NaN without a speed)."""
    if not throughput > 0:
        return math.nan
    return usd_per_hour / (throughput * SECONDS_PER_HOUR) * PER


def _median(series: pd.Series) -> float:
    values = pd.to_numeric(series.astype(object), errors="coerce").dropna()
    return float(values.median()) if len(values) else math.nan


def cost_table(df: pd.DataFrame, prices: Mapping[str, float],
               baseline: str | None = None) -> pd.DataFrame:
    """One row per priced machine and configuration it ran ok: throughput, hourly price and
    USD per million items; with ``baseline`` (a hardware comparison), throughput and cost
    relative to the reference machine's on the same configuration ("× ref", "cost × ref": the
    latter only where the reference is priced); J per item where energy was recorded."""
    key = match_key(df)
    rest = [c for c in key if c != "precision"]
    group_cols = [*rest[:3], MATCH, *rest[3:]]  # model, dataset, batch_size, precision, ...
    # AMP is paired over all records, as in the comparison, so both tables pair alike
    work = df.assign(**{MATCH: precision_match(df, rest)})
    ok = work[work["status"].astype(str).eq("ok") & (work["throughput"].astype(float) > 0)]
    order = [m for m in machines(df) if m in prices]
    if baseline in order:  # the reference first, as in the hardware comparison
        order = [baseline, *[m for m in order if m != baseline]]

    rows: list[dict[str, object]] = []
    for values, g in ok.groupby(group_cols, dropna=False, sort=False):
        fields = dict(zip(group_cols, values, strict=True))
        ref = g[g["machine"] == baseline] if baseline else g.iloc[0:0]
        ref_tp = _median(ref["throughput"])
        ref_cost = (cost_per_million(prices[baseline], ref_tp)
                    if baseline in prices else math.nan)
        for m in order:
            mine = g[g["machine"] == m]
            if mine.empty:
                continue
            tp = _median(mine["throughput"])
            cost = cost_per_million(prices[m], tp)
            per_watt = _median(mine["per_watt"])
            row: dict[str, object] = {"machine": m, **{c: fields[c] for c in rest[:3]}}
            row["precision"] = " / ".join(sort_precisions(list(dict.fromkeys(
                mine["precision"].dropna().astype(str))))) or pd.NA
            row.update({c: fields[c] for c in rest[3:]})
            unit = mine["throughput_unit"].dropna()
            row.update({"throughput": tp, "unit": str(unit.iloc[0]) if len(unit) else pd.NA})
            if baseline:
                row["× ref"] = tp / ref_tp if ref_tp > 0 else math.nan
            row.update({"USD/h": prices[m], COST: cost})
            if baseline in prices:
                row["cost × ref"] = cost / ref_cost if ref_cost > 0 else math.nan
            row["J per item"] = 1.0 / per_watt if per_watt > 0 else math.nan
            rows.append(row)

    table = pd.DataFrame(rows).rename(columns={"batch_size": "batch size"})
    if "J per item" in table and table["J per item"].isna().all():
        table = table.drop(columns="J per item")  # no energy recorded: no empty column
    return table


def cheapest(table: pd.DataFrame) -> pd.DataFrame:
    """Per model and priced machine, its cheapest configuration from ``cost_table``: the
    headline a buyer compares, cheapest machine first within a model."""
    if table.empty:
        return pd.DataFrame(columns=CHEAPEST_COLUMNS)
    best = table.loc[table.groupby(["model", "machine"], sort=False)[COST].idxmin()]
    cols = [c for c in CHEAPEST_COLUMNS if c in best.columns]
    models = list(dict.fromkeys(table["model"]))
    best = best.assign(_m=best["model"].map(models.index))
    return best.sort_values(["_m", COST], kind="stable")[cols].reset_index(drop=True)
